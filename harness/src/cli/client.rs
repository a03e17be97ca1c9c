//! `bftbench client`: YCSB load or run phase against a running cluster.

use super::shared::{parse_duration, print_ycsb};
use crate::control::ProcessStats;
use crate::deploy::wire::{WireReport, MEASURING_LINE};
use anyhow::{bail, Context};
use bft_net::client_loop::{LoadGenerator, LoadOptions, LoadReport, Phase};
use bft_net::cluster::{load_client_secrets, Cluster};
use bft_workloads::Workload;
use clap::Args;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

#[derive(Args, Debug)]
pub struct ClientArgs {
    #[arg(long)]
    pub cluster: PathBuf,
    /// Client secret keys (default: clients.key beside the cluster file).
    #[arg(long)]
    pub keys: Option<PathBuf>,
    /// A core workload (a … f) or a YCSB property file.
    #[arg(long, default_value = "a")]
    pub workload: String,
    #[arg(short = 'p', value_name = "KEY=VALUE")]
    pub props: Vec<String>,
    /// Logical closed-loop clients (YCSB's -threads); at most the number of client keys.
    #[arg(long, default_value_t = 16)]
    pub threads: usize,
    /// Run the load phase (insert the records) instead of the run phase.
    #[arg(long)]
    pub load: bool,
    #[arg(long, default_value = "10s")]
    pub duration: String,
    #[arg(long, default_value = "0s")]
    pub warmup: String,
    /// Sign requests with ed25519 instead of MAC authenticators.
    #[arg(long)]
    pub signed: bool,
    /// BFT: every replica returns the full result (default: one replica per
    /// client does, the others a digest of it).
    #[arg(long)]
    pub full_replies: bool,
    /// Open loop at this many operations per second (latency also from the intended start).
    #[arg(long)]
    pub target: Option<f64>,
    /// Print JSON instead of YCSB's text blocks.
    #[arg(long)]
    pub json: bool,
    /// Seed of the operation stream.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Run the load phase first, then the run phase, in one process.
    #[arg(long)]
    pub load_first: bool,
    /// For the harness: print `measuring` when warm-up ends and the whole
    /// report as one `report {json}` line at the end (instead of text); stop
    /// when stdin closes.
    #[arg(long)]
    pub control_stdio: bool,
    /// Print the whole report as one `report {json}` line at the end, as
    /// with --control-stdio but without reading stdin (a Kubernetes Job).
    #[arg(long)]
    pub report_line: bool,
    /// Keep looking up replica names that do not resolve yet for this long.
    #[arg(long, default_value = "0s")]
    pub resolve_wait: String,
    /// How long to wait for every replica to accept a connection.
    #[arg(long, default_value = "10s")]
    pub connect_wait: String,
}

pub fn run(a: ClientArgs) -> anyhow::Result<i32> {
    let wait = parse_duration(&a.resolve_wait).context("--resolve-wait")?;
    let cluster = Cluster::load_resolving(&a.cluster, wait)?;
    let keys = a.keys.clone().unwrap_or_else(|| {
        a.cluster
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join("clients.key")
    });
    let secrets = load_client_secrets(&keys)?;
    if a.threads == 0 || a.threads > secrets.len() {
        bail!(
            "--threads {}: {} has {} client keys",
            a.threads,
            keys.display(),
            secrets.len()
        );
    }
    let first = cluster.file.clients.first_id;
    let secrets: Vec<_> = secrets
        .into_iter()
        .take(a.threads)
        .enumerate()
        .map(|(i, k)| (first + i as u64, k))
        .collect();
    let props = super::workload::load_properties(&a.workload, &a.props)?;
    let mut workload = Workload::new(&props, a.seed)?;
    let opts = super::shared::load_options(a.signed, a.target, a.full_replies);
    let connect_wait = parse_duration(&a.connect_wait).context("--connect-wait")?;
    let mut gen = LoadGenerator::connect(&cluster, &secrets, &opts, connect_wait)
        .with_context(|| format!("connecting to the cluster in {}", a.cluster.display()))?;
    let phase = if a.load {
        Phase::Load
    } else {
        Phase::Run {
            duration: parse_duration(&a.duration).context("--duration")?,
            warmup: parse_duration(&a.warmup).context("--warmup")?,
        }
    };
    if a.control_stdio || a.report_line {
        let stop = if a.control_stdio {
            crate::control::serve(true)
        } else {
            std::sync::Arc::new(AtomicBool::new(false))
        };
        if a.load_first {
            gen.run(&mut workload, Phase::Load, &opts, &stop)
                .context("load phase")?;
        }
        return run_for_harness(&mut gen, &mut workload, phase, &opts, &stop);
    }
    let stop = AtomicBool::new(false);
    if a.load_first {
        gen.run(&mut workload, Phase::Load, &opts, &stop)
            .context("load phase")?;
    }
    let report = gen.run(&mut workload, phase, &opts, &stop)?;
    let mut out = std::io::stdout().lock();
    if a.json {
        print_json(&mut out, &report)?;
    } else {
        print_ycsb(&mut out, &report, a.target.is_some())?;
    }
    Ok(0)
}

/// The run phase under the harness's control: its figures and report go to
/// stdout as lines the harness reads (`crate::deploy::wire`).
fn run_for_harness(
    gen: &mut LoadGenerator,
    workload: &mut Workload,
    phase: Phase,
    opts: &LoadOptions,
    stop: &AtomicBool,
) -> anyhow::Result<i32> {
    let mut before = None;
    let report = gen.run_marked(workload, phase, opts, stop, &mut || {
        before = Some(ProcessStats::of_self());
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{MEASURING_LINE}").and_then(|_| out.flush());
    })?;
    let after = ProcessStats::of_self();
    let before = before.context("the run ended before its measured interval began")?;
    let line = WireReport::new(&report, before, after).to_line()?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(0)
}

fn print_json(out: &mut impl Write, r: &LoadReport) -> std::io::Result<()> {
    write!(
        out,
        "{{\"runtime_ms\":{},\"throughput_ops_s\":{:.3},\"operations\":{},\"per_op\":{{",
        r.elapsed.as_millis(),
        r.throughput(),
        r.ops
    )?;
    for (i, (name, h)) in r.per_op.iter().enumerate() {
        write!(
            out,
            "{}\"{name}\":{{\"count\":{},\"mean_us\":{:.1},\"p50_us\":{},\"p95_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{}}}",
            if i > 0 { "," } else { "" },
            h.len(),
            h.mean(),
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.95),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.max()
        )?;
    }
    let i = &r.all_intended;
    writeln!(
        out,
        "}},\"intended\":{{\"p50_us\":{},\"p99_us\":{},\"max_us\":{}}},\"behind\":{}}}",
        i.value_at_quantile(0.5),
        i.value_at_quantile(0.99),
        i.max(),
        r.behind + r.backlog_left
    )
}
