//! The `k8s` back end for `matrix run`: each run renders `k8s.rs`'s
//! manifests under a name of its own (fresh keys, the cell's exact YCSB
//! properties in the ConfigMap), applies them with kubectl, waits for the
//! client Job, reads the client's whole report from `kubectl logs` (one
//! `report {json}` line, `wire.rs`), and deletes everything by label,
//! whatever happened.
//!
//! Replica and KV-server CPU, memory and bytes are not collected here (a
//! Job's pods have no control channel), so those columns stay empty; the
//! client's own figures are in its report.

use super::fleet::{usage_between, Role};
use super::k8s::{render, K8sSpec};
use super::wire::{WireReport, REPORT_PREFIX};
use super::{finish, Deployment, RunOutcome, RunSpec};
use anyhow::{bail, Context};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How often the Job's status is read.
const JOB_POLL: Duration = Duration::from_secs(2);
/// Time allowed beyond warm-up and measurement: scheduling, image loading,
/// name resolution, the load phase.
const START_ALLOWANCE: Duration = Duration::from_secs(300);

pub struct Kube {
    namespace: String,
    image: String,
    /// `$BFTBENCH_KUBECTL`, else `kubectl`.
    program: String,
}

impl Kube {
    /// Checks that kubectl runs before any cell starts.
    pub fn new(namespace: &str) -> anyhow::Result<Kube> {
        let k = Kube {
            namespace: namespace.to_string(),
            image: super::docker::image(),
            program: std::env::var("BFTBENCH_KUBECTL").unwrap_or_else(|_| "kubectl".into()),
        };
        k.kubectl(&["version", "--client"], None)
            .context("the k8s back end needs kubectl on PATH, pointed at a cluster")?;
        Ok(k)
    }

    /// Runs kubectl; returns its stdout, or an error quoting its stderr.
    fn kubectl(&self, args: &[&str], input: Option<&str>) -> anyhow::Result<String> {
        let mut child = Command::new(&self.program)
            .args(args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("running {}", self.program))?;
        if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
            stdin.write_all(text.as_bytes())?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "`kubectl {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Waits until the client Job succeeds; an error if it fails or the
    /// deadline passes.
    fn wait_for_job(&self, job: &str, deadline: Instant) -> anyhow::Result<()> {
        let status = "jsonpath={.status.succeeded},{.status.failed}";
        loop {
            let out = self.kubectl(
                &["get", "job", job, "-n", &self.namespace, "-o", status],
                None,
            )?;
            let (ok, failed) = out.trim().split_once(',').unwrap_or(("", ""));
            if ok.parse::<u32>().is_ok_and(|n| n > 0) {
                return Ok(());
            }
            if failed.parse::<u32>().is_ok_and(|n| n > 0) {
                bail!("the client Job {job} failed");
            }
            if Instant::now() >= deadline {
                bail!("the client Job {job} did not finish in time");
            }
            std::thread::sleep(JOB_POLL);
        }
    }

    fn spec(&self, spec: &RunSpec, name: String) -> K8sSpec {
        let mut client_flags = Vec::new();
        if let Some(t) = spec.target {
            client_flags.extend(["--target".to_string(), t.to_string()]);
        }
        if spec.signed {
            client_flags.push("--signed".into());
        }
        if spec.full_replies {
            client_flags.push("--full-replies".into());
        }
        K8sSpec {
            name,
            namespace: self.namespace.clone(),
            image: self.image.clone(),
            protocol: spec.protocol.clone(),
            replicas: spec.n,
            remote_execution: spec.remote_execution,
            replica_flags: spec.protocol_args.to_flags(),
            clients: spec.clients,
            workload: "a".into(),
            duration: format!("{}ms", spec.duration.as_millis()),
            warmup: format!("{}ms", spec.warmup.as_millis()),
            workload_file: Some(
                spec.props
                    .entries()
                    .map(|(k, v)| format!("{k}={v}\n"))
                    .collect(),
            ),
            client_flags,
            report_line: true,
            seed: None,
        }
    }

    fn measure(
        &self,
        spec: &RunSpec,
        k: &K8sSpec,
    ) -> anyhow::Result<(
        bft_net::client_loop::LoadReport,
        Vec<(Role, super::RoleUsage)>,
    )> {
        self.kubectl(&["apply", "-f", "-"], Some(&render(k)?))?;
        let job = format!("{}-client", k.name);
        let deadline = Instant::now() + spec.warmup + spec.duration + START_ALLOWANCE;
        self.wait_for_job(&job, deadline)?;
        let logs = self.kubectl(
            &["logs", "-n", &self.namespace, &format!("job/{job}")],
            None,
        )?;
        let line = logs
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix(REPORT_PREFIX))
            .context("the client Job printed no report line")?;
        let (report, before, after) = WireReport::parse(line)?.into_parts()?;
        let usage = usage_between(&vec![(Role::Client, before)], &vec![(Role::Client, after)]);
        Ok((report, usage))
    }

    /// Saves the pods' logs into the run folder (for a failed run).
    fn save_logs(&self, spec: &RunSpec, name: &str) {
        let selector = format!("app.kubernetes.io/instance={name}");
        let args = [
            "logs",
            "-n",
            &self.namespace,
            "-l",
            &selector,
            "--all-containers",
            "--prefix",
            "--tail",
            "200",
        ];
        if let Ok(text) = self.kubectl(&args, None) {
            let _ = std::fs::write(spec.dir.join("pods.log"), text);
        }
    }
}

/// A run's name: `bftbench-` and the run folder's last 12 letters and
/// digits (DNS-1123, unique per run).
fn run_name(spec: &RunSpec) -> String {
    let base = spec
        .dir
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let tail: String = base.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    format!("bftbench-{}", &tail[tail.len().saturating_sub(12)..])
}

/// Deletes every object of a run when dropped.
struct Cleanup<'a> {
    kube: &'a Kube,
    name: String,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let args = super::k8s::delete_args(&self.name, &self.kube.namespace);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        if let Err(e) = self.kube.kubectl(&args, None) {
            eprintln!("warning: deleting {}: {e:#}", self.name);
        }
    }
}

impl Deployment for Kube {
    fn name(&self) -> &'static str {
        "k8s"
    }

    fn run(&mut self, spec: &RunSpec) -> anyhow::Result<RunOutcome> {
        super::refuse_disk_storage(spec, "k8s")?;
        let _ = std::fs::remove_dir_all(&spec.dir);
        std::fs::create_dir_all(&spec.dir)?;
        let k = self.spec(spec, run_name(spec));
        let cleanup = Cleanup {
            kube: self,
            name: k.name.clone(),
        };
        let measured = self.measure(spec, &k);
        if measured.is_err() {
            self.save_logs(spec, &k.name);
        }
        drop(cleanup);
        finish(spec, measured)
    }
}
