//! `bftbench report FILE.csv`: a Markdown report of a results file: where
//! and when it ran, a table per cell (medians over repetitions), the failed
//! runs with their errors, and the figures.

use super::plot::beside;
use crate::plot::{figures, render};
use crate::results::{read_rows, PARAM_COLUMNS};
use anyhow::Context;
use clap::Args;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// A results file written by `bftbench matrix run`.
    pub file: PathBuf,
    /// Folder for report.md and its figures (default: `<file stem>-report`).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

type Row = BTreeMap<String, String>;

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    (n > 0).then(|| {
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    })
}

fn distinct(rows: &[Row], col: &str) -> Vec<String> {
    let set: BTreeSet<String> = rows.iter().filter_map(|r| r.get(col).cloned()).collect();
    set.into_iter().collect()
}

/// The cell table: parameters that vary, then medians over repetitions.
fn cell_table(out: &mut String, ok: &[Row]) -> std::fmt::Result {
    let vary: Vec<&str> = PARAM_COLUMNS
        .iter()
        .copied()
        .filter(|c| distinct(ok, c).len() > 1)
        .collect();
    let metrics = [
        ("throughput_ops_s", "ops/s", 0),
        ("p50_us", "p50 µs", 0),
        ("p99_us", "p99 µs", 0),
        ("intended_p99_us", "p99 intended µs", 0),
        ("cpu_us_per_op", "CPU µs/op", 1),
    ];
    let mut cells: BTreeMap<String, Vec<&Row>> = BTreeMap::new();
    for r in ok {
        cells.entry(r["cell"].clone()).or_default().push(r);
    }
    let head: Vec<&str> = vary
        .iter()
        .copied()
        .chain(["runs"])
        .chain(metrics.iter().map(|m| m.1))
        .collect();
    writeln!(out, "| {} |", head.join(" | "))?;
    writeln!(out, "|{}", "---|".repeat(head.len()))?;
    for rs in cells.values() {
        let mut line: Vec<String> = vary.iter().map(|c| rs[0][*c].clone()).collect();
        line.push(rs.len().to_string());
        for (col, _, digits) in metrics {
            let m = median(rs.iter().filter_map(|r| r.get(col)?.parse().ok()).collect());
            line.push(m.map_or("".into(), |m| format!("{m:.digits$}")));
        }
        writeln!(out, "| {} |", line.join(" | "))?;
    }
    Ok(())
}

pub fn run(a: ReportArgs) -> anyhow::Result<i32> {
    let out_dir = a.out.unwrap_or_else(|| beside(&a.file, "-report"));
    let rows = read_rows(&a.file)?;
    let (ok, failed): (Vec<Row>, Vec<Row>) = rows
        .into_iter()
        .partition(|r| r.get("status").map(String::as_str) == Some("ok"));
    let mut md = String::new();
    let name = a.file.display();
    writeln!(md, "# Results: `{name}`\n")?;
    writeln!(
        md,
        "{} runs ok, {} failed. Machine: {} ({} cores). Commit: {}.\n",
        ok.len(),
        failed.len(),
        distinct(&ok, "cpu_model").join(", "),
        distinct(&ok, "cores").join(", "),
        distinct(&ok, "git_commit").join(", ")
    )?;
    writeln!(
        md,
        "Medians over repetitions; latency from the actual send (intended: from the \
         scheduled send, open loop); CPU time of every process of a run per operation.\n"
    )?;
    if !ok.is_empty() {
        cell_table(&mut md, &ok)?;
    }
    if !failed.is_empty() {
        writeln!(
            md,
            "\n## Failed runs\n\n| cell | repetition | error |\n|---|---|---|"
        )?;
        for r in &failed {
            let err = r
                .get("error")
                .map_or("", String::as_str)
                .replace('|', "\\|");
            writeln!(md, "| {} | {} | {} |", r["cell"], r["repetition"], err)?;
        }
    }
    if !ok.is_empty() {
        writeln!(md, "\n## Figures\n")?;
        for f in figures(&a.file)? {
            render(&f, &out_dir)?;
            writeln!(
                md,
                "![{}]({}.png)\n\n([SVG]({}.svg))\n",
                f.title, f.stem, f.stem
            )?;
        }
    }
    std::fs::create_dir_all(&out_dir)?;
    let path = out_dir.join("report.md");
    std::fs::write(&path, md).with_context(|| format!("{}", path.display()))?;
    println!("{}", path.display());
    Ok(0)
}
