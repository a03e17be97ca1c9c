//! `bftbench deploy`: what a deployment back end needs before a matrix runs
//! on it: the Docker image, Kubernetes manifests and a kind cluster config.

use super::replica::ProtocolArgs;
use crate::deploy::{docker, k8s};
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

#[derive(Args, Debug)]
pub struct DeployArgs {
    #[command(subcommand)]
    pub target: DeployTarget,
}

// Parsed once per process: the size of the larger variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum DeployTarget {
    /// The docker back end.
    Docker {
        #[command(subcommand)]
        action: DockerAction,
    },
    /// Kubernetes: manifests, and kubectl apply/delete.
    K8s {
        #[command(subcommand)]
        action: K8sAction,
    },
}

#[derive(Subcommand, Debug)]
pub enum K8sAction {
    /// Print the manifests (ConfigMap, Secret with fresh keys, headless
    /// Service, StatefulSet, client Job) as YAML.
    Render(RenderArgs),
    /// Render and `kubectl apply -f -`.
    Apply(RenderArgs),
    /// `kubectl delete` everything a render with this name made.
    Delete {
        #[arg(long, default_value = "bftbench")]
        name: String,
        #[arg(long, default_value = "default")]
        namespace: String,
    },
    /// Print a kind cluster config: one control plane and N workers.
    KindConfig {
        /// Workers (at least the replicas: each replica gets its own node).
        #[arg(long, default_value_t = 4)]
        workers: usize,
    },
}

#[derive(Args, Debug)]
pub struct RenderArgs {
    #[arg(long, default_value_t = 4)]
    pub replicas: usize,
    /// bft, raft or bare.
    #[arg(long, default_value = "bft")]
    pub protocol: String,
    /// `embedded` or `remote` (the KV server as a sidecar in each replica's pod).
    #[arg(long, default_value = "embedded")]
    pub execution: String,
    /// Prefix of every object and the Service name.
    #[arg(long, default_value = "bftbench")]
    pub name: String,
    #[arg(long, default_value = "default")]
    pub namespace: String,
    #[arg(long, default_value = docker::DEFAULT_IMAGE)]
    pub image: String,
    /// The client Job's logical clients, workload and timing.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    #[arg(long, default_value = "a")]
    pub workload: String,
    #[arg(long, default_value = "30s")]
    pub duration: String,
    #[arg(long, default_value = "5s")]
    pub warmup: String,
    #[command(flatten)]
    pub protocol_args: ProtocolArgs,
    /// Deterministic keys, for tests only (never for a real deployment).
    #[arg(long)]
    pub seed: Option<u64>,
}

impl RenderArgs {
    fn spec(&self) -> anyhow::Result<k8s::K8sSpec> {
        let remote_execution = match self.execution.as_str() {
            "embedded" => false,
            "remote" => true,
            other => bail!("--execution {other}: expected embedded or remote"),
        };
        if !matches!(self.protocol.as_str(), "bft" | "raft" | "bare") {
            bail!("--protocol {}: expected bft, raft or bare", self.protocol);
        }
        Ok(k8s::K8sSpec {
            name: self.name.clone(),
            namespace: self.namespace.clone(),
            image: self.image.clone(),
            protocol: self.protocol.clone(),
            replicas: self.replicas,
            remote_execution,
            replica_flags: self.protocol_args.to_flags(),
            clients: self.clients,
            workload: self.workload.clone(),
            duration: self.duration.clone(),
            warmup: self.warmup.clone(),
            workload_file: None,
            client_flags: Vec::new(),
            report_line: false,
            seed: self.seed,
        })
    }
}

/// Runs kubectl with `args`, `input` on its stdin; its output passes through.
fn kubectl(args: &[String], input: Option<&str>) -> anyhow::Result<i32> {
    let mut child = Command::new("kubectl")
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .spawn()
        .context("running kubectl (is it installed and on PATH?)")?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .context("writing to kubectl")?;
    }
    Ok(child.wait()?.code().unwrap_or(1))
}

fn k8s(action: K8sAction) -> anyhow::Result<i32> {
    match action {
        K8sAction::Render(r) => {
            print!("{}", k8s::render(&r.spec()?)?);
            Ok(0)
        }
        K8sAction::Apply(r) => {
            let yaml = k8s::render(&r.spec()?)?;
            kubectl(&["apply".into(), "-f".into(), "-".into()], Some(&yaml))
        }
        K8sAction::Delete { name, namespace } => {
            kubectl(&k8s::delete_args(&name, &namespace), None)
        }
        K8sAction::KindConfig { workers } => {
            print!("{}", k8s::kind_config(workers));
            Ok(0)
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum DockerAction {
    /// Build the image (`FROM scratch`, a static bftbench, no registry).
    Build(BuildArgs),
    /// Say whether the docker back end can run here, and why not.
    Check,
}

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// Image tag (runs use $BFTBENCH_IMAGE, else this default).
    #[arg(long, default_value = docker::DEFAULT_IMAGE)]
    pub tag: String,
    /// A statically linked bftbench to put in the image (default: this one if
    /// static, else built with cargo from this source tree).
    #[arg(long)]
    pub binary: Option<PathBuf>,
}

pub fn run(a: DeployArgs) -> anyhow::Result<i32> {
    match a.target {
        DeployTarget::K8s { action } => k8s(action),
        DeployTarget::Docker {
            action: DockerAction::Build(b),
        } => {
            docker::build_image(b.binary.as_deref(), &b.tag)?;
            Ok(0)
        }
        DeployTarget::Docker {
            action: DockerAction::Check,
        } => match docker::unavailable(&docker::image()) {
            None => {
                println!("docker back end ready (image {})", docker::image());
                Ok(0)
            }
            Some(why) => {
                println!("docker back end unavailable: {why}");
                Ok(1)
            }
        },
    }
}
