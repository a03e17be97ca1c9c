//! `bftbench bench`: start a local cluster as child processes on loopback, load
//! a YCSB workload, measure, print one comparison table (and CSV), and stop
//! every process it started, also on failure.

use super::replica::ProtocolArgs;
use super::shared::{parse_duration, print_ycsb};
use crate::deploy::local::Local;
use crate::deploy::{Deployment, RunSpec};
use anyhow::{bail, Context};
use bft_net::client_loop::LoadReport;
use clap::Args;
use std::io::Write;
use std::path::{Path, PathBuf};
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
    /// BFT: every replica returns the full result (default: one replica per
    /// client does, the others a digest of it).
    #[arg(long)]
    pub full_replies: bool,
    #[command(flatten)]
    pub protocol: ProtocolArgs,
    /// Where each replica's App runs: `embedded`, or `remote` (one `bftbench kv-server`
    /// process per replica on the same host, as in BFT-DEP).
    #[arg(long, default_value = "embedded")]
    pub execution: String,
    /// Append the result rows to this CSV file (created with its folder).
    #[arg(long, default_value = "results/bench.csv")]
    pub csv: PathBuf,
    /// Also print YCSB's per-operation text output.
    #[arg(long)]
    pub ycsb: bool,
    /// Keep the cluster folder (keys, replica logs) instead of removing it.
    #[arg(long)]
    pub keep: bool,
}

pub struct Row {
    pub protocol: String,
    pub n: usize,
    pub report: LoadReport,
    pub cpu_us_per_op: f64,
}

pub fn run(a: BenchArgs) -> anyhow::Result<i32> {
    check_csv(&a.csv)?;
    for p in &a.protocols {
        if !["bft", "bare", "raft"].contains(&p.as_str()) {
            bail!("--protocols {p}: expected bare, raft or bft");
        }
    }
    if a.execution != "embedded" && a.execution != "remote" {
        bail!("--execution {}: expected embedded or remote", a.execution);
    }
    if a.protocols.iter().any(|p| p == "bft") {
        a.protocol.config(a.replicas, 0)?; // refused here, not after a 10 s wait
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
                write_csv(&a.csv, &a, &rows)?;
                return Err(e.context(format!(
                    "protocol {p} (its keys and replica logs are kept for inspection)"
                )));
            }
        }
    }
    print_table(&mut std::io::stdout(), &a, &rows)?;
    write_csv(&a.csv, &a, &rows)?;
    println!("results appended to {}", a.csv.display());
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
    eprintln!(
        "{protocol}: cluster files and replica logs in {}",
        dir.display()
    );
    let n = match protocol {
        "bare" => 1,
        "raft" => 3,
        _ => a.replicas,
    };
    let spec = RunSpec {
        protocol: protocol.to_string(),
        n,
        props: props.clone(),
        clients: a.clients,
        target: a.target,
        signed: a.signed,
        full_replies: a.full_replies,
        protocol_args: a.protocol.clone(),
        remote_execution: a.execution == "remote",
        duration,
        warmup,
        dir: dir.clone(),
        keep: a.keep,
    };
    let out = Local.run(&spec)?;
    if a.ycsb {
        print_ycsb(&mut std::io::stdout(), &out.report, a.target.is_some())?;
    }
    if a.keep {
        println!("replica logs kept in {}", dir.display());
    }
    Ok(Row {
        protocol: protocol.to_string(),
        n,
        cpu_us_per_op: out.cpu_us_per_op(),
        report: out.report,
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

const CSV_HEADER: &str = "protocol,replicas,workload,clients,auth,replies,storage,batch,pipeline,io,target_ops_s,duration_s,ops,throughput_ops_s,p50_us,p90_us,p99_us,p999_us,max_us,p50_intended_us,p99_intended_us,behind,cpu_us_per_op";

/// How the row's clients got their results: from BFT replicas, `digests`
/// (one full result, the others its hash) or `full` (all full); Raft's
/// leader and the bare server always send the one full result.
fn replies_column(protocol: &str, full_replies: bool) -> &'static str {
    match protocol {
        "bft" if !full_replies => "digests",
        _ => "full",
    }
}

/// The header the previous version wrote: `storage` was `raft_storage`, empty but for Raft.
const CSV_HEADER_RAFT_STORAGE: &str = "protocol,replicas,workload,clients,auth,replies,raft_storage,batch,pipeline,io,target_ops_s,duration_s,ops,throughput_ops_s,p50_us,p90_us,p99_us,p999_us,max_us,p50_intended_us,p99_intended_us,behind,cpu_us_per_op";

/// The header this version wrote before `replies` and `raft_storage` existed.
const CSV_HEADER_BEFORE_REPLIES: &str = "protocol,replicas,workload,clients,auth,batch,pipeline,io,target_ops_s,duration_s,ops,throughput_ops_s,p50_us,p90_us,p99_us,p999_us,max_us,p50_intended_us,p99_intended_us,behind,cpu_us_per_op";

/// Refuses an existing file with other columns (before anything runs), so
/// rows of different shapes never mix. A file of the previous version is
/// brought up to date first: its rows get the values they measured (full
/// replies; Raft in memory), so `cargo run --release -- bench` keeps
/// appending to `results/bench.csv` across the upgrade.
fn check_csv(path: &Path) -> anyhow::Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("--csv {}", path.display()))?;
    match text.lines().next() {
        None => Ok(()),
        Some(CSV_HEADER) => Ok(()),
        Some(CSV_HEADER_RAFT_STORAGE) => {
            std::fs::write(path, storage_renamed(&text))
                .with_context(|| format!("--csv {}: rewriting", path.display()))?;
            eprintln!(
                "{}: renamed the column raft_storage to storage (memory where it was empty)",
                path.display()
            );
            Ok(())
        }
        Some(CSV_HEADER_BEFORE_REPLIES) => {
            std::fs::write(path, storage_renamed(&upgraded(&text)))
                .with_context(|| format!("--csv {}: rewriting", path.display()))?;
            eprintln!(
                "{}: added the columns replies and raft_storage to its earlier rows (full, memory)",
                path.display()
            );
            Ok(())
        }
        Some(_) => bail!(
            "--csv {}: the file has other columns (not a `bftbench bench` CSV of this version); give another file",
            path.display()
        ),
    }
}

