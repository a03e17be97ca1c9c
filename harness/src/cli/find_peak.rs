//! `bftbench matrix run FILE --find-peak P99_CAP_MS`: a saturation search.
//! Per cell, the offered rate (open loop) rises geometrically until p99
//! latency, measured from the intended send, passes the cap, throughput stops
//! rising, or a run fails; the cell's figure is the best throughput seen
//! under the cap. Every probe is an ordinary run with its own CSV row.

use super::matrix::Runner;
use crate::matrix::cell_name;
use crate::results::Params;
use anyhow::{bail, Context};
use clap::Args;
use std::collections::BTreeMap;
use std::path::Path;

/// A probe must beat the previous one by this factor to count as rising.
const RISE_MIN: f64 = 1.02;

#[derive(Args, Debug, Clone)]
pub struct PeakArgs {
    /// --find-peak: the first offered rate, ops/s.
    #[arg(long, default_value_t = 1000.0)]
    pub peak_start: f64,
    /// --find-peak: the factor between successive offered rates.
    #[arg(long, default_value_t = 1.5)]
    pub peak_step: f64,
    /// --find-peak: probes per cell at most.
    #[arg(long, default_value_t = 12)]
    pub peak_probes: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Peak {
    pub cell: String,
    /// Best throughput with p99 under the cap, and the rate that gave it.
    pub peak_ops_s: Option<f64>,
    pub at_offered: Option<f64>,
    pub probes: u32,
    pub stopped: String,
}

/// What one probe means for the search.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Under the cap and still rising: offer more.
    Rising,
    Stop(String),
}

/// Judges a probe at `rate` from its p99 (µs) and throughput.
pub fn judge(rate: f64, p99_us: u64, tput: f64, prev_tput: f64, cap_ms: f64) -> Verdict {
    if p99_us as f64 > cap_ms * 1000.0 {
        return Verdict::Stop(format!(
            "p99 {:.2} ms over the cap at {rate:.0} ops/s offered",
            p99_us as f64 / 1000.0
        ));
    }
    if prev_tput > 0.0 && tput < prev_tput * RISE_MIN {
        return Verdict::Stop(format!(
            "throughput stopped rising at {rate:.0} ops/s offered"
        ));
    }
    Verdict::Rising
}

fn check(a: &PeakArgs, cap_ms: f64) -> anyhow::Result<()> {
    if !(cap_ms > 0.0 && cap_ms.is_finite()) {
        bail!("--find-peak {cap_ms}: the p99 cap must be a positive number of ms");
    }
    if !(a.peak_start >= 1.0 && a.peak_start.is_finite()) {
        bail!("--peak-start {}: must be at least 1 ops/s", a.peak_start);
    }
    if !(1.05..=10.0).contains(&a.peak_step) {
        bail!("--peak-step {}: must be within 1.05..=10", a.peak_step);
    }
    if !(1..=64).contains(&a.peak_probes) {
        bail!("--peak-probes {}: must be within 1..=64", a.peak_probes);
    }
    Ok(())
}

/// Probes already measured (`--resume`): cell name → (throughput ops/s,
/// intended p99 µs), from the results file's `ok` rows.
pub type Measured = BTreeMap<String, (f64, u64)>;

/// The `ok` rows of a results file as [`Measured`] probes.
pub fn measured_in(path: &Path) -> anyhow::Result<Measured> {
    if !path.exists() {
        return Ok(Measured::new());
    }
    Ok(crate::results::read_rows(path)?
        .into_iter()
        .filter(|r| r.get("status").map(String::as_str) == Some("ok"))
        .filter_map(|r| {
            let t = r.get("throughput_ops_s")?.parse().ok()?;
            let p99 = r.get("intended_p99_us")?.parse().ok()?;
            Some((r.get("cell")?.clone(), (t, p99)))
        })
        .collect())
}

/// One probe: from the results file when `--resume` found it there, else
/// a run. None: the run failed.
fn probe(
    runner: &mut Runner,
    cell: &Params,
    done: &Measured,
) -> anyhow::Result<Option<(f64, u64)>> {
    let name = cell_name(cell);
    if let Some(&m) = done.get(&name) {
        runner.progress.done(format!(
            "rep 1: {name}: already in the results file, not run again"
        ));
        return Ok(Some(m));
    }
    let row = runner.run(cell, 1)?;
    Ok(row
        .outcome
        .as_ref()
        .ok()
        .map(|m| (m.throughput_ops_s, m.intended.value_at_quantile(0.99))))
}

