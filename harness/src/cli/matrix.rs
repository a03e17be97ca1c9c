//! `bftbench matrix run FILE`: every cell of a matrix file × its repetitions,
//! each on a fresh cluster, one CSV row appended the moment each run ends.

use crate::deploy::docker::Docker;
use crate::deploy::local::Local;
use crate::deploy::Deployment;
use crate::matrix::{cell_name, run_spec, MatrixSpec};
use crate::results::{self, Metrics, Provenance, ResultRow};
use anyhow::Context;
use clap::{Args, Subcommand};
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
}

pub fn run(a: MatrixArgs) -> anyhow::Result<i32> {
    match a.command {
        MatrixCommand::Run(r) => run_matrix(r),
    }
}

/// The back ends a matrix uses, each set up at its first cell (so a matrix
/// without docker cells never needs Docker).
#[derive(Default)]
struct Backends {
    local: Local,
    docker: Option<Docker>,
}

impl Backends {
    fn get(&mut self, name: &str) -> anyhow::Result<&mut dyn Deployment> {
        Ok(match name {
            "local" => &mut self.local,
            "docker" => match &mut self.docker {
                Some(d) => d,
                none => none.insert(Docker::new()?),
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

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn run_matrix(a: RunArgs) -> anyhow::Result<i32> {
    let spec = MatrixSpec::load(&a.file)?;
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
    let provenance = Provenance::of_this_machine();
    let started = Instant::now();
    let mut failed = 0;
    let mut backends = Backends::default();
    for (k, (c, rep)) in runs.iter().enumerate() {
        let cell = &cells[*c];
        let name = cell_name(cell);
        let run_id = format!("{}-{}-{k}", now_s(), std::process::id());
        let dir = std::env::temp_dir().join(format!("bftbench-matrix-{run_id}"));
        eprintln!("[{}/{}] rep {rep}: {name}", k + 1, runs.len());
        let backend = cell.get("backend").map_or("local", String::as_str);
        let outcome = run_spec(cell, &dir, a.keep)
            .and_then(|s| backends.get(backend)?.run(&s))
            .map(|o| Metrics::from_outcome(&o))
            .map_err(|e| format!("{e:#}"));
        let row = ResultRow {
            run_id: run_id.clone(),
            timestamp: now_s(),
            provenance: provenance.clone(),
            cell: name,
            repetition: *rep,
            params: cell.clone(),
            outcome,
        };
        results::append(&out, &row)?;
        let eta = started.elapsed().as_secs_f64() / (k + 1) as f64 * (runs.len() - k - 1) as f64;
        match &row.outcome {
            Ok(m) => {
                results::save_histograms(&results::raw_dir(&out), &run_id, m)?;
                results::save_series(&results::raw_dir(&out), &run_id, m)?;
                eprintln!(
                    "    ok: {:.0} ops/s, p50 {} µs, p99 {} µs, {:.1} µs CPU/op (ETA {:.0} s)",
                    m.throughput_ops_s,
                    m.latency.value_at_quantile(0.5),
                    m.latency.value_at_quantile(0.99),
                    m.cpu_us_per_op,
                    eta
                );
            }
            Err(e) => {
                failed += 1;
                eprintln!("    FAILED (row kept, other cells go on): {e} (ETA {eta:.0} s)");
            }
        }
    }
    println!(
        "{} runs, {} failed; results in {}",
        runs.len(),
        failed,
        out.display()
    );
    Ok(if failed > 0 { 1 } else { 0 })
}
