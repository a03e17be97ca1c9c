//! Result rows: one per run, appended to a CSV file the moment the run ends.
//!
//! The columns come from one place, [`ResultRow::fields`], so the header, the
//! rows and the README's schema cannot drift apart (a test checks the header).

use crate::deploy::{Role, RoleUsage, RunOutcome};
use anyhow::Context;
use bft_net::client_loop::{IntervalSample, SERIES_INTERVAL};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A run's parameters, as text: the matrix cell it belongs to.
pub type Params = BTreeMap<String, String>;

/// The parameter columns every row has, in order (a cell may leave some empty).
pub const PARAM_COLUMNS: &[&str] = &[
    "backend",
    "protocol",
    "replicas",
    "workload",
    "props",
    "clients",
    "target_ops_s",
    "auth",
    "replies",
    "storage",
    "batch",
    "pipeline",
    "execution",
    "io",
    "verify_threads",
    "duration_s",
    "warmup_s",
    "faults",
];

/// Where and when a run happened.
#[derive(Debug, Clone)]
pub struct Provenance {
    pub git_commit: String,
    pub cpu_model: String,
    pub cores: usize,
}

impl Provenance {
    pub fn of_this_machine() -> Provenance {
        let git_commit = std::process::Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let cores = std::thread::available_parallelism().map_or(0, |c| c.get());
        Provenance {
            git_commit,
            cpu_model,
            cores,
        }
    }
}

/// What a successful run measured.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub elapsed_s: f64,
    pub ops: u64,
    pub throughput_ops_s: f64,
    pub latency: Histogram<u64>,
    pub intended: Histogram<u64>,
    pub behind: u64,
    pub cpu_us_per_op: f64,
    /// Per role: CPU and bytes in the measured interval, peak memory.
    pub usage: Vec<(Role, RoleUsage)>,
    pub series: Vec<IntervalSample>,
}

impl Metrics {
    pub fn from_outcome(o: &RunOutcome) -> Metrics {
        let r = &o.report;
        Metrics {
            elapsed_s: r.elapsed.as_secs_f64(),
            ops: r.ops,
            throughput_ops_s: r.throughput(),
            latency: r.all.clone(),
            intended: r.all_intended.clone(),
            behind: r.behind + r.backlog_left,
            cpu_us_per_op: o.cpu_us_per_op(),
            usage: o.usage.clone(),
            series: r.series.clone(),
        }
    }

    fn role(&self, role: Role) -> Option<&RoleUsage> {
        self.usage.iter().find(|(r, _)| *r == role).map(|(_, u)| u)
    }
}

#[derive(Debug, Clone)]
pub struct ResultRow {
    pub run_id: String,
    /// Seconds since the Unix epoch when the run ended.
    pub timestamp: u64,
    pub provenance: Provenance,
    /// The cell's canonical name (all its parameters) and the repetition.
    pub cell: String,
    pub repetition: u32,
    pub params: Params,
    /// Ok(metrics) or the error that ended the run.
    pub outcome: Result<Metrics, String>,
}

fn latency_fields(prefix: &str, h: Option<&Histogram<u64>>) -> Vec<(String, String)> {
    let q = |p: f64| h.map_or(String::new(), |h| h.value_at_quantile(p).to_string());
    vec![
        (
            format!("{prefix}mean_us"),
            h.map_or(String::new(), |h| format!("{:.1}", h.mean())),
        ),
        (format!("{prefix}p50_us"), q(0.5)),
        (format!("{prefix}p90_us"), q(0.9)),
        (format!("{prefix}p99_us"), q(0.99)),
        (format!("{prefix}p999_us"), q(0.999)),
        (
            format!("{prefix}max_us"),
            h.map_or(String::new(), |h| h.max().to_string()),
        ),
    ]
}

/// A role's columns; empty when the run failed or had no such process.
fn role_fields(role: Role, u: Option<&RoleUsage>) -> Vec<(String, String)> {
    let r = role.name();
    let v = |f: fn(&RoleUsage) -> String| u.map_or(String::new(), f);
    vec![
        (format!("cpu_s_{r}"), v(|u| format!("{:.3}", u.cpu_s))),
        (
            format!("peak_rss_mb_{r}"),
            v(|u| format!("{:.1}", u.peak_rss_kb as f64 / 1024.0)),
        ),
        (format!("bytes_sent_{r}"), v(|u| u.bytes_sent.to_string())),
        (
            format!("bytes_received_{r}"),
            v(|u| u.bytes_received.to_string()),
        ),
    ]
}

