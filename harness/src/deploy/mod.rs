//! Deployment back ends: where a run's replicas (and separated KV servers)
//! live. Every back end takes the same [`RunSpec`] and returns the same
//! [`RunOutcome`], so a matrix can switch back ends as one parameter.

pub mod docker;
pub mod fleet;
pub mod k8s;
pub mod kube;
pub mod local;
pub mod ssh;
pub mod wire;
pub mod yaml;

pub use fleet::{Role, RoleUsage};

use crate::cli::replica::ProtocolArgs;
use crate::cli::shared::load_options;
use anyhow::{bail, Context};
use bft_net::client_loop::{LoadGenerator, LoadReport, Phase};
use bft_net::cluster::{keygen, load_client_secrets, Cluster, KeygenOptions};
use bft_workloads::{Properties, Workload};
use fleet::Fleet;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// How long the client waits for every replica to accept its connection.
const CONNECT_WAIT: Duration = Duration::from_secs(10);

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
    /// BFT: every replica returns full results (no reply digests).
    pub full_replies: bool,
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

/// Refuses a disk-backed replica on a back end that has not been run with
/// one (replicas there have a writable data folder, but no test covers it).
pub fn refuse_disk_storage(spec: &RunSpec, backend: &str) -> anyhow::Result<()> {
    if spec.protocol != "bare" && spec.protocol_args.on_disk() {
        bail!(
            "storage = disk runs on the local and ssh back ends only: the {backend} back end is not tested with it"
        );
    }
    Ok(())
}

/// What a run measured.
#[derive(Debug)]
pub struct RunOutcome {
    pub report: LoadReport,
    /// Per role, over the measured interval (peak memory: over the run).
    pub usage: Vec<(Role, RoleUsage)>,
}

impl RunOutcome {
    /// CPU time of every process of the run (client included) per operation,
    /// in the measured interval.
    pub fn cpu_us_per_op(&self) -> f64 {
        let cpu: f64 = self.usage.iter().map(|(_, u)| u.cpu_s).sum();
        cpu * 1e6 / self.report.ops.max(1) as f64
    }
}

/// A place to run [`RunSpec`]s.
pub trait Deployment {
    fn name(&self) -> &'static str;
    /// Starts a fresh cluster, loads, warms up, measures, and tears down every
    /// process it started, whether the run succeeds or fails.
    fn run(&mut self, spec: &RunSpec) -> anyhow::Result<RunOutcome>;
}

/// First client id of the keys a run generates.
pub const FIRST_CLIENT: u64 = 1_000;

/// The client's part of a run, the same on every back end: connect to the
/// cluster, load, warm up, measure; sample every process's figures at the
/// edges of the measured interval.
pub fn measure(
    cluster: &Cluster,
    fleet: &mut Fleet,
    spec: &RunSpec,
) -> anyhow::Result<(LoadReport, Vec<(Role, RoleUsage)>)> {
    let secrets: Vec<_> = load_client_secrets(&spec.dir.join("clients.key"))?
        .into_iter()
        .enumerate()
        .map(|(i, k)| (FIRST_CLIENT + i as u64, k))
        .collect();
    let opts = load_options(spec.signed, spec.target, spec.full_replies);
    let stop = AtomicBool::new(false);
    let mut gen = match LoadGenerator::connect(cluster, &secrets, &opts, CONNECT_WAIT) {
        Ok(gen) => gen,
        Err(e) => match fleet.first_exit() {
            Some(exit) => bail!("connecting to the replicas: {e}; {exit}"),
            None => return Err(e).context("connecting to the replicas"),
        },
    };
    let mut workload = Workload::new(&spec.props, 1)?;
    gen.run(&mut workload, Phase::Load, &opts, &stop)
        .context("load phase")?;
    let phase = Phase::Run {
        duration: spec.duration,
        warmup: spec.warmup,
    };
    let mut before = None;
    let report = gen
        .run_marked(&mut workload, phase, &opts, &stop, &mut || {
            before = Some(fleet.sample());
        })
        .context("run phase")?;
    let after = fleet.sample()?;
    let before = before.context("the run ended before its measured interval began")??;
    Ok((report, fleet::usage_between(&before, &after)))
}

/// A fresh run folder with keys and a cluster file for replicas at `addrs`;
/// `seed` gives reproducible keys (runs on this machine only), None keys from
/// the OS.
pub fn fresh_cluster(
    spec: &RunSpec,
    addrs: Vec<String>,
    seed: Option<u64>,
) -> anyhow::Result<Cluster> {
    let _ = std::fs::remove_dir_all(&spec.dir);
    let ko = KeygenOptions {
        addrs,
        protocol: spec.protocol.clone(),
        clients: spec.clients,
        first_client_id: FIRST_CLIENT,
        seed,
    };
    keygen(&spec.dir, &ko)?;
    Ok(Cluster::load(&spec.dir.join("cluster.toml"))?)
}

/// The run's outcome once its processes are gone: the folder is kept on
/// failure (its logs are named in the error) or with `keep`.
pub fn finish(
    spec: &RunSpec,
    measured: anyhow::Result<(LoadReport, Vec<(Role, RoleUsage)>)>,
) -> anyhow::Result<RunOutcome> {
    let (report, usage) = measured.with_context(|| format!("logs in {}", spec.dir.display()))?;
    if !spec.keep {
        let _ = std::fs::remove_dir_all(&spec.dir);
    }
    Ok(RunOutcome { report, usage })
}
