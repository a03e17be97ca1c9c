//! `bftbench matrix run` with real processes: a failing cell keeps every other
//! row, `--resume` skips what is done; `compare` on the result against itself.

#![allow(clippy::unwrap_used)]

mod common;
use common::bftbench_in as bftbench;

#[test]
fn a_failing_cell_keeps_the_other_rows_and_resume_skips_done_runs() {
    let dir = std::env::temp_dir().join(format!("bftbench-matrix-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // bft with 5 replicas is not n = 3f+1: that cell fails, between good ones
    // (Raft at n = 5: its client takes the leader's one reply).
    std::fs::write(
        dir.join("m.toml"),
        r#"
name = "t"
repetitions = 2
[params]
protocol = ["bare", "raft", "bft"]
replicas = 5
clients = 4
duration = "0.5s"
warmup = "0.2s"
"#,
    )
    .unwrap();
    let (code, out, err) = bftbench(&["matrix", "run", "m.toml"], &dir);
    assert_eq!(
        code, 1,
        "a failed run makes the exit status 1\n{out}\n{err}"
    );
    assert!(out.contains("6 runs, 2 failed"), "{out}");
    let csv = std::fs::read_to_string(dir.join("results/t.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 7, "header + 6 rows:\n{csv}");
    assert!(lines[0].starts_with("run_id,timestamp,git_commit"));
    let ok = lines.iter().filter(|l| l.contains(",ok,")).count();
    let failed = lines.iter().filter(|l| l.contains(",failed,")).count();
    assert_eq!((ok, failed), (4, 2), "{csv}");
    assert!(csv.contains("3f+1"), "the error is kept in the row: {csv}");
    let files: Vec<String> = std::fs::read_dir(dir.join("results/t.csv.runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let count = |suffix: &str| files.iter().filter(|f| f.ends_with(suffix)).count();
    assert_eq!(count(".hgrm"), 8, "two histograms per successful run");
    assert_eq!(count(".series.csv"), 4, "a time series per successful run");
    let series = files.iter().find(|f| f.ends_with(".series.csv")).unwrap();
    let series = std::fs::read_to_string(dir.join("results/t.csv.runs").join(series)).unwrap();
    // 0.7 s of run phase in 0.25 s intervals: 2 whole ones (a partial one is not kept).
    assert!(series.lines().count() >= 3, "{series}");
    assert!(
        series
            .lines()
            .skip(1)
            .any(|l| l.split(',').nth(1) == Some("1")),
        "{series}"
    );
    // Every process reports its own figures over the control channel.
    let rows = bft_harness::results::read_rows(&dir.join("results/t.csv")).unwrap();
    for r in rows.iter().filter(|r| r["status"] == "ok") {
        for col in [
            "cpu_s_replica",
            "bytes_sent_replica",
            "bytes_received_client",
        ] {
            let v: f64 = r[col].parse().unwrap_or_else(|_| panic!("{col}: {r:?}"));
            assert!(v > 0.0, "{col} = {v}");
        }
        assert!(r["peak_rss_mb_replica"].parse::<f64>().unwrap() > 1.0);
        assert_eq!(r["cpu_s_kv_server"], "", "no kv-server in an embedded run");
    }

    let (code, out, _) = bftbench(&["matrix", "run", "m.toml", "--resume", "--dry-run"], &dir);
    assert_eq!(code, 0);
    assert!(out.contains("4 already in"), "{out}");
    assert!(
        !out.contains("protocol=bare"),
        "done runs are skipped: {out}"
    );
    assert_eq!(out.matches("protocol=bft").count(), 2, "{out}");

    let (code, out, _) = bftbench(&["compare", "results/t.csv", "results/t.csv"], &dir);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(" 1.00 "), "{out}");
    assert!(!out.contains("regression"), "{out}");

    // Figures and the report from the same file; failed runs are listed.
    let (code, out, err) = bftbench(&["plot", "results/t.csv"], &dir);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 10, "5 figures × (svg, png):\n{out}");
    let png = std::fs::read(dir.join("results/t-plots/throughput-latency-p50.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a real PNG");
    let svg = std::fs::read_to_string(dir.join("results/t-plots/latency-percentiles.svg")).unwrap();
    assert!(
        svg.contains("Percentile") && svg.contains("<polyline"),
        "axis label and a curve"
    );
    let (code, _, err) = bftbench(&["report", "results/t.csv"], &dir);
    assert_eq!(code, 0, "{err}");
    let md = std::fs::read_to_string(dir.join("results/t-report/report.md")).unwrap();
    assert!(md.contains("4 runs ok, 2 failed"), "{md}");
    assert!(md.contains("## Failed runs") && md.contains("3f+1"), "{md}");
    assert!(
        md.contains("![Latency by percentile](latency-percentiles.png)"),
        "{md}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn find_peak_raises_the_rate_until_the_cap_and_reports_the_peak() {
    let dir = std::env::temp_dir().join(format!("bftbench-peak-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("p.toml"),
        "name = \"p\"\n[params]\nprotocol = \"bare\"\nclients = 16\nduration = \"0.5s\"\nwarmup = \"0.2s\"\n",
    )
    .unwrap();
    let args = [
        "matrix",
        "run",
        "p.toml",
        "--find-peak",
        "1000",
        "--peak-start",
        "200",
        "--peak-step",
        "4",
        "--peak-probes",
        "3",
    ];
    let (code, out, err) = bftbench(&args, &dir);
    assert_eq!(code, 0, "{out}\n{err}");
    // A 1 s cap is far above bare's latency: three probes, each rising.
    let rows = bft_harness::results::read_rows(&dir.join("results/p.csv")).unwrap();
    let rates: Vec<&str> = rows.iter().map(|r| r["target_ops_s"].as_str()).collect();
    assert_eq!(rates, vec!["200", "800", "3200"]);
    let peaks = std::fs::read_to_string(dir.join("results/p.peaks.csv")).unwrap();
    let line = peaks.lines().nth(1).unwrap();
    assert!(
        line.contains(",3200,3,"),
        "the peak is at the last rate: {peaks}"
    );
    let peak: f64 = line.split(',').nth(2).unwrap().parse().unwrap();
    assert!(peak > 2000.0, "{peaks}");
    assert!(out.contains("throughput at p99"), "{out}");

    // --resume takes the probes from the file: nothing runs again, and the
    // peak found is the same.
    let mut resumed = args.to_vec();
    resumed.push("--resume");
    let (code, out, err) = bftbench(&resumed, &dir);
    assert_eq!(code, 0, "{out}\n{err}");
    let rows = bft_harness::results::read_rows(&dir.join("results/p.csv")).unwrap();
    assert_eq!(rows.len(), 3, "no probe ran again");
    assert_eq!(err.matches("not run again").count(), 3, "{err}");
    let again = std::fs::read_to_string(dir.join("results/p.peaks.csv")).unwrap();
    assert_eq!(again, peaks);
    let _ = std::fs::remove_dir_all(&dir);
}
