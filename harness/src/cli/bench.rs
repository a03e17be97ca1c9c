//! `bftbench bench`: start a local cluster as child processes on loopback, load
//! a YCSB workload, measure, print one comparison table (and CSV), and stop
//! every process it started, also on failure.

use super::replica::ProtocolArgs;
use super::report::{cpu_seconds, parse_duration, print_ycsb};
use anyhow::{bail, Context};
use bft_net::client_loop::{LoadGenerator, LoadReport, Phase};
use bft_net::cluster::{keygen, load_client_secrets, Cluster, KeygenOptions};
use bft_workloads::Workload;
use clap::Args;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Protocols to run, side by side: bare (one unreplicated server), raft (n = 3), bft (n = --replicas).
    #[arg(long, value_delimiter = ',', default_value = "bare,raft,bft")]
    pub protocols: Vec<String>,
    #[arg(long, default_value_t = 4)]
    pub replicas: usize,
    /// A core workload (a … f) or a YCSB property file.
    #[arg(long, default_value = "a")]
    pub workload: String,
    #[arg(short = 'p', value_name = "KEY=VALUE")]
    pub props: Vec<String>,
    #[arg(long, default_value = "5s")]
    pub duration: String,
    #[arg(long, default_value = "1s")]
    pub warmup: String,
    /// Logical closed-loop clients.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Open loop at this many operations per second (default: closed loop).
    #[arg(long)]
    pub target: Option<f64>,
    /// Sign every request with ed25519 instead of MAC authenticators.
    #[arg(long)]
    pub signed: bool,
    #[command(flatten)]
    pub protocol: ProtocolArgs,
    /// Where each replica's App runs: `embedded`, or `remote` (one `bftbench kv-server`
    /// process per replica on the same host, as in BFT-DEP).
    #[arg(long, default_value = "embedded")]
    pub execution: String,
    /// Append the result rows to this CSV file.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Also print YCSB's per-operation text output.
    #[arg(long)]
    pub ycsb: bool,
    /// Keep the cluster folder (keys, replica logs) instead of removing it.
    #[arg(long)]
    pub keep: bool,
}

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

pub struct Row {
    pub protocol: String,
    pub n: usize,
    pub report: LoadReport,
    pub cpu_us_per_op: f64,
}

pub fn run(a: BenchArgs) -> anyhow::Result<i32> {
    for p in &a.protocols {
        if !["bft", "bare", "raft"].contains(&p.as_str()) {
            bail!("--protocols {p}: expected bare, raft or bft");
        }
    }
    if a.execution != "embedded" && a.execution != "remote" {
        bail!("--execution {}: expected embedded or remote", a.execution);
    }
    let duration = parse_duration(&a.duration).context("--duration")?;
    let warmup = parse_duration(&a.warmup).context("--warmup")?;
    let props = super::workload::load_properties(&a.workload, &a.props)?;
    let mut rows = Vec::new();
    for p in &a.protocols {
        match run_one(&a, p, &props, duration, warmup) {
            Ok(r) => rows.push(r),
            Err(e) => {
                // Keep what finished: print and save the rows we have, then fail.
                print_table(&mut std::io::stdout(), &a, &rows)?;
                if let Some(path) = &a.csv {
                    write_csv(path, &a, &rows)?;
                }
                return Err(e.context(format!(
                    "protocol {p} (its keys and replica logs are kept for inspection)"
                )));
            }
        }
    }
    print_table(&mut std::io::stdout(), &a, &rows)?;
    if let Some(path) = &a.csv {
        write_csv(path, &a, &rows)?;
        println!("results appended to {}", path.display());
    }
    Ok(0)
}

