//! `bft-harness`: the deterministic simulator, its checkers, and the `bftbench` CLI.

pub mod adversary;
pub mod cli;
pub mod control;
pub mod deploy;
pub mod matrix;
pub mod plot;
pub mod results;
pub mod sim;