/// Rows under `raft_storage` moved to `storage`: an empty cell (BFT, bare) was memory.
fn storage_renamed(text: &str) -> String {
    let mut out = format!("{CSV_HEADER}\n");
    for line in text.lines().skip(1).filter(|l| !l.is_empty()) {
        let mut cells: Vec<&str> = line.split(',').collect();
        if let Some(c) = cells.get_mut(6).filter(|c| c.is_empty()) {
            *c = "memory";
        }
        out += &cells.join(",");
        out.push('\n');
    }
    out
}

/// The version before it: `replies` and `raft_storage` inserted after `auth`.
fn upgraded(text: &str) -> String {
    let mut out = format!("{CSV_HEADER_RAFT_STORAGE}\n");
    for line in text.lines().skip(1).filter(|l| !l.is_empty()) {
        let mut cells: Vec<&str> = line.split(',').collect();
        let storage = if cells.first() == Some(&"raft") {
            "memory"
        } else {
            ""
        };
        let at = 5.min(cells.len());
        cells.splice(at..at, ["full", storage]);
        out += &cells.join(",");
        out.push('\n');
    }
    out
}

fn write_csv(path: &Path, a: &BenchArgs, rows: &[Row]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("--csv: creating {}", dir.display()))?;
    }
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
            "{},{},{},{},{},{},{},{},{},{},{},{:.3},{},{:.1},{},{},{},{},{},{},{},{},{:.2}",
            r.protocol,
            r.n,
            a.workload,
            a.clients,
            if a.signed { "ed25519" } else { "mac" },
            replies_column(&r.protocol, a.full_replies),
            match (r.protocol.as_str(), a.protocol.on_disk()) {
                ("bare", _) | (_, false) => "memory",
                _ => "disk",
            },
            a.protocol.batch,
            a.protocol.pipeline,
            a.protocol.io,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_of_the_previous_version_is_upgraded_and_another_refused() {
        let dir = std::env::temp_dir().join(format!("bftbench-bench-csv-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("bench.csv");
        let rows = "raft,3,a,64,mac,1024,4,epoll,,4.000,1,2.0,3,4,5,6,7,8,9,0,1.00\n\
                    bft,4,a,64,mac,1024,4,epoll,,4.000,1,2.0,3,4,5,6,7,8,9,0,1.00\n";
        std::fs::write(&path, format!("{CSV_HEADER_BEFORE_REPLIES}\n{rows}")).expect("write");
        check_csv(&path).expect("upgraded");
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], CSV_HEADER);
        assert!(
            lines[1].starts_with("raft,3,a,64,mac,full,memory,1024,"),
            "{text}"
        );
        assert!(
            lines[2].starts_with("bft,4,a,64,mac,full,memory,1024,"),
            "{text}"
        );
        let width = CSV_HEADER.split(',').count();
        assert!(
            lines.iter().all(|l| l.split(',').count() == width),
            "{text}"
        );
        check_csv(&path).expect("now current");
        // The version before this one: `raft_storage`, empty but for Raft.
        let before = "bft,4,a,64,mac,digests,,1024,4,epoll,,4.000,1,2.0,3,4,5,6,7,8,9,0,1.00\n";
        std::fs::write(&path, format!("{CSV_HEADER_RAFT_STORAGE}\n{before}")).expect("write");
        check_csv(&path).expect("renamed");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.starts_with(CSV_HEADER), "{text}");
        assert!(
            text.contains("\nbft,4,a,64,mac,digests,memory,1024,"),
            "{text}"
        );
        // Control: a file with other columns is refused, untouched.
        std::fs::write(&path, "protocol,ops\nbft,5\n").expect("write");
        assert!(check_csv(&path).is_err());
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "protocol,ops\nbft,5\n"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
