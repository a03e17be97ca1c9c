//! The docker back end end to end: a 4-replica BFT cell (and its separated
//! KV servers) in containers on their own network, one CSV row, nothing left
//! behind. Needs a Docker daemon and the image (`bftbench deploy docker
//! build`, which `.ci/run` does first): without them the test says so and
//! passes on a developer's machine, but fails in CI, where both must be there.

#![allow(clippy::unwrap_used)]

mod common;
use bft_harness::deploy::docker;
use common::bftbench_in as bftbench;
use std::process::Command;

fn docker_out(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_bft_cell_runs_in_containers_and_leaves_nothing_behind() {
    if let Some(why) = docker::unavailable(&docker::image()) {
        assert!(
            std::env::var_os("CI").is_none(),
            "docker back end unavailable in CI: {why}"
        );
        eprintln!("SKIPPED: docker back end unavailable: {why}");
        return;
    }
    let dir = std::env::temp_dir().join(format!("bftbench-docker-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("m.toml"),
        r#"
name = "d"
[params]
backend = "docker"
protocol = "bft"
replicas = 4
execution = ["embedded", "remote"]
clients = 8
duration = "1s"
warmup = "0.3s"
"#,
    )
    .unwrap();
    let (code, out, err) = bftbench(&["matrix", "run", "m.toml"], &dir);
    assert_eq!(code, 0, "{out}\n{err}");
    let rows = bft_harness::results::read_rows(&dir.join("results/d.csv")).unwrap();
    assert_eq!(rows.len(), 2);
    for r in &rows {
        assert_eq!(
            (r["status"].as_str(), r["backend"].as_str()),
            ("ok", "docker")
        );
        assert!(r["ops"].parse::<u64>().unwrap() > 0, "{r:?}");
        let replica_cpu: f64 = r["cpu_s_replica"].parse().unwrap();
        assert!(replica_cpu > 0.0, "containers report their own CPU: {r:?}");
        let remote = r["execution"] == "remote";
        assert_eq!(!r["bytes_received_kv_server"].is_empty(), remote, "{r:?}");
    }
    // Every container and network of the runs is gone.
    let names = docker_out(&["ps", "-a", "--format", "{{.Names}}"]);
    assert!(!names.contains("bftbench-matrix-"), "left behind: {names}");
    let nets = docker_out(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(!nets.contains("bftbench-matrix-"), "left behind: {nets}");
    let _ = std::fs::remove_dir_all(&dir);
}
