//! `bftbench compare BASE.csv NEW.csv`: match runs by parameters, compare the
//! median of a metric per group, with a bootstrap confidence interval on the
//! ratio; flag changes whose interval excludes 1 beyond a threshold.

use crate::results::{read_rows, PARAM_COLUMNS};
use anyhow::{bail, Context};
use bft_core::rng::Rng;
use clap::Args;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct CompareArgs {
    pub base: PathBuf,
    pub new: PathBuf,
    /// Columns that identify a group (default: every parameter column).
    #[arg(long, value_delimiter = ',')]
    pub by: Vec<String>,
    /// The metric compared (a numeric column).
    #[arg(long, default_value = "throughput_ops_s")]
    pub metric: String,
    /// Smallest change worth flagging, in percent.
    #[arg(long, default_value_t = 5.0)]
    pub threshold: f64,
    /// Exit with status 1 if any group regresses by more than this many percent
    /// (and its interval excludes no change).
    #[arg(long)]
    pub fail_on_regression: Option<f64>,
    /// text, md or csv.
    #[arg(long, default_value = "text")]
    pub format: String,
}

/// Bootstrap resamples per group.
const RESAMPLES: usize = 2000;

/// Whether a larger value of `metric` is better.
fn higher_is_better(metric: &str) -> bool {
    !(metric.ends_with("_us") || metric == "cpu_us_per_op" || metric == "behind")
}

