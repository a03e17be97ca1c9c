//! A [`LoadReport`] as one JSON line: how a client on another host (`bftbench
//! client --control-stdio`, started over SSH) hands its whole measurement back
//! to the harness, histograms included, so the harness writes the same rows,
//! `.hgrm` files and time series as when the client runs in-process.

use crate::control::ProcessStats;
use anyhow::{bail, Context};
use bft_net::client_loop::{histogram, IntervalSample, LoadReport};
use bft_workloads::Op;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// The line a client prints when its measured interval begins (after
/// warm-up): the harness samples the other processes then.
pub const MEASURING_LINE: &str = "measuring";
/// Prefix of the line carrying the report at the end of the run.
pub const REPORT_PREFIX: &str = "report ";
/// Longest report line the harness reads (a histogram has a few thousand
/// buckets at most; a day of series samples is the bulk).
pub const REPORT_LINE_MAX: usize = 64 << 20;

/// A histogram's non-empty buckets as (highest equivalent value, count):
/// recording them again yields the same buckets.
#[derive(Serialize, Deserialize, Debug, Default)]
struct Buckets(Vec<(u64, u64)>);

impl Buckets {
    fn of(h: &Histogram<u64>) -> Buckets {
        Buckets(
            h.iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect(),
        )
    }

    fn histogram(&self) -> anyhow::Result<Histogram<u64>> {
        let mut h = histogram();
        for &(value, count) in &self.0 {
            h.record_n(value, count)
                .with_context(|| format!("latency {value} µs is out of range"))?;
        }
        Ok(h)
    }
}

/// The report plus the client process's own figures at the start and the
/// end of the measured interval.
#[derive(Serialize, Deserialize, Debug)]
pub struct WireReport {
    elapsed_us: u64,
    ops: u64,
    per_op: BTreeMap<String, Buckets>,
    all: Buckets,
    per_op_intended: BTreeMap<String, Buckets>,
    all_intended: Buckets,
    behind: u64,
    backlog_left: u64,
    series: Vec<IntervalSample>,
    client_before: ProcessStats,
    client_after: ProcessStats,
}

fn buckets_by_op(m: &BTreeMap<&'static str, Histogram<u64>>) -> BTreeMap<String, Buckets> {
    m.iter()
        .map(|(k, h)| (k.to_string(), Buckets::of(h)))
        .collect()
}

fn histograms_by_op(
    m: &BTreeMap<String, Buckets>,
) -> anyhow::Result<BTreeMap<&'static str, Histogram<u64>>> {
    m.iter()
        .map(|(k, b)| {
            let Some(name) = Op::NAMES.iter().find(|n| **n == k.as_str()) else {
                bail!("unknown operation `{k}` in the client's report");
            };
            Ok((*name, b.histogram()?))
        })
        .collect()
}

impl WireReport {
    pub fn new(r: &LoadReport, before: ProcessStats, after: ProcessStats) -> WireReport {
        WireReport {
            elapsed_us: r.elapsed.as_micros() as u64,
            ops: r.ops,
            per_op: buckets_by_op(&r.per_op),
            all: Buckets::of(&r.all),
            per_op_intended: buckets_by_op(&r.per_op_intended),
            all_intended: Buckets::of(&r.all_intended),
            behind: r.behind,
            backlog_left: r.backlog_left,
            series: r.series.clone(),
            client_before: before,
            client_after: after,
        }
    }

    pub fn to_line(&self) -> anyhow::Result<String> {
        Ok(format!("{REPORT_PREFIX}{}", serde_json::to_string(self)?))
    }

    /// Parses a [`WireReport::to_line`] line (the prefix already removed).
    pub fn parse(json: &str) -> anyhow::Result<WireReport> {
        serde_json::from_str(json).context("the client's report is not valid JSON")
    }

    /// The report and the client's figures (before, after).
    pub fn into_parts(self) -> anyhow::Result<(LoadReport, ProcessStats, ProcessStats)> {
        let report = LoadReport {
            elapsed: Duration::from_micros(self.elapsed_us),
            ops: self.ops,
            per_op: histograms_by_op(&self.per_op)?,
            all: self.all.histogram()?,
            per_op_intended: histograms_by_op(&self.per_op_intended)?,
            all_intended: self.all_intended.histogram()?,
            behind: self.behind,
            backlog_left: self.backlog_left,
            series: self.series,
        };
        Ok((report, self.client_before, self.client_after))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> LoadReport {
        let mut all = histogram();
        let mut read = histogram();
        for v in [90u64, 100, 101, 5_000, 5_003, 1_000_000] {
            all.record(v).unwrap();
            read.record(v).unwrap();
        }
        let mut intended = histogram();
        intended.record_n(250_000, 7).unwrap();
        LoadReport {
            elapsed: Duration::from_micros(3_000_123),
            ops: 6,
            per_op: BTreeMap::from([("READ", read)]),
            all,
            per_op_intended: BTreeMap::from([("READ-MODIFY-WRITE", intended.clone())]),
            all_intended: intended,
            behind: 2,
            backlog_left: 1,
            series: vec![IntervalSample {
                t_s: 0.25,
                measured: false,
                ops: 6,
                mean_us: 12.5,
                p50_us: 100,
                p99_us: 5_003,
                max_us: 1_000_000,
            }],
        }
    }

    #[test]
    fn a_report_survives_the_line_unchanged() {
        let r = report();
        let before = ProcessStats {
            cpu_s: 1.5,
            peak_rss_kb: 10,
            bytes_read: 3,
            bytes_written: 4,
        };
        let after = ProcessStats {
            cpu_s: 2.75,
            ..before
        };
        let line = WireReport::new(&r, before, after).to_line().unwrap();
        let json = line.strip_prefix(REPORT_PREFIX).unwrap();
        assert!(!json.contains('\n'));
        let (back, b, a) = WireReport::parse(json).unwrap().into_parts().unwrap();
        assert_eq!((b, a), (before, after));
        assert_eq!(back.elapsed, r.elapsed);
        assert_eq!((back.ops, back.behind, back.backlog_left), (6, 2, 1));
        assert_eq!(back.all, r.all, "every bucket and count kept");
        assert_eq!(back.per_op["READ"], r.per_op["READ"]);
        assert_eq!(back.all_intended, r.all_intended);
        assert_eq!(back.per_op_intended.len(), 1);
        assert_eq!(back.series, r.series);
        assert_eq!(
            back.all.value_at_quantile(0.5),
            r.all.value_at_quantile(0.5)
        );
    }

    #[test]
    fn unknown_operations_and_bad_json_are_errors() {
        let line = WireReport::new(&report(), ProcessStats::default(), ProcessStats::default())
            .to_line()
            .unwrap()
            .replace("\"READ\"", "\"FROB\"");
        let json = line.strip_prefix(REPORT_PREFIX).unwrap();
        let err = WireReport::parse(json).unwrap().into_parts().unwrap_err();
        assert!(format!("{err}").contains("FROB"), "{err}");
        assert!(WireReport::parse("{\"ops\": 1").is_err());
    }
}
