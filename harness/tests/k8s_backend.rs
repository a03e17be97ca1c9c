//! The k8s back end's plumbing, with a stand-in for kubectl (no Kubernetes
//! cluster can run on this project's machines): what it applies, how it
//! follows the client Job, how it reads the report from the Job's logs, and
//! that it deletes the run's objects on success and on failure. What a real
//! cluster does with the manifests is not tested here; `.ci/run` validates
//! them against the Kubernetes schemas.

#![allow(clippy::unwrap_used)]

use bft_harness::control::ProcessStats;
use bft_harness::deploy::wire::WireReport;
use bft_net::client_loop::{histogram, LoadReport};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// A kubectl that records what it is asked and answers from files:
/// `job-status` (succeeded,failed) and `report.line`.
fn fake_kubectl(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("kubectl");
    std::fs::write(
        &path,
        format!(
            r#"#!/bin/sh
d={d}
echo "$*" >> "$d/calls"
case "$1" in
  version) exit 0 ;;
  apply) cat > "$d/applied.yaml" ;;
  get) cat "$d/job-status" ;;
  logs) case "$*" in *job/*) echo "loading..."; cat "$d/report.line" ;; *) echo "pod logs" ;; esac ;;
  delete) echo "$*" >> "$d/deleted" ;;
esac
"#,
            d = dir.display()
        ),
    )
    .unwrap();
    Command::new("chmod")
        .arg("755")
        .arg(&path)
        .status()
        .unwrap();
    path
}

fn report_line() -> String {
    let mut all = histogram();
    for v in 1..=1000u64 {
        all.record(v * 10).unwrap();
    }
    let report = LoadReport {
        elapsed: Duration::from_secs(2),
        ops: 1000,
        per_op: BTreeMap::from([("READ", all.clone())]),
        all: all.clone(),
        per_op_intended: BTreeMap::from([("READ", all.clone())]),
        all_intended: all,
        behind: 0,
        backlog_left: 0,
        series: Vec::new(),
    };
    let before = ProcessStats::default();
    let after = ProcessStats {
        cpu_s: 0.5,
        ..before
    };
    WireReport::new(&report, before, after).to_line().unwrap()
}

fn bftbench_with(dir: &Path, kubectl: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bftbench"))
        .args(args)
        .current_dir(dir)
        .env("BFTBENCH_KUBECTL", kubectl)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_cell_is_applied_followed_read_from_the_job_logs_and_deleted() {
    let dir = std::env::temp_dir().join(format!("bftbench-k8s-backend-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let kubectl = fake_kubectl(&dir);
    std::fs::write(dir.join("job-status"), "1,").unwrap();
    std::fs::write(dir.join("report.line"), report_line() + "\n").unwrap();
    std::fs::write(
        dir.join("m.toml"),
        "name = \"k\"\n[params]\nprotocol = \"bft\"\nreplicas = 4\nexecution = \"remote\"\n\
         clients = 8\nduration = \"2s\"\nwarmup = \"0.5s\"\n\"p.recordcount\" = 777\n",
    )
    .unwrap();
    let args = [
        "matrix",
        "run",
        "m.toml",
        "--backend",
        "k8s",
        "--namespace",
        "bench",
    ];
    let (code, out, err) = bftbench_with(&dir, &kubectl, &args);
    assert_eq!(code, 0, "{out}\n{err}");
    let rows = bft_harness::results::read_rows(&dir.join("results/k.csv")).unwrap();
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!((r["status"].as_str(), r["backend"].as_str()), ("ok", "k8s"));
    assert_eq!(r["ops"], "1000", "the figures are the Job's report");
    assert_eq!(r["throughput_ops_s"].parse::<f64>().unwrap().round(), 500.0);
    assert_eq!(r["cpu_s_client"], "0.500");
    assert!(r["cpu_s_replica"].is_empty(), "not collected on k8s: {r:?}");

    let applied = std::fs::read_to_string(dir.join("applied.yaml")).unwrap();
    assert!(applied.contains("replicas: 4"), "{applied}");
    assert!(applied.contains("namespace: \"bench\""));
    assert!(
        applied.contains("recordcount=777"),
        "the cell's properties ship"
    );
    assert!(applied.contains("\"--report-line\""));
    assert!(applied.contains("remote=127.0.0.1:7100"));
    assert!(applied.contains("\"--duration\"\n") && applied.contains("\"2000ms\""));
    let deleted = std::fs::read_to_string(dir.join("deleted")).unwrap();
    assert_eq!(deleted.lines().count(), 1);
    assert!(
        deleted.contains("app.kubernetes.io/instance=bftbench-"),
        "{deleted}"
    );

    // A failed Job: the row says so, the pods' logs are saved, and the run's
    // objects are deleted all the same.
    std::fs::write(dir.join("job-status"), ",1").unwrap();
    let args = [
        "matrix",
        "run",
        "m.toml",
        "--backend",
        "k8s",
        "--out",
        "failed.csv",
        "--keep",
    ];
    let (code, out, err) = bftbench_with(&dir, &kubectl, &args);
    assert_eq!(code, 1, "{out}\n{err}");
    let rows = bft_harness::results::read_rows(&dir.join("failed.csv")).unwrap();
    assert_eq!(rows[0]["status"], "failed");
    assert!(rows[0]["error"].contains("client Job"), "{:?}", rows[0]);
    let deleted = std::fs::read_to_string(dir.join("deleted")).unwrap();
    assert_eq!(deleted.lines().count(), 2, "deleted after the failure too");
    let calls = std::fs::read_to_string(dir.join("calls")).unwrap();
    assert!(
        calls.contains("--all-containers"),
        "pod logs saved: {calls}"
    );
    let kept = std::env::temp_dir().join(format!("bftbench-matrix-{}", rows[0]["run_id"]));
    assert!(
        kept.join("pods.log").exists(),
        "--keep keeps the run's folder"
    );
    let _ = std::fs::remove_dir_all(&kept);
    let _ = std::fs::remove_dir_all(&dir);
}
