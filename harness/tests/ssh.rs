//! The ssh back end against real sshd: three "hosts", each an OpenSSH server
//! on its own loopback address (127.0.0.2, .3, .4), reached with the system
//! `ssh` client and a key made for the test. Two replica hosts carry a
//! 4-replica BFT cluster (two replicas each) and the third runs the client.
//! Needs `/usr/sbin/sshd` (Debian's openssh-server, which `.ci/run` installs):
//! without it the test says so and passes on a developer's machine, but fails
//! in CI.

#![allow(clippy::unwrap_used)]

mod common;
use common::bftbench_in as bftbench;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SSHD: &str = "/usr/sbin/sshd";

/// sshd servers, killed when dropped.
struct Hosts {
    servers: Vec<Child>,
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for s in &mut self.servers {
            let _ = s.kill();
            let _ = s.wait();
        }
    }
}

fn free_port(ip: &str) -> u16 {
    TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn keygen(path: &Path) {
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .unwrap()
        .success();
    assert!(ok, "ssh-keygen failed");
}

/// Starts one sshd per address; returns them and their ports.
fn start_sshd(dir: &Path, ips: &[&str]) -> (Hosts, Vec<u16>) {
    keygen(&dir.join("host_key"));
    keygen(&dir.join("user_key"));
    std::fs::copy(dir.join("user_key.pub"), dir.join("authorized_keys")).unwrap();
    // sshd's privilege-separation folder (absent until the service first runs).
    std::fs::create_dir_all("/run/sshd").unwrap();
    let mut hosts = Hosts {
        servers: Vec::new(),
    };
    let mut ports = Vec::new();
    for ip in ips {
        let port = free_port(ip);
        let cfg = dir.join(format!("sshd-{ip}.conf"));
        std::fs::write(
            &cfg,
            format!(
                "ListenAddress {ip}:{port}\nHostKey {d}/host_key\n\
                 AuthorizedKeysFile {d}/authorized_keys\nPidFile none\nStrictModes no\n\
                 UsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\nLogLevel ERROR\n",
                d = dir.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join(format!("sshd-{ip}.log"))).unwrap();
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(&cfg)
            .stdin(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        hosts.servers.push(child);
        ports.push(port);
    }
    for (ip, port) in ips.iter().zip(&ports) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect((*ip, *port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "sshd on {ip}:{port} never listened"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    (hosts, ports)
}

fn user() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// An inventory for the three hosts; `dead_replica_host` points the second
/// replica host at an address where no sshd listens.
fn inventory(dir: &Path, ports: &[u16], dead_replica_host: bool) -> PathBuf {
    let base = free_port("127.0.0.2");
    let host = |name: &str, ip: &str, port: u16| {
        format!(
            r#"{{"name": "{name}", "ssh_host": "{ip}", "address": "{ip}", "ssh_port": {port}}}"#
        )
    };
    let second = if dead_replica_host {
        host("r1", "127.0.0.9", ports[1])
    } else {
        host("r1", "127.0.0.3", ports[1])
    };
    let text = format!(
        r#"{{
  "version": 1,
  "protocol": "bft",
  "ssh_user": "{user}",
  "replica_port": {base},
  "kv_port": {kv},
  "replicas": [{first}, {second}],
  "clients": [{client}],
  "ssh_options": ["-i", "{key}", "-o", "StrictHostKeyChecking=no",
                  "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"],
  "remote_dir": "{remote}",
  "kv_on_loopback": false
}}"#,
        user = user(),
        kv = base + 100,
        first = host("r0", "127.0.0.2", ports[0]),
        client = host("c0", "127.0.0.4", ports[2]),
        key = dir.join("user_key").display(),
        remote = dir.join("remote").display(),
    );
    let path = dir.join(if dead_replica_host {
        "dead.json"
    } else {
        "inventory.json"
    });
    std::fs::write(&path, text).unwrap();
    path
}

/// Processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) && !cmd.contains("sshd") {
                found.push(cmd);
            }
        }
    }
    found
}

fn header(csv: &Path) -> String {
    let text = std::fs::read_to_string(csv).unwrap();
    text.lines().next().unwrap().to_string()
}

