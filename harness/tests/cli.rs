//! The `bftbench sim` command as a user runs it.

#![allow(clippy::unwrap_used)]

mod common;

fn bftbench(args: &[&str]) -> (i32, String, String) {
    common::bftbench_in(args, std::path::Path::new("."))
}

#[test]
fn seeds_print_one_summary_line_and_exit_zero() {
    let (code, out, _) = bftbench(&[
        "sim",
        "--protocol",
        "bft",
        "--replicas",
        "4",
        "--seeds",
        "1..=10",
    ]);
    assert_eq!(code, 0, "{out}");
    let last = out.lines().last().unwrap();
    assert!(last.contains(": 10 passed, 0 failed;"), "{last}");
}

#[test]
fn a_failing_seed_prints_its_settings_and_replays_byte_for_byte() {
    let (code, out, _) = bftbench(&["sim", "--twins", "2", "--seeds", "1..=20"]);
    assert_eq!(code, 1);
    let line = out
        .lines()
        .find(|l| l.starts_with("SEED="))
        .expect("a failing seed");
    assert!(line.contains("twins=[0, 1]"), "{line}");
    let seed = line
        .trim_start_matches("SEED=")
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    let replay = out.lines().find(|l| l.contains("replay:")).unwrap();
    assert!(
        replay.ends_with(&format!("--seed {seed} --replicas 4 --twins 2")),
        "{replay}"
    );
    let a = bftbench(&["sim", "--twins", "2", "--seed", &seed]);
    let b = bftbench(&["sim", "--twins", "2", "--seed", &seed]);
    assert_eq!(a.0, 1);
    assert_eq!(a.1, b.1, "replay is byte for byte");
    assert!(a.1.contains("violation: agreement"));
    assert!(a.1.trim_end().ends_with("0 passed, 1 failed"));
}

#[test]
fn bad_arguments_are_named() {
    let (code, _, err) = bftbench(&["sim", "--replicas", "5"]);
    assert_eq!(code, 2);
    assert!(err.contains("--replicas 5"), "{err}");
    let (code, _, err) = bftbench(&["sim", "--seeds", "9..=3"]);
    assert_eq!(code, 2);
    assert!(err.contains("--seeds"), "{err}");
}

#[test]
fn workload_keys_print_java_ycsb_names() {
    let (code, out, _) = bftbench(&["workload", "keys", "--start", "0", "--count", "2"]);
    assert_eq!(code, 0);
    assert_eq!(out, "user6284781860667377211\nuser8517097267634966620\n");
    let (_, out, _) = bftbench(&["workload", "keys", "--start", "999", "--count", "1"]);
    assert_eq!(out.trim(), "user2071219101098386137");
}

#[test]
fn workload_traces_are_deterministic_and_well_formed() {
    let args = [
        "workload",
        "trace",
        "--workload",
        "e",
        "--ops",
        "300",
        "--seed",
        "4",
    ];
    let (code, a, _) = bftbench(&args);
    let (_, b, _) = bftbench(&args);
    assert_eq!(code, 0);
    assert_eq!(a, b, "same seed, same trace");
    assert_eq!(a.lines().count(), 300);
    for l in a.lines() {
        let parts: Vec<&str> = l.split(' ').collect();
        match parts[0] {
            "SCAN" => assert!(parts.len() == 3 && parts[2].parse::<u32>().is_ok(), "{l}"),
            "INSERT" => assert_eq!(parts.len(), 2),
            other => panic!("workload e has no {other}"),
        }
        assert!(parts[1].starts_with("user"));
    }
    let (_, c, _) = bftbench(&[
        "workload",
        "trace",
        "--workload",
        "e",
        "--ops",
        "300",
        "--seed",
        "5",
    ]);
    assert_ne!(a, c);
}

