//! `bftbench` subcommands, one module each.

pub mod bench;
pub mod client;
pub mod compare;
pub mod deploy;
pub mod find_peak;
pub mod keygen;
pub mod kv_server;
pub mod matrix;
pub mod plot;
pub mod replica;
pub mod report;
pub mod shared;
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
    /// Start a local cluster, load a YCSB workload, print throughput, latency and CPU per operation.
    Bench(bench::BenchArgs),
    /// Run a matrix file's cells on fresh clusters, one CSV row per run.
    Matrix(matrix::MatrixArgs),
    /// Figures of a results file: throughput–latency, latency percentiles, time series (SVG, PNG).
    Plot(plot::PlotArgs),
    /// A Markdown report of a results file: tables per cell, failed runs, figures.
    Report(report::ReportArgs),
    /// Prepare a deployment back end (build the Docker image).
    Deploy(deploy::DeployArgs),
    /// Compare two result CSVs: median per group, ratio with a bootstrap interval, regressions.
    Compare(compare::CompareArgs),
    /// YCSB load or run phase against a running cluster (YCSB text or --json).
    Client(client::ClientArgs),
    /// The key-value App as its own process (separated execution, BFT-DEP).
    KvServer(kv_server::KvServerArgs),
    /// Write per-replica ed25519 keys (mode 0600) and a cluster file.
    Keygen(keygen::KeygenArgs),
    /// Run one BFT replica (with the key-value App) from a cluster file.
    Replica(replica::ReplicaArgs),
    /// Run the unreplicated server of a `bare` cluster file (same as `replica`).
    Server(replica::ReplicaArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Sim(args) => sim::run(args),
        Command::Workload(args) => workload::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Client(args) => client::run(args),
        Command::Matrix(args) => matrix::run(args),
        Command::Compare(args) => compare::run(args),
        Command::Deploy(args) => deploy::run(args),
        Command::Plot(args) => plot::run(args),
        Command::Report(args) => report::run(args),
        Command::Keygen(args) => keygen::run(args),
        Command::KvServer(args) => kv_server::run(args),
        Command::Replica(args) | Command::Server(args) => replica::run(args),
    }
}