/// Runs the search on every distinct cell (the matrix's own target rates
/// are replaced by the search's); probes in `done` are not run again.
pub fn search(
    runner: &mut Runner,
    cells: &[Params],
    a: &PeakArgs,
    cap_ms: f64,
    done: &Measured,
) -> anyhow::Result<Vec<Peak>> {
    check(a, cap_ms)?;
    let mut bases: BTreeMap<String, Params> = BTreeMap::new();
    for c in cells {
        let mut base = c.clone();
        base.remove("target_ops_s");
        bases.insert(cell_name(&base), base);
    }
    runner
        .progress
        .bar
        .set_length(bases.len() as u64 * a.peak_probes as u64);
    let mut peaks = Vec::new();
    for (name, base) in bases {
        let mut peak = Peak {
            cell: name,
            peak_ops_s: None,
            at_offered: None,
            probes: 0,
            stopped: format!("{} probes done, still rising", a.peak_probes),
        };
        let (mut rate, mut prev) = (a.peak_start, 0.0);
        while peak.probes < a.peak_probes {
            let mut cell = base.clone();
            cell.insert("target_ops_s".into(), format!("{rate:.0}"));
            let measured = probe(runner, &cell, done)?;
            peak.probes += 1;
            let Some((throughput, p99)) = measured else {
                peak.stopped = format!("the run at {rate:.0} ops/s failed");
                break;
            };
            let verdict = judge(rate, p99, throughput, prev, cap_ms);
            if p99 as f64 <= cap_ms * 1000.0 && peak.peak_ops_s.is_none_or(|b| throughput > b) {
                peak.peak_ops_s = Some(throughput);
                peak.at_offered = Some(rate);
            }
            if let Verdict::Stop(why) = verdict {
                peak.stopped = why;
                break;
            }
            prev = throughput;
            rate *= a.peak_step;
        }
        peaks.push(peak);
    }
    Ok(peaks)
}

/// Prints the peaks and writes them to `<results stem>.peaks.csv`.
pub fn report(peaks: &[Peak], cap_ms: f64, results: &Path) -> anyhow::Result<()> {
    let path = super::plot::beside(results, ".peaks.csv");
    let mut w = csv::Writer::from_path(&path).with_context(|| format!("{}", path.display()))?;
    w.write_record([
        "cell",
        "p99_cap_ms",
        "peak_ops_s",
        "at_offered_ops_s",
        "probes",
        "stopped_because",
    ])?;
    println!("throughput at p99 ≤ {cap_ms} ms (intended latency):");
    for p in peaks {
        let f = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.0}"));
        w.write_record([
            p.cell.clone(),
            cap_ms.to_string(),
            f(p.peak_ops_s),
            f(p.at_offered),
            p.probes.to_string(),
            p.stopped.clone(),
        ])?;
        println!(
            "  {:>10} ops/s  {}  ({})",
            p.peak_ops_s.map_or("none".into(), |v| format!("{v:.0}")),
            p.cell,
            p.stopped
        );
    }
    w.flush()?;
    println!("peaks in {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_search_stops_at_the_cap_or_when_throughput_flattens() {
        assert_eq!(judge(1000.0, 900, 1000.0, 0.0, 1.0), Verdict::Rising);
        assert!(
            matches!(judge(2000.0, 1500, 2000.0, 1000.0, 1.0), Verdict::Stop(w) if w.contains("cap"))
        );
        assert!(
            matches!(judge(4000.0, 500, 2010.0, 2000.0, 1.0), Verdict::Stop(w) if w.contains("stopped rising"))
        );
        assert_eq!(judge(4000.0, 500, 3000.0, 2000.0, 1.0), Verdict::Rising);
    }

    #[test]
    fn bad_search_settings_are_refused() {
        let a = PeakArgs {
            peak_start: 1000.0,
            peak_step: 1.5,
            peak_probes: 12,
        };
        assert!(check(&a, 10.0).is_ok());
        assert!(check(&a, 0.0).is_err());
        assert!(check(
            &PeakArgs {
                peak_step: 1.0,
                ..a.clone()
            },
            10.0
        )
        .is_err());
        assert!(check(
            &PeakArgs {
                peak_probes: 0,
                ..a
            },
            10.0
        )
        .is_err());
    }
}
