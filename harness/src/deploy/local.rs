//! The `local` back end: replicas as child processes on loopback ports.

use super::{Deployment, RunOutcome, RunSpec};
use crate::cli::replica::ProtocolArgs;
use crate::cli::report::{cpu_seconds, load_options};
use anyhow::Context;
use bft_net::client_loop::{LoadGenerator, Phase};
use bft_net::cluster::{keygen, load_client_secrets, Cluster, KeygenOptions};
use bft_workloads::Workload;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// First client id of the keys a run generates.
const FIRST_CLIENT: u64 = 1_000;

/// Child processes killed (and reaped) when dropped, whatever happened.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        // Closing stdin asks each replica to stop (and log its totals); then
        // anything still running after a grace period is killed.
        for c in &mut self.0 {
            drop(c.stdin.take());
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        for c in &mut self.0 {
            while std::time::Instant::now() < deadline && matches!(c.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_addrs(n: usize) -> anyhow::Result<Vec<String>> {
    let ls: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()
        .context("finding free loopback ports")?;
    Ok(ls
        .iter()
        .map(|l| l.local_addr().map(|a| a.to_string()))
        .collect::<Result<_, _>>()?)
}

fn spawn_replicas(
    dir: &Path,
    n: usize,
    proto: &ProtocolArgs,
    remote: bool,
) -> anyhow::Result<Processes> {
    let exe = std::env::current_exe().context("locating the bftbench binary")?;
    let mut procs = Processes(Vec::new());
    let kv_addrs = if remote { free_addrs(n)? } else { Vec::new() };
    for (id, addr) in kv_addrs.iter().enumerate() {
        let log = std::fs::File::create(dir.join(format!("kv-server-{id}.log")))?;
        let child = Command::new(&exe)
            .args(["kv-server", "--listen", addr, "--exit-on-stdin-eof"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting kv-server {id}"))?;
        procs.0.push(child);
    }
    for id in 0..n {
        let execution = kv_addrs
            .get(id)
            .map_or("embedded".to_string(), |a| format!("remote={a}"));
        let log = std::fs::File::create(dir.join(format!("replica-{id}.log")))?;
        let child = Command::new(&exe)
            .arg("replica")
            .arg("--cluster")
            .arg(dir.join("cluster.toml"))
            .args(["--id", &id.to_string(), "--exit-on-stdin-eof"])
            .args(["--execution", &execution])
            .args(proto.to_flags())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting replica {id}"))?;
        procs.0.push(child);
    }
    Ok(procs)
}

#[derive(Debug, Default)]
pub struct Local;

impl Deployment for Local {
    fn name(&self) -> &'static str {
        "local"
    }

    fn run(&mut self, spec: &RunSpec) -> anyhow::Result<RunOutcome> {
        let dir = &spec.dir;
        let _ = std::fs::remove_dir_all(dir);
        let ko = KeygenOptions {
            addrs: free_addrs(spec.n)?,
            protocol: spec.protocol.clone(),
            clients: spec.clients,
            first_client_id: FIRST_CLIENT,
            seed: Some(1),
        };
        keygen(dir, &ko)?;
        let cluster = Cluster::load(&dir.join("cluster.toml"))?;
        let procs = spawn_replicas(dir, spec.n, &spec.protocol_args, spec.remote_execution)?;
        let secrets: Vec<_> = load_client_secrets(&dir.join("clients.key"))?
            .into_iter()
            .enumerate()
            .map(|(i, k)| (FIRST_CLIENT + i as u64, k))
            .collect();
        let opts = load_options(spec.signed, spec.target);
        let stop = AtomicBool::new(false);
        let mut gen = LoadGenerator::connect(&cluster, &secrets, &opts, Duration::from_secs(10))
            .with_context(|| format!("connecting to the replicas (logs in {})", dir.display()))?;
        let mut workload = Workload::new(&spec.props, 1)?;
        gen.run(&mut workload, Phase::Load, &opts, &stop)
            .context("load phase")?;
        let pids: Vec<String> = procs
            .0
            .iter()
            .map(|c| c.id().to_string())
            .chain(["self".to_string()])
            .collect();
        let cpu = |pids: &[String]| pids.iter().filter_map(|p| cpu_seconds(p)).sum::<f64>();
        let cpu_before = cpu(&pids);
        let phase = Phase::Run {
            duration: spec.duration,
            warmup: spec.warmup,
        };
        let report = gen
            .run(&mut workload, phase, &opts, &stop)
            .context("run phase")?;
        let cpu_used = cpu(&pids) - cpu_before;
        drop(gen);
        drop(procs);
        if !spec.keep {
            let _ = std::fs::remove_dir_all(dir);
        }
        let measured = spec.duration.as_secs_f64() / (spec.duration + spec.warmup).as_secs_f64();
        Ok(RunOutcome {
            cpu_us_per_op: cpu_used * measured * 1e6 / report.ops.max(1) as f64,
            report,
        })
    }
}