impl ResultRow {
    /// Every column and its value, in file order.
    pub fn fields(&self) -> Vec<(String, String)> {
        let mut f: Vec<(String, String)> = vec![
            ("run_id".into(), self.run_id.clone()),
            ("timestamp".into(), self.timestamp.to_string()),
            ("git_commit".into(), self.provenance.git_commit.clone()),
            ("cpu_model".into(), self.provenance.cpu_model.clone()),
            ("cores".into(), self.provenance.cores.to_string()),
            ("cell".into(), self.cell.clone()),
            ("repetition".into(), self.repetition.to_string()),
        ];
        for c in PARAM_COLUMNS {
            f.push((
                c.to_string(),
                self.params.get(*c).cloned().unwrap_or_default(),
            ));
        }
        let m = self.outcome.as_ref().ok();
        let num = |v: Option<String>| v.unwrap_or_default();
        f.push((
            "status".into(),
            if m.is_some() { "ok" } else { "failed" }.into(),
        ));
        f.push((
            "error".into(),
            self.outcome.as_ref().err().cloned().unwrap_or_default(),
        ));
        f.push((
            "elapsed_s".into(),
            num(m.map(|m| format!("{:.3}", m.elapsed_s))),
        ));
        f.push(("ops".into(), num(m.map(|m| m.ops.to_string()))));
        f.push((
            "throughput_ops_s".into(),
            num(m.map(|m| format!("{:.1}", m.throughput_ops_s))),
        ));
        f.extend(latency_fields("", m.map(|m| &m.latency)));
        f.extend(latency_fields("intended_", m.map(|m| &m.intended)));
        f.push(("behind".into(), num(m.map(|m| m.behind.to_string()))));
        f.push((
            "cpu_us_per_op".into(),
            num(m.map(|m| format!("{:.2}", m.cpu_us_per_op))),
        ));
        for role in Role::ALL {
            f.extend(role_fields(role, m.and_then(|m| m.role(role))));
        }
        f
    }

    /// The header every results file starts with.
    pub fn columns() -> Vec<String> {
        let blank = ResultRow {
            run_id: String::new(),
            timestamp: 0,
            provenance: Provenance {
                git_commit: String::new(),
                cpu_model: String::new(),
                cores: 0,
            },
            cell: String::new(),
            repetition: 0,
            params: Params::new(),
            outcome: Err(String::new()),
        };
        blank.fields().into_iter().map(|(k, _)| k).collect()
    }
}

