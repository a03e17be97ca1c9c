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

/// Runs the search on every distinct cell (the matrix's own target rates
/// are replaced by the search's).
pub fn search(
    runner: &mut Runner,
    cells: &[Params],
    a: &PeakArgs,
    cap_ms: f64,
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
            let row = runner.run(&cell, 1)?;
            peak.probes += 1;
            let m = match &row.outcome {
                Ok(m) => m,
                Err(_) => {
                    peak.stopped = format!("the run at {rate:.0} ops/s failed");
                    break;
                }
            };
            let p99 = m.intended.value_at_quantile(0.99);
            let verdict = judge(rate, p99, m.throughput_ops_s, prev, cap_ms);
            if p99 as f64 <= cap_ms * 1000.0
                && peak.peak_ops_s.is_none_or(|b| m.throughput_ops_s > b)
            {
                peak.peak_ops_s = Some(m.throughput_ops_s);
                peak.at_offered = Some(rate);
            }
            if let Verdict::Stop(why) = verdict {
                peak.stopped = why;
                break;
            }
            prev = m.throughput_ops_s;
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