pub struct Comparison {
    pub group: String,
    pub base: f64,
    pub new: f64,
    pub ratio: f64,
    pub low: f64,
    pub high: f64,
    pub runs: (usize, usize),
    /// "regression", "improvement" or "".
    pub flag: &'static str,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// 95% interval of median(new) / median(base) by resampling each side.
fn bootstrap(base: &[f64], new: &[f64], rng: &mut Rng) -> (f64, f64) {
    let mut ratios: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            let mut pick = |v: &[f64]| -> f64 {
                let mut s: Vec<f64> = (0..v.len())
                    .map(|_| v[rng.below(v.len() as u64) as usize])
                    .collect();
                median(&mut s)
            };
            pick(new) / pick(base)
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    (
        ratios[RESAMPLES * 25 / 1000],
        ratios[RESAMPLES * 975 / 1000],
    )
}

type Groups = BTreeMap<String, Vec<f64>>;

fn groups(path: &std::path::Path, by: &[String], metric: &str) -> anyhow::Result<Groups> {
    let rows = read_rows(path)?;
    let Some(first) = rows.first() else {
        bail!("{}: no rows", path.display());
    };
    for c in by.iter().map(String::as_str).chain([metric]) {
        if !first.contains_key(c) {
            bail!("{}: no column `{c}`", path.display());
        }
    }
    let mut g = Groups::new();
    for (i, r) in rows.iter().enumerate() {
        if r.get("status").is_some_and(|s| s != "ok") {
            continue; // failed runs measured nothing
        }
        let v: f64 = r[metric].parse().with_context(|| {
            format!(
                "{}: row {}: `{metric}` = `{}`",
                path.display(),
                i + 2,
                r[metric]
            )
        })?;
        let key = by
            .iter()
            .map(|c| format!("{c}={}", r[c]))
            .collect::<Vec<_>>()
            .join(" ");
        g.entry(key).or_default().push(v);
    }
    Ok(g)
}

pub fn compare(a: &CompareArgs) -> anyhow::Result<Vec<Comparison>> {
    let by: Vec<String> = if a.by.is_empty() {
        PARAM_COLUMNS.iter().map(|c| c.to_string()).collect()
    } else {
        a.by.clone()
    };
    let base = groups(&a.base, &by, &a.metric)?;
    let new = groups(&a.new, &by, &a.metric)?;
    let mut rng = Rng::new(0x5eed);
    let mut out = Vec::new();
    for (k, b) in &base {
        let Some(n) = new.get(k) else { continue };
        let (bm, nm) = (median(&mut b.clone()), median(&mut n.clone()));
        let (low, high) = bootstrap(b, n, &mut rng);
        let ratio = nm / bm;
        let t = a.threshold / 100.0;
        let better = if higher_is_better(&a.metric) {
            low > 1.0 + t
        } else {
            high < 1.0 - t
        };
        let worse = if higher_is_better(&a.metric) {
            high < 1.0 - t
        } else {
            low > 1.0 + t
        };
        out.push(Comparison {
            group: k.clone(),
            base: bm,
            new: nm,
            ratio,
            low,
            high,
            runs: (b.len(), n.len()),
            flag: if worse {
                "regression"
            } else if better {
                "improvement"
            } else {
                ""
            },
        });
    }
    if out.is_empty() {
        bail!(
            "no group of runs appears in both files (grouped by {}); choose columns with --by",
            by.join(",")
        );
    }
    Ok(out)
}

/// Groups by only the parameters that vary, so names stay short.
fn short_name(group: &str, all: &[Comparison]) -> String {
    let constant = |kv: &str| all.iter().all(|c| c.group.split(' ').any(|x| x == kv));
    let parts: Vec<&str> = group.split(' ').filter(|kv| !constant(kv)).collect();
    if parts.is_empty() {
        "(all runs)".into()
    } else {
        parts.join(" ")
    }
}

fn print(out: &mut impl Write, a: &CompareArgs, rows: &[Comparison]) -> std::io::Result<()> {
    let line = |c: &Comparison| {
        [
            short_name(&c.group, rows),
            format!("{:.1}", c.base),
            format!("{:.1}", c.new),
            format!("{:.2}", c.ratio),
            format!("[{:.2}, {:.2}]", c.low, c.high),
            format!("{}/{}", c.runs.0, c.runs.1),
            c.flag.to_string(),
        ]
    };
    let head = ["group", "base", "new", "ratio", "95% CI", "runs", "flag"];
    match a.format.as_str() {
        "md" => {
            writeln!(out, "Metric: `{}` (median per group)\n", a.metric)?;
            writeln!(out, "| {} |", head.join(" | "))?;
            writeln!(out, "|{}", "---|".repeat(head.len()))?;
            for c in rows {
                writeln!(out, "| {} |", line(c).join(" | "))?;
            }
        }
        "csv" => {
            let mut w = csv::Writer::from_writer(out);
            w.write_record(["group", "base", "new", "ratio", "ci_low", "ci_high", "flag"])?;
            for c in rows {
                w.write_record([
                    c.group.clone(),
                    c.base.to_string(),
                    c.new.to_string(),
                    c.ratio.to_string(),
                    c.low.to_string(),
                    c.high.to_string(),
                    c.flag.to_string(),
                ])?;
            }
            w.flush()?;
        }
        _ => {
            writeln!(out, "metric: {} (median per group)", a.metric)?;
            let width = rows
                .iter()
                .map(|c| short_name(&c.group, rows).len())
                .max()
                .unwrap_or(5)
                .max(5);
            writeln!(
                out,
                "{:<width$} {:>12} {:>12} {:>6} {:>14} {:>6} {}",
                head[0], head[1], head[2], head[3], head[4], head[5], head[6]
            )?;
            for c in rows {
                let l = line(c);
                writeln!(
                    out,
                    "{:<width$} {:>12} {:>12} {:>6} {:>14} {:>6} {}",
                    l[0], l[1], l[2], l[3], l[4], l[5], l[6]
                )?;
            }
        }
    }
    Ok(())
}

pub fn run(a: CompareArgs) -> anyhow::Result<i32> {
    if !["text", "md", "csv"].contains(&a.format.as_str()) {
        bail!("--format {}: expected text, md or csv", a.format);
    }
    let rows = compare(&a)?;
    print(&mut std::io::stdout().lock(), &a, &rows)?;
    if let Some(pct) = a.fail_on_regression {
        let worst = rows.iter().filter(|c| c.flag == "regression").any(|c| {
            let change = if higher_is_better(&a.metric) {
                1.0 - c.ratio
            } else {
                c.ratio - 1.0
            };
            change * 100.0 > pct
        });
        if worst {
            eprintln!("regression beyond {pct}% found");
            return Ok(1);
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A results file in a folder of its own (tests run in parallel), removed by `gone`.
    fn file(name: &str, scale: f64) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("bftbench-compare-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join(name);
        let mut text = String::from("protocol,batch,status,throughput_ops_s,p99_us\n");
        for (p, base) in [("bft", 20_000.0), ("raft", 25_000.0)] {
            for (i, noise) in [0.98, 1.0, 1.01, 0.99, 1.02].iter().enumerate() {
                let v = base * noise * scale;
                text += &format!("{p},100,ok,{v},{}\n", 1000.0 / scale + i as f64);
            }
            text += &format!("{p},100,failed,,\n"); // ignored
        }
        std::fs::write(&path, text).expect("write");
        path
    }

    fn gone(files: &[&PathBuf]) {
        for f in files {
            if let Some(dir) = f.parent() {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }

    fn args(base: PathBuf, new: PathBuf, metric: &str) -> CompareArgs {
        CompareArgs {
            base,
            new,
            by: vec!["protocol".into(), "batch".into()],
            metric: metric.into(),
            threshold: 5.0,
            fail_on_regression: Some(10.0),
            format: "text".into(),
        }
    }

    #[test]
    fn a_file_against_itself_is_unchanged() {
        let f = file("same.csv", 1.0);
        let rows = compare(&args(f.clone(), f.clone(), "throughput_ops_s")).expect("compare");
        gone(&[&f]);
        assert_eq!(rows.len(), 2);
        for r in &rows {
            assert_eq!(format!("{:.2}", r.ratio), "1.00");
            assert!(r.low <= 1.0 && r.high >= 1.0, "{} {}", r.low, r.high);
            assert_eq!(r.flag, "");
            assert_eq!(r.runs, (5, 5));
        }
    }

    #[test]
    fn a_thirty_percent_regression_is_flagged_both_ways_round() {
        let base = file("base.csv", 1.0);
        let slow = file("slow.csv", 0.7);
        let rows = compare(&args(base.clone(), slow.clone(), "throughput_ops_s")).expect("ok");
        assert!(rows.iter().all(|r| r.flag == "regression" && r.high < 0.95));
        assert_eq!(
            run(args(base.clone(), slow.clone(), "throughput_ops_s")).expect("run"),
            1
        );
        // Latency: higher is worse, so the slow file's larger p99 is the regression.
        let rows = compare(&args(base.clone(), slow.clone(), "p99_us")).expect("ok");
        assert!(rows.iter().all(|r| r.flag == "regression"), "p99");
        let rows = compare(&args(slow.clone(), base.clone(), "throughput_ops_s")).expect("ok");
        assert!(rows.iter().all(|r| r.flag == "improvement"));
        gone(&[&base, &slow]);
    }

    #[test]
    fn mismatches_are_clear_errors() {
        let f = file("m.csv", 1.0);
        let err = compare(&args(f.clone(), f.clone(), "nosuch"))
            .err()
            .expect("error");
        assert!(err.to_string().contains("no column `nosuch`"), "{err}");
        let mut a = args(f.clone(), f.clone(), "throughput_ops_s");
        a.base = PathBuf::from("/nonexistent.csv");
        let err = format!("{:#}", compare(&a).err().expect("error"));
        assert!(err.contains("/nonexistent.csv"), "{err}");
        gone(&[&f]);
    }
}
