//! Deployment back ends: where a run's replicas (and separated KV servers)
//! live. Every back end takes the same [`RunSpec`] and returns the same
//! [`RunOutcome`], so a matrix can switch back ends as one parameter.

pub mod local;

use crate::cli::replica::ProtocolArgs;
use bft_net::client_loop::LoadReport;
use bft_workloads::Properties;
use std::path::PathBuf;
use std::time::Duration;

/// One run: a fresh cluster, a load phase, a warm-up, a measured interval.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// bare, raft or bft.
    pub protocol: String,
    /// Replicas (bare always has 1).
    pub n: usize,
    pub props: Properties,
    pub clients: usize,
    /// Open loop at this rate; None: closed loop.
    pub target: Option<f64>,
    pub signed: bool,
    pub protocol_args: ProtocolArgs,
    /// Separated execution: one KV server process per replica.
    pub remote_execution: bool,
    pub duration: Duration,
    pub warmup: Duration,
    /// Where keys, the cluster file and process logs go (removed after a
    /// successful run unless `keep`).
    pub dir: PathBuf,
    pub keep: bool,
}

/// What a run measured.
#[derive(Debug)]
pub struct RunOutcome {
    pub report: LoadReport,
    /// CPU time (all processes of the run, client included) per operation, in
    /// the measured interval.
    pub cpu_us_per_op: f64,
}

/// A place to run [`RunSpec`]s.
pub trait Deployment {
    fn name(&self) -> &'static str;
    /// Starts a fresh cluster, loads, warms up, measures, and tears down every
    /// process it started, whether the run succeeds or fails.
    fn run(&mut self, spec: &RunSpec) -> anyhow::Result<RunOutcome>;
}
