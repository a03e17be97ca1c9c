//! `bftbench` subcommands, one module each.

pub mod sim;
pub mod workload;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "bftbench",
    version,
    about = "Measure what Byzantine fault tolerance costs and buys"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Deterministic simulation: seeded faults, Byzantine twins and mutations, checkers.
    Sim(sim::SimArgs),
    /// Inspect the YCSB generators: key names, operation traces, summaries.
    Workload(workload::WorkloadArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Sim(args) => sim::run(args),
        Command::Workload(args) => workload::run(args),
    }
}