#[test]
fn workload_summary_and_property_files() {
    let dir = std::env::temp_dir().join(format!("bftbench-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("mine");
    std::fs::write(&file, "recordcount=500\noperationcount=10\nreadproportion=0.2\nupdateproportion=0.8\nrequestdistribution=uniform\n").unwrap();
    let path = file.to_str().unwrap();
    let (code, out, err) = bftbench(&[
        "workload",
        "trace",
        "--workload",
        path,
        "--ops",
        "20000",
        "--summary",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("READ 4") && out.contains("UPDATE 1"), "{out}");
    let hot: f64 = out
        .lines()
        .last()
        .unwrap()
        .split(": ")
        .nth(1)
        .unwrap()
        .split('%')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        hot < 3.0,
        "uniform: the hottest 1% get little more than 1%: {out}"
    );
    std::fs::write(&file, "recordcount=500\nreadproportion=lots\n").unwrap();
    let (code, _, err) = bftbench(&["workload", "trace", "--workload", path]);
    assert_eq!(code, 2);
    assert!(err.contains("line 2: readproportion = `lots`"), "{err}");
    let (code, _, err) = bftbench(&["workload", "trace", "--workload", "a", "-p", "nope=1"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown property `nope`"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn keygen_takes_named_addresses_and_k8s_render_prints_valid_kinds() {
    let dir = std::env::temp_dir().join(format!("bftbench-keygen-addrs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out_dir = dir.to_str().unwrap();
    let addrs = "localhost:7001,localhost:7002,localhost:7003,localhost:7004";
    let (code, out, err) = bftbench(&["keygen", "--addrs", addrs, "--out", out_dir]);
    assert_eq!(code, 0, "{out}{err}");
    let cluster = bft_net::cluster::Cluster::load(&dir.join("cluster.toml")).unwrap();
    assert_eq!(cluster.n(), 4);
    assert!(cluster.addrs.iter().all(|a| a.ip().is_loopback()));
    // Five BFT replicas are refused, and so are several bare servers.
    let five = format!("{addrs},localhost:7005");
    let (code, _, err) = bftbench(&["keygen", "--addrs", &five, "--out", out_dir]);
    assert_ne!(code, 0);
    assert!(err.contains("3f+1"), "{err}");
    let two = [
        "keygen",
        "--protocol",
        "bare",
        "--addrs",
        "a:1,b:2",
        "--out",
        out_dir,
    ];
    let (code, _, err) = bftbench(&two);
    assert_ne!(code, 0);
    assert!(err.contains("bare runs one server"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);

    let (code, yaml, err) = bftbench(&[
        "deploy",
        "k8s",
        "render",
        "--replicas",
        "4",
        "--execution",
        "remote",
    ]);
    assert_eq!(code, 0, "{err}");
    let kinds: Vec<&str> = yaml.lines().filter(|l| l.starts_with("kind: ")).collect();
    assert_eq!(
        kinds,
        [
            "kind: \"ConfigMap\"",
            "kind: \"Secret\"",
            "kind: \"Service\"",
            "kind: \"StatefulSet\"",
            "kind: \"Job\""
        ]
    );
    assert!(yaml.contains("remote=127.0.0.1:7100"));
    let (code, _, err) = bftbench(&["deploy", "k8s", "render", "--replicas", "5"]);
    assert_ne!(code, 0);
    assert!(err.contains("3f+1"), "{err}");
}

#[test]
fn sim_runs_raft_and_refuses_byzantine_modes_for_it() {
    let (code, out, _) = bftbench(&[
        "sim",
        "--protocol",
        "raft",
        "--replicas",
        "3",
        "--crash",
        "1",
        "--seeds",
        "1..=10",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.lines().last().unwrap().contains("protocol=raft"),
        "{out}"
    );
    let (code, _, err) = bftbench(&[
        "sim",
        "--protocol",
        "raft",
        "--replicas",
        "3",
        "--twins",
        "1",
    ]);
    assert_eq!(code, 2, "an error, not a failing seed");
    assert!(err.contains("Raft tolerates crashes, not lies"), "{err}");
}

#[test]
fn bench_refuses_a_replica_configuration_before_starting_anything() {
    let dir = std::env::temp_dir().join(format!("bftbench-cfg-{}", std::process::id()));
    let csv = dir.join("bench.csv");
    let started = std::time::Instant::now();
    let (code, _, err) = bftbench(&[
        "bench",
        "--protocols",
        "bft",
        "--checkpoint-interval",
        "4096",
        "--csv",
        csv.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("replica configuration"), "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "refused at once"
    );
    assert!(!csv.exists(), "nothing ran, nothing written");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A data folder that marks a replica of another cluster (other keys) is
/// refused before the replica starts: it would otherwise take that cluster's
/// log or first-launch mark for its own.
#[test]
fn a_replica_refuses_a_data_folder_of_another_cluster() {
    let root = std::env::temp_dir().join(format!("bftbench-mark-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let addrs = "127.0.0.1:47391,127.0.0.1:47392,127.0.0.1:47393,127.0.0.1:47394";
    for c in ["a", "b"] {
        let out = root.join(c);
        let (code, _, err) =
            bftbench(&["keygen", "--addrs", addrs, "--out", out.to_str().unwrap()]);
        assert_eq!(code, 0, "{err}");
    }
    let data = root.join("data");
    let run = |c: &str| {
        let cluster = root.join(c).join("cluster.toml");
        // stdin is closed: the replica starts, marks its launch, and stops.
        bftbench(&[
            "replica",
            "--cluster",
            cluster.to_str().unwrap(),
            "--id",
            "0",
            "--data-dir",
            data.to_str().unwrap(),
            "--control-stdio",
        ])
    };
    let (code, _, err) = run("a");
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("rejoining"), "a first launch: {err}");
    let (code, _, err) = run("a");
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("rejoining without state"), "ran before: {err}");
    let (code, _, err) = run("b");
    assert_ne!(code, 0);
    assert!(err.contains("another cluster"), "{err}");
    let _ = std::fs::remove_dir_all(&root);
}