#[test]
fn a_bft_cell_runs_on_sshd_hosts_with_the_local_columns_and_leaves_nothing_behind() {
    if !Path::new(SSHD).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{SSHD} is missing in CI (.ci/run installs openssh-server)"
        );
        eprintln!("SKIPPED: no {SSHD} (apt-get install openssh-server)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("bftbench-ssh-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (_hosts, ports) = start_sshd(&dir, &["127.0.0.2", "127.0.0.3", "127.0.0.4"]);
    let inv = inventory(&dir, &ports, false);
    std::fs::write(
        dir.join("m.toml"),
        r#"
name = "s"
[params]
protocol = "bft"
replicas = 4
execution = ["embedded", "remote"]
clients = 8
duration = "1s"
warmup = "0.3s"
"#,
    )
    .unwrap();
    let inv_arg = inv.to_str().unwrap();
    let args = [
        "matrix",
        "run",
        "m.toml",
        "--backend",
        "ssh",
        "--inventory",
        inv_arg,
    ];
    let (code, out, err) = bftbench(&args, &dir);
    assert_eq!(code, 0, "{out}\n{err}");
    let csv = dir.join("results/s.csv");
    let rows = bft_harness::results::read_rows(&csv).unwrap();
    assert_eq!(rows.len(), 2);
    for r in &rows {
        assert_eq!((r["status"].as_str(), r["backend"].as_str()), ("ok", "ssh"));
        assert!(r["ops"].parse::<u64>().unwrap() > 0, "{r:?}");
        assert!(r["throughput_ops_s"].parse::<f64>().unwrap() > 0.0);
        let replica_cpu: f64 = r["cpu_s_replica"].parse().unwrap();
        let client_cpu: f64 = r["cpu_s_client"].parse().unwrap();
        assert!(replica_cpu > 0.0 && client_cpu > 0.0, "{r:?}");
        assert!(r["bytes_sent_client"].parse::<u64>().unwrap() > 0, "{r:?}");
        let remote = r["execution"] == "remote";
        assert_eq!(!r["bytes_received_kv_server"].is_empty(), remote, "{r:?}");
        assert!(r["p99_us"].parse::<u64>().unwrap() > 0, "{r:?}");
    }
    // Histograms and time series came back from the client host.
    let raw: Vec<String> = std::fs::read_dir(dir.join("results/s.csv.runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(raw.iter().filter(|f| f.ends_with(".hgrm")).count(), 4);
    assert_eq!(raw.iter().filter(|f| f.ends_with(".series.csv")).count(), 2);

    // The same columns as a local run.
    std::fs::write(
        dir.join("l.toml"),
        "name = \"l\"\n[params]\nprotocol = \"bare\"\nclients = 2\nduration = \"0.3s\"\nwarmup = \"0.1s\"\n",
    )
    .unwrap();
    let (code, out, err) = bftbench(&["matrix", "run", "l.toml"], &dir);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(header(&csv), header(&dir.join("results/l.csv")));

    // Nothing is left on the hosts: no run folder (keys), no process.
    let remote = dir.join("remote");
    let runs: Vec<_> = std::fs::read_dir(remote.join("runs"))
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(runs.is_empty(), "run folders left: {runs:?}");
    let bins = std::fs::read_dir(remote.join("bin")).unwrap().count();
    assert_eq!(bins, 1, "the binary is copied once, under its hash");
    let left = processes_mentioning(&remote.display().to_string());
    assert!(left.is_empty(), "processes left: {left:?}");

    // An unreachable host fails the run clearly and keeps the row.
    let dead = inventory(&dir, &ports, true);
    let args = [
        "matrix",
        "run",
        "m.toml",
        "--backend",
        "ssh",
        "--inventory",
        dead.to_str().unwrap(),
        "--out",
        "dead.csv",
    ];
    let (code, out, err) = bftbench(&args, &dir);
    assert_eq!(code, 1, "{out}\n{err}");
    let rows = bft_harness::results::read_rows(&dir.join("dead.csv")).unwrap();
    assert_eq!(rows.len(), 2);
    for r in &rows {
        assert_eq!(r["status"], "failed", "{r:?}");
        assert!(r["error"].contains("ssh to r1"), "{r:?}");
    }
    let left = processes_mentioning(&remote.display().to_string());
    assert!(left.is_empty(), "processes left after a failure: {left:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
