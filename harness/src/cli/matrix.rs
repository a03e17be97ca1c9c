//! `bftbench matrix run FILE`: every cell of a matrix file × its repetitions,
//! each on a fresh cluster, one CSV row appended the moment each run ends.

use super::find_peak;
use crate::deploy::docker::Docker;
use crate::deploy::kube::Kube;
use crate::deploy::local::Local;
use crate::deploy::ssh::Ssh;
use crate::deploy::Deployment;
use crate::matrix::{cell_name, run_spec, MatrixSpec};
use crate::results::{self, Metrics, Params, Provenance, ResultRow};
use anyhow::Context;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

#[derive(Args, Debug)]
pub struct MatrixArgs {
    #[command(subcommand)]
    pub command: MatrixCommand,
}

#[derive(Subcommand, Debug)]
pub enum MatrixCommand {
    /// Run a matrix file's cells (or list them with --dry-run).
    Run(RunArgs),
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The matrix file (TOML).
    pub file: PathBuf,
    /// Results file (default: results/<name>.csv); rows are appended.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// List the cells and runs without running anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Skip runs the results file already holds with status `ok`.
    #[arg(long)]
    pub resume: bool,
    /// Keep each run's cluster folder (keys, process logs).
    #[arg(long)]
    pub keep: bool,
    /// Saturation search: per cell, raise the offered rate (open loop) until
    /// intended p99 latency passes this cap in ms or throughput stops rising;
    /// report the throughput at the cap.
    #[arg(long, value_name = "P99_CAP_MS")]
    pub find_peak: Option<f64>,
    #[command(flatten)]
    pub peak: find_peak::PeakArgs,
    /// Run every cell on this back end (local, docker or ssh), whatever the
    /// file says.
    #[arg(long)]
    pub backend: Option<String>,
    /// The ssh back end's hosts (JSON, as Terraform's inventory module writes it).
    #[arg(long)]
    pub inventory: Option<PathBuf>,
    /// The binary the ssh back end copies to its hosts (default: this one;
    /// give a static build when the hosts' libc differs).
    #[arg(long)]
    pub remote_binary: Option<PathBuf>,
    /// The k8s back end's namespace (kubectl's current context picks the cluster).
    #[arg(long, default_value = "default")]
    pub namespace: String,
}

pub fn run(a: MatrixArgs) -> anyhow::Result<i32> {
    match a.command {
        MatrixCommand::Run(r) => run_matrix(r),
    }
}

/// A progress bar (current cell, ETA, last result) on a terminal; plain
/// lines otherwise. Either way each run ends with one summary line.
pub struct Progress {
    pub bar: ProgressBar,
}

impl Progress {
    fn new(total: u64) -> Progress {
        let bar = ProgressBar::new(total);
        if let Ok(style) =
            ProgressStyle::with_template("{bar:24} {pos}/{len} runs, ETA {eta} | {wide_msg}")
        {
            bar.set_style(style);
        }
        Progress { bar }
    }

    fn start(&self, cell: &str) {
        self.bar.set_message(format!("running {cell}"));
    }

    pub fn done(&self, summary: String) {
        if self.bar.is_hidden() {
            eprintln!("{summary}");
        } else {
            self.bar.println(summary);
        }
        self.bar.inc(1);
    }
}

/// The back ends a matrix uses, each set up at its first cell (so a matrix
/// without docker cells never needs Docker).
#[derive(Default)]
pub struct Backends {
    local: Local,
    docker: Option<Docker>,
    ssh: Option<Ssh>,
    kube: Option<Kube>,
    namespace: String,
    inventory: Option<PathBuf>,
    remote_binary: Option<PathBuf>,
}

impl Backends {
    fn get(&mut self, name: &str) -> anyhow::Result<&mut dyn Deployment> {
        Ok(match name {
            "local" => &mut self.local,
            "docker" => match &mut self.docker {
                Some(d) => d,
                none => none.insert(Docker::new()?),
            },
            "ssh" => match &mut self.ssh {
                Some(s) => s,
                none => {
                    let inv = self.inventory.as_deref().context(
                        "the ssh back end needs --inventory FILE (Terraform's inventory_json output)",
                    )?;
                    none.insert(Ssh::new(inv, self.remote_binary.clone())?)
                }
            },
            "k8s" => match &mut self.kube {
                Some(k) => k,
                none => none.insert(Kube::new(&self.namespace)?),
            },
            other => anyhow::bail!("unknown back end `{other}`"),
        })
    }
}

/// (cell, repetition) pairs already measured in `path`.
fn done_runs(path: &Path) -> anyhow::Result<BTreeSet<(String, u32)>> {
    if !path.exists() {
        return Ok(BTreeSet::new());
    }
    Ok(results::read_rows(path)?
        .into_iter()
        .filter(|r| r.get("status").map(String::as_str) == Some("ok"))
        .filter_map(|r| Some((r.get("cell")?.clone(), r.get("repetition")?.parse().ok()?)))
        .collect())
}