/// Appends one row (writing the header first into a new or empty file), then
/// syncs, so a crash or Ctrl-C never loses a finished run. An existing file
/// with a different header is an error, not a silent mix.
pub fn append(path: &Path, row: &ResultRow) -> anyhow::Result<()> {
    let header = ResultRow::columns();
    let fresh = std::fs::metadata(path).map_or(true, |m| m.len() == 0);
    if !fresh {
        let mut existing = read_header(path)?;
        if existing != header && renamed(&existing) == header {
            upgrade_renamed(path)?;
            existing = header.clone();
        }
        if existing != header {
            anyhow::bail!(
                "{}: its columns differ from this version's ({} vs {}); write to a new file",
                path.display(),
                existing.len(),
                header.len()
            );
        }
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let mut w = csv::Writer::from_writer(file);
    if fresh {
        w.write_record(&header)?;
    }
    w.write_record(row.fields().iter().map(|(_, v)| v))?;
    let file = w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    file.sync_data()?;
    Ok(())
}

/// A header with the renamed columns under their new names.
fn renamed(header: &[String]) -> Vec<String> {
    header
        .iter()
        .map(|c| {
            RENAMED_COLUMNS
                .iter()
                .find(|(old, _)| old == c)
                .map_or(c.clone(), |(_, new)| new.to_string())
        })
        .collect()
}

/// Rewrites a file whose only difference is a renamed column (its rows keep
/// what they measured: an empty `raft_storage` was a replica in memory),
/// under a temporary name renamed over it.
fn upgrade_renamed(path: &Path) -> anyhow::Result<()> {
    let header = read_header(path)?;
    let new_header = renamed(&header);
    let moved: Vec<bool> = header
        .iter()
        .zip(&new_header)
        .map(|(a, b)| a != b)
        .collect();
    let mut r = csv::Reader::from_path(path).with_context(|| format!("{}", path.display()))?;
    let tmp = path.with_extension("csv.upgrade");
    let mut w = csv::Writer::from_path(&tmp).with_context(|| format!("{}", tmp.display()))?;
    w.write_record(&new_header)?;
    for rec in r.records() {
        let rec = rec?;
        let cells = rec.iter().zip(&moved).map(|(v, m)| match (*m, v) {
            (true, "") => "memory",
            _ => v,
        });
        w.write_record(cells)?;
    }
    w.into_inner()
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .sync_data()?;
    std::fs::rename(&tmp, path).with_context(|| format!("upgrading {}", path.display()))?;
    eprintln!(
        "{}: renamed the column raft_storage to storage (this version's name)",
        path.display()
    );
    Ok(())
}

fn read_header(path: &Path) -> anyhow::Result<Vec<String>> {
    let mut r = csv::Reader::from_path(path).with_context(|| format!("{}", path.display()))?;
    Ok(r.headers()?.iter().map(str::to_string).collect())
}

/// All rows of a results file, as column → value maps.
/// Columns added after files were written, with the value every older row
/// had: before `replies` existed, every BFT replica sent its full result;
/// before `storage` (first named `raft_storage`, Raft only), every replica
/// kept its state in memory.
const ADDED_COLUMNS: &[(&str, &str)] = &[("replies", "full"), ("storage", "memory")];
/// Columns renamed since files were written: (old name, new name).
const RENAMED_COLUMNS: &[(&str, &str)] = &[("raft_storage", "storage")];

pub fn read_rows(path: &Path) -> anyhow::Result<Vec<BTreeMap<String, String>>> {
    let mut r = csv::Reader::from_path(path)
        .with_context(|| format!("cannot read results file {}", path.display()))?;
    let header: Vec<String> = r.headers()?.iter().map(str::to_string).collect();
    let mut rows: Vec<BTreeMap<String, String>> = Vec::new();
    for (i, rec) in r.records().enumerate() {
        let rec = rec.with_context(|| format!("{}: row {}", path.display(), i + 2))?;
        rows.push(
            header
                .iter()
                .cloned()
                .zip(rec.iter().map(str::to_string))
                .collect(),
        );
    }
    for row in &mut rows {
        for (old, new) in RENAMED_COLUMNS {
            if let Some(v) = row.remove(*old) {
                // The old column was empty for protocols other than Raft: memory.
                let v = if v.is_empty() {
                    "memory".to_string()
                } else {
                    v
                };
                row.insert(new.to_string(), v);
            }
        }
        for (column, was) in ADDED_COLUMNS {
            row.entry(column.to_string())
                .or_insert_with(|| was.to_string());
        }
    }
    Ok(rows)
}

/// Saves the run's time series as `<run_id>.series.csv`: one row per
/// `SERIES_INTERVAL`, warm-up included (`measured` = 0).
pub fn save_series(dir: &Path, run_id: &str, m: &Metrics) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("{run_id}.series.csv"));
    let mut w = csv::Writer::from_path(&path).with_context(|| format!("{}", path.display()))?;
    w.write_record([
        "t_s", "measured", "ops", "ops_s", "mean_us", "p50_us", "p99_us", "max_us",
    ])?;
    let per_s = 1.0 / SERIES_INTERVAL.as_secs_f64();
    for x in &m.series {
        w.write_record([
            format!("{:.3}", x.t_s),
            (x.measured as u8).to_string(),
            x.ops.to_string(),
            format!("{:.1}", x.ops as f64 * per_s),
            format!("{:.1}", x.mean_us),
            x.p50_us.to_string(),
            x.p99_us.to_string(),
            x.max_us.to_string(),
        ])?;
    }
    w.flush()?;
    Ok(())
}

/// Where a run's raw histograms go: `<results>.runs/<run_id>.hgrm` beside the CSV.
pub fn raw_dir(csv: &Path) -> PathBuf {
    let mut name = csv.file_name().unwrap_or_default().to_os_string();
    name.push(".runs");
    csv.with_file_name(name)
}