fn run_one(
    a: &BenchArgs,
    protocol: &str,
    props: &bft_workloads::Properties,
    duration: Duration,
    warmup: Duration,
) -> anyhow::Result<Row> {
    let dir =
        std::env::temp_dir().join(format!("bftbench-bench-{}-{protocol}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "{protocol}: cluster files and replica logs in {}",
        dir.display()
    );
    let n = match protocol {
        "bare" => 1,
        "raft" => 3,
        _ => a.replicas,
    };
    let ko = KeygenOptions {
        addrs: free_addrs(n)?,
        protocol: protocol.to_string(),
        clients: a.clients,
        first_client_id: 1_000,
        seed: Some(1),
    };
    keygen(&dir, &ko)?;
    let cluster = Cluster::load(&dir.join("cluster.toml"))?;
    let procs = spawn_replicas(&dir, n, &a.protocol, a.execution == "remote")?;
    let secrets: Vec<_> = load_client_secrets(&dir.join("clients.key"))?
        .into_iter()
        .enumerate()
        .map(|(i, k)| (1_000 + i as u64, k))
        .collect();
    let opts = super::report::load_options(a.signed, a.target);
    let stop = AtomicBool::new(false);
    let mut gen = LoadGenerator::connect(&cluster, &secrets, &opts, Duration::from_secs(10))
        .with_context(|| format!("connecting to the replicas (logs in {})", dir.display()))?;
    let mut workload = Workload::new(props, 1)?;
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
    let report = gen
        .run(&mut workload, Phase::Run { duration, warmup }, &opts, &stop)
        .context("run phase")?;
    let cpu_used = cpu(&pids) - cpu_before;
    drop(gen);
    drop(procs);
    if a.ycsb {
        print_ycsb(&mut std::io::stdout(), &report, a.target.is_some())?;
    }
    if a.keep {
        println!("replica logs kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let measured = duration.as_secs_f64() / (duration + warmup).as_secs_f64();
    Ok(Row {
        protocol: protocol.to_string(),
        n,
        cpu_us_per_op: cpu_used * measured * 1e6 / report.ops.max(1) as f64,
        report,
    })
}

fn print_table(out: &mut impl Write, a: &BenchArgs, rows: &[Row]) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<8} {:>3} {:>8} {:>9} {:>12} {:>9} {:>9} {:>14} {:>12}",
        "protocol",
        "n",
        "workload",
        "clients",
        "ops/s",
        "p50 µs",
        "p99 µs",
        "p99 intended",
        "CPU µs/op"
    )?;
    for r in rows {
        writeln!(
            out,
            "{:<8} {:>3} {:>8} {:>9} {:>12.0} {:>9} {:>9} {:>14} {:>12.1}",
            r.protocol,
            r.n,
            a.workload,
            a.clients,
            r.report.throughput(),
            r.report.all.value_at_quantile(0.5),
            r.report.all.value_at_quantile(0.99),
            r.report.all_intended.value_at_quantile(0.99),
            r.cpu_us_per_op
        )?;
    }
    Ok(())
}

const CSV_HEADER: &str = "protocol,replicas,workload,clients,auth,batch,pipeline,target_ops_s,duration_s,ops,throughput_ops_s,p50_us,p90_us,p99_us,p999_us,max_us,p50_intended_us,p99_intended_us,behind,cpu_us_per_op";

fn write_csv(path: &Path, a: &BenchArgs, rows: &[Row]) -> anyhow::Result<()> {
    let exists = path.exists();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("--csv {}", path.display()))?;
    if !exists {
        writeln!(f, "{CSV_HEADER}")?;
    }
    for r in rows {
        let h = &r.report.all;
        writeln!(
            f,
            "{},{},{},{},{},{},{},{},{:.3},{},{:.1},{},{},{},{},{},{},{},{},{:.2}",
            r.protocol,
            r.n,
            a.workload,
            a.clients,
            if a.signed { "ed25519" } else { "mac" },
            a.protocol.batch,
            a.protocol.pipeline,
            a.target.map_or(String::new(), |t| t.to_string()),
            r.report.elapsed.as_secs_f64(),
            r.report.ops,
            r.report.throughput(),
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.9),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.max(),
            r.report.all_intended.value_at_quantile(0.5),
            r.report.all_intended.value_at_quantile(0.99),
            r.report.behind + r.report.backlog_left,
            r.cpu_us_per_op
        )?;
    }
    Ok(())
}