/// Whether a run's folder holds a process log (`*.log`) worth keeping.
fn holds_logs(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.path().extension().is_some_and(|x| x == "log"))
    })
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn run_matrix(a: RunArgs) -> anyhow::Result<i32> {
    let mut spec = MatrixSpec::load(&a.file)?;
    if let Some(b) = &a.backend {
        spec.set_axis("backend", &[b]).context("--backend")?;
    }
    let cells = spec.cells();
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("results").join(format!("{}.csv", spec.name)));
    let done = if a.resume {
        done_runs(&out)?
    } else {
        BTreeSet::new()
    };
    let runs: Vec<(usize, u32)> = (0..cells.len())
        .flat_map(|c| (1..=spec.repetitions).map(move |r| (c, r)))
        .filter(|(c, r)| !done.contains(&(cell_name(&cells[*c]), *r)))
        .collect();
    let skipped = cells.len() * spec.repetitions as usize - runs.len();
    println!(
        "matrix `{}`: {} cells × {} repetitions = {} runs ({} already in {}, skipped)",
        spec.name,
        cells.len(),
        spec.repetitions,
        cells.len() * spec.repetitions as usize,
        skipped,
        out.display()
    );
    if a.dry_run {
        for (c, r) in &runs {
            println!("  rep {r}: {}", cell_name(&cells[*c]));
        }
        return Ok(0);
    }
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut runner = Runner::new(out.clone(), a.keep, runs.len() as u64);
    runner.backends.inventory = a.inventory.clone();
    runner.backends.remote_binary = a.remote_binary.clone();
    runner.backends.namespace = a.namespace.clone();
    if let Some(cap_ms) = a.find_peak {
        let measured = if a.resume {
            find_peak::measured_in(&out)?
        } else {
            find_peak::Measured::new()
        };
        let peaks = find_peak::search(&mut runner, &cells, &a.peak, cap_ms, &measured)?;
        runner.progress.bar.finish_and_clear();
        find_peak::report(&peaks, cap_ms, &out)?;
    } else {
        for (c, rep) in &runs {
            runner.run(&cells[*c], *rep)?;
        }
        runner.progress.bar.finish_and_clear();
    }
    println!(
        "{} runs, {} failed; results in {}",
        runner.count,
        runner.failed,
        out.display()
    );
    Ok(if runner.failed > 0 { 1 } else { 0 })
}

/// Runs cells one at a time, appending a row per run.
pub struct Runner {
    out: PathBuf,
    keep: bool,
    provenance: Provenance,
    backends: Backends,
    pub progress: Progress,
    started: Instant,
    /// Runs done and failed so far.
    pub count: usize,
    pub failed: usize,
}

impl Runner {
    fn new(out: PathBuf, keep: bool, planned: u64) -> Runner {
        Runner {
            out,
            keep,
            provenance: Provenance::of_this_machine(),
            backends: Backends::default(),
            progress: Progress::new(planned),
            started: Instant::now(),
            count: 0,
            failed: 0,
        }
    }

    /// One run of `cell`: a fresh cluster, one CSV row (kept whatever
    /// happens), histograms and time series beside it, one summary line.
    pub fn run(&mut self, cell: &Params, rep: u32) -> anyhow::Result<ResultRow> {
        let name = cell_name(cell);
        let run_id = format!("{}-{}-{}", now_s(), std::process::id(), self.count);
        let dir = std::env::temp_dir().join(format!("bftbench-matrix-{run_id}"));
        self.progress.start(&name);
        let backend = cell.get("backend").map_or("local", String::as_str);
        let keep = self.keep;
        let backends = &mut self.backends;
        let outcome = run_spec(cell, &dir, keep)
            .and_then(|s| backends.get(backend)?.run(&s))
            .map(|o| Metrics::from_outcome(&o))
            .map_err(|e| format!("{e:#}"));
        if outcome.is_err() && !keep && !holds_logs(&dir) {
            // Failed before any process wrote a log: only keys, nothing to diagnose.
            let _ = std::fs::remove_dir_all(&dir);
        }
        let row = ResultRow {
            run_id: run_id.clone(),
            timestamp: now_s(),
            provenance: self.provenance.clone(),
            cell: name.clone(),
            repetition: rep,
            params: cell.clone(),
            outcome,
        };
        results::append(&self.out, &row)?;
        self.count += 1;
        let result = match &row.outcome {
            Ok(m) => {
                let raw = results::raw_dir(&self.out);
                results::save_histograms(&raw, &run_id, m)?;
                results::save_series(&raw, &run_id, m)?;
                format!(
                    "ok {:.0} ops/s, p50 {} µs, p99 {} µs, {:.1} µs CPU/op",
                    m.throughput_ops_s,
                    m.latency.value_at_quantile(0.5),
                    m.latency.value_at_quantile(0.99),
                    m.cpu_us_per_op,
                )
            }
            Err(e) => {
                self.failed += 1;
                format!("FAILED (row kept, other cells go on): {e}")
            }
        };
        let len = self
            .progress
            .bar
            .length()
            .unwrap_or(0)
            .max(self.count as u64);
        let left = len.saturating_sub(self.count as u64) as f64;
        let eta = self.started.elapsed().as_secs_f64() / self.count as f64 * left;
        self.progress.done(format!(
            "[{}/{len}] rep {rep}: {name}: {result} (ETA {eta:.0} s)",
            self.count
        ));
        Ok(row)
    }
}