/// Saves the latency distributions in HdrHistogram's percentile text format
/// (`Value Percentile TotalCount 1/(1-Percentile)`, values in µs), which
/// HdrHistogram's plotters and `bftbench plot` read.
pub fn save_histograms(dir: &Path, run_id: &str, m: &Metrics) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (suffix, h) in [("", &m.latency), (".intended", &m.intended)] {
        let path = dir.join(format!("{run_id}{suffix}.hgrm"));
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
        writeln!(
            out,
            "{:>12} {:>14} {:>10} {:>14}\n",
            "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
        )?;
        for v in h.iter_quantiles(2) {
            let p = v.quantile_iterated_to();
            let inv = if p < 1.0 {
                1.0 / (1.0 - p)
            } else {
                f64::INFINITY
            };
            writeln!(
                out,
                "{:>12.3} {:>14.12} {:>10} {:>14.2}",
                v.value_iterated_to() as f64,
                p,
                v.count_since_last_iteration(),
                inv
            )?;
        }
        writeln!(
            out,
            "#[Mean = {:.3}, StdDeviation = {:.3}]\n#[Max = {}, Total count = {}]",
            h.mean(),
            h.stdev(),
            h.max(),
            h.len()
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(outcome: Result<Metrics, String>) -> ResultRow {
        ResultRow {
            run_id: "r1".into(),
            timestamp: 5,
            provenance: Provenance {
                git_commit: "abc".into(),
                cpu_model: "cpu, with a comma".into(),
                cores: 2,
            },
            cell: "protocol=bft".into(),
            repetition: 1,
            params: [("protocol".to_string(), "bft".to_string())].into(),
            outcome,
        }
    }

    fn metrics() -> Metrics {
        let mut h = Histogram::new(3).expect("histogram");
        for v in [100, 200, 300] {
            h.record(v).expect("record");
        }
        Metrics {
            elapsed_s: 1.0,
            ops: 3,
            throughput_ops_s: 3.0,
            latency: h.clone(),
            intended: h,
            behind: 0,
            cpu_us_per_op: 10.0,
            usage: vec![(
                Role::Replica,
                RoleUsage {
                    processes: 4,
                    cpu_s: 1.5,
                    peak_rss_kb: 2048,
                    bytes_sent: 7,
                    bytes_received: 8,
                },
            )],
            series: Vec::new(),
        }
    }

    #[test]
    fn header_matches_the_struct_and_rows_round_trip() {
        let dir = std::env::temp_dir().join(format!("bftbench-results-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("r.csv");
        append(&path, &row(Ok(metrics()))).expect("append");
        append(&path, &row(Err("boom, \"quoted\"".into()))).expect("append");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(
            text.lines().next().expect("header"),
            ResultRow::columns().join(",")
        );
        let rows = read_rows(&path).expect("rows");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["status"], "ok");
        assert_eq!(rows[0]["throughput_ops_s"], "3.0");
        assert_eq!(rows[0]["p50_us"], "200");
        assert_eq!(rows[0]["cpu_model"], "cpu, with a comma");
        assert_eq!(rows[0]["peak_rss_mb_replica"], "2.0");
        assert_eq!(rows[0]["bytes_received_replica"], "8");
        assert_eq!(rows[0]["cpu_s_client"], "", "no client usage in this row");
        assert_eq!(rows[1]["status"], "failed");
        assert_eq!(rows[1]["error"], "boom, \"quoted\"");
        assert_eq!(rows[1]["throughput_ops_s"], "");
        for c in PARAM_COLUMNS {
            assert!(rows[0].contains_key(*c), "{c}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_file_with_other_columns_is_refused() {
        let dir = std::env::temp_dir().join(format!("bftbench-results-x-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("old.csv");
        std::fs::write(&path, "protocol,throughput_ops_s\nbft,5\n").expect("write");
        let err = append(&path, &row(Ok(metrics()))).expect_err("mismatch");
        assert!(err.to_string().contains("columns differ"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn rows_written_before_a_column_existed_read_with_its_old_value() {
        let dir = std::env::temp_dir().join(format!("bftbench-results-o-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("older.csv");
        std::fs::write(&path, "protocol,replies\nbft,digests\n").expect("write");
        assert_eq!(read_rows(&path).expect("rows")[0]["replies"], "digests");
        std::fs::write(&path, "protocol,throughput_ops_s\nbft,5\n").expect("write");
        assert_eq!(read_rows(&path).expect("rows")[0]["replies"], "full");
        assert_eq!(read_rows(&path).expect("rows")[0]["storage"], "memory");
        // `raft_storage` reads as `storage`; its empty cells (BFT, bare) were memory.
        std::fs::write(&path, "protocol,raft_storage\nraft,disk\nbft,\n").expect("write");
        let rows = read_rows(&path).expect("rows");
        assert_eq!(
            (rows[0]["storage"].as_str(), rows[1]["storage"].as_str()),
            ("disk", "memory")
        );
        assert!(!rows[0].contains_key("raft_storage"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
