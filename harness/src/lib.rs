//! `bft-harness`: the deterministic simulator, its checkers, and the `bftbench` CLI.

pub mod cli;
pub mod sim;
