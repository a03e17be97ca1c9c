//! The `docker` back end: one container per replica and per separated KV
//! server, on a user-defined bridge network with fixed addresses, from an
//! image built `FROM scratch` around a static `bftbench` (no registry needed).
//!
//! The client stays in this process and reaches the containers over the
//! bridge, so the only difference from `local` is the container boundary
//! (network namespace, veth pair, bridge): BFT-DEP's bare-versus-container
//! question as one matrix parameter.

use super::fleet::{Fleet, Role};
use super::{finish, fresh_cluster, measure, Deployment, RunOutcome, RunSpec};
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The image `deploy docker build` makes and runs use, unless overridden by
/// the `BFTBENCH_IMAGE` environment variable.
pub const DEFAULT_IMAGE: &str = "bftbench:local";
const REPLICA_PORT: u16 = 7000;
const KV_PORT: u16 = 7100;
/// Subnets tried for a run's network: 10.213.k.0/24 for k in this range.
const SUBNETS: std::ops::Range<u32> = 1..255;
/// The Rust target of the static binary.
const STATIC_TARGET: &str = "x86_64-unknown-linux-gnu";

pub fn image() -> String {
    std::env::var("BFTBENCH_IMAGE").unwrap_or_else(|_| DEFAULT_IMAGE.to_string())
}

/// Runs `docker ARGS`, returning stdout; a failure quotes docker's stderr.
fn docker(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running `docker` (is Docker installed and on PATH?)")?;
    if !out.status.success() {
        bail!(
            "`docker {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Why Docker cannot be used here, if it cannot (no CLI, no daemon, no image).
pub fn unavailable(image: &str) -> Option<String> {
    if let Err(e) = docker(&["version", "--format", "{{.Server.Version}}"]) {
        return Some(format!("no Docker daemon: {e:#}"));
    }
    match docker(&["image", "inspect", "--format", "{{.Id}}", image]) {
        Ok(_) => None,
        Err(_) => Some(format!(
            "image {image} is missing: build it with `bftbench deploy docker build`"
        )),
    }
}

/// True if `path` is a 64-bit ELF executable without a program interpreter
/// (PT_INTERP), i.e. statically linked, so it runs in a `FROM scratch` image.
fn is_static_elf(path: &Path) -> bool {
    std::fs::read(path).is_ok_and(|b| elf_interpreter(&b) == Some(false))
}

/// Whether a little-endian ELF64 image names an interpreter; None if the
/// bytes are not one.
fn elf_interpreter(b: &[u8]) -> Option<bool> {
    const PT_INTERP: u32 = 3;
    if !b.starts_with(b"\x7fELF\x02\x01") {
        return None;
    }
    let u16_at = |o: usize| Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?));
    let phoff = usize::try_from(u64_at(0x20)?).ok()?;
    let (phentsize, phnum) = (u16_at(0x36)? as usize, u16_at(0x38)? as usize);
    let mut interp = false;
    for i in 0..phnum {
        interp |= u32_at(phoff.checked_add(i.checked_mul(phentsize)?)?)? == PT_INTERP;
    }
    Some(interp)
}

/// The workspace this binary was built from, if it is still there.
fn workspace_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()?
        .to_path_buf();
    dir.join("Cargo.toml").exists().then_some(dir)
}

/// A static `bftbench`: this executable if it is one, else built with cargo
/// (`+crt-static`, its own target folder, so normal builds stay cached).
pub fn static_binary() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe().context("locating this executable")?;
    if is_static_elf(&me) {
        return Ok(me);
    }
    let ws = workspace_dir().context(
        "this bftbench is dynamically linked and its source folder is gone: pass --binary \
         with a static build",
    )?;
    let target_dir = ws.join("target").join("static");
    eprintln!(
        "building a static bftbench in {} (a few minutes the first time)",
        target_dir.display()
    );
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(&ws)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .args(["build", "--release", "--locked", "--bin", "bftbench"])
        .args(["--target", STATIC_TARGET, "--target-dir"])
        .arg(&target_dir)
        .status()
        .context("running cargo")?;
    if !status.success() {
        bail!("the static build failed");
    }
    let bin = target_dir
        .join(STATIC_TARGET)
        .join("release")
        .join("bftbench");
    if !is_static_elf(&bin) {
        bail!("{} is not statically linked", bin.display());
    }
    Ok(bin)
}

/// Builds the image: the static binary alone, `FROM scratch`.
pub fn build_image(binary: Option<&Path>, tag: &str) -> anyhow::Result<()> {
    let bin = match binary {
        Some(b) if is_static_elf(b) => b.to_path_buf(),
        Some(b) => bail!("{} is not a statically linked executable", b.display()),
        None => static_binary()?,
    };
    let ctx = std::env::temp_dir().join(format!("bftbench-image-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&ctx);
    std::fs::create_dir_all(&ctx)?;
    std::fs::copy(&bin, ctx.join("bftbench"))
        .with_context(|| format!("copying {}", bin.display()))?;
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY bftbench /bftbench\nENTRYPOINT [\"/bftbench\"]\n",
    )?;
    let built = docker(&["build", "--quiet", "-t", tag, &ctx.to_string_lossy()]);
    let _ = std::fs::remove_dir_all(&ctx);
    let id = built?;
    println!("built {tag} ({}) from {}", id.trim(), bin.display());
    Ok(())
}

/// A run's network and containers, removed when dropped.
struct Network {
    name: String,
    containers: Vec<String>,
}

impl Network {
    /// Creates a bridge network on the first free subnet.
    fn create(name: &str) -> anyhow::Result<(Network, String)> {
        let mut last = None;
        for k in SUBNETS {
            let prefix = format!("10.213.{k}");
            let subnet = format!("{prefix}.0/24");
            match docker(&["network", "create", "--subnet", &subnet, name]) {
                Ok(_) => {
                    let net = Network {
                        name: name.to_string(),
                        containers: Vec::new(),
                    };
                    return Ok((net, prefix));
                }
                Err(e) if e.to_string().contains("overlap") => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no subnet")))
            .context("no free 10.213.x.0/24 subnet for the run's network")
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        if !self.containers.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(self.containers.iter().map(String::as_str));
            let _ = docker(&args);
        }
        let _ = docker(&["network", "rm", &self.name]);
    }
}

#[derive(Debug)]
pub struct Docker {
    pub image: String,
}

/// The replicas' data folder in their containers (the run folder's `state`,
/// writable; the cluster folder is mounted read-only).
const STATE_DIR: &str = "/state";

impl Docker {
    /// Checks that Docker and the image are there before any run starts.
    pub fn new() -> anyhow::Result<Docker> {
        let image = image();
        if let Some(why) = unavailable(&image) {
            bail!("the docker back end cannot run: {why}");
        }
        Ok(Docker { image })
    }

    /// `docker run -i` for one container of the run; the control channel
    /// (stdin/stdout) passes through the docker CLI.
    fn container(&self, net: &mut Network, dir: &Path, name: &str, ip: &str) -> Command {
        net.containers.push(name.to_string());
        let mut cmd = Command::new("docker");
        cmd.args(["run", "-i", "--rm", "--name", name])
            .args(["--network", &net.name, "--ip", ip])
            .arg("-v")
            .arg(format!("{}:/cluster:ro", dir.display()))
            .arg("-v")
            .arg(format!("{}:{STATE_DIR}", dir.join("state").display()))
            .arg(&self.image);
        cmd
    }

    fn start(
        &self,
        spec: &RunSpec,
        net: &mut Network,
        prefix: &str,
        fleet: &mut Fleet,
    ) -> anyhow::Result<()> {
        let dir = &spec.dir;
        let run = &net.name.clone();
        std::fs::create_dir_all(dir.join("state"))?;
        for id in 0..spec.n {
            let execution = if spec.remote_execution {
                let ip = format!("{prefix}.{}", 100 + id);
                let log = dir.join(format!("kv-server-{id}.log"));
                let mut cmd = self.container(net, dir, &format!("{run}-kv-{id}"), &ip);
                cmd.args(["kv-server", "--listen", &format!("0.0.0.0:{KV_PORT}")])
                    .arg("--control-stdio");
                fleet.spawn(Role::KvServer, &format!("kv-server {id}"), cmd, &log)?;
                format!("remote={ip}:{KV_PORT}")
            } else {
                "embedded".to_string()
            };
            let ip = format!("{prefix}.{}", 10 + id);
            let log = dir.join(format!("replica-{id}.log"));
            let mut cmd = self.container(net, dir, &format!("{run}-replica-{id}"), &ip);
            cmd.args(["replica", "--cluster", "/cluster/cluster.toml"])
                .args(["--id", &id.to_string(), "--control-stdio"])
                .args(["--data-dir", STATE_DIR])
                .args(["--execution", &execution])
                .args(spec.protocol_args.to_flags());
            fleet.spawn(Role::Replica, &format!("replica {id}"), cmd, &log)?;
        }
        Ok(())
    }
}

impl Deployment for Docker {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn run(&mut self, spec: &RunSpec) -> anyhow::Result<RunOutcome> {
        super::refuse_disk_storage(spec, "docker")?;
        let run = spec
            .dir
            .file_name()
            .map_or("bftbench-run".into(), |n| n.to_string_lossy().into_owned());
        let (mut net, prefix) = Network::create(&run)?;
        let addrs = (0..spec.n)
            .map(|i| format!("{prefix}.{}:{REPLICA_PORT}", 10 + i))
            .collect();
        let cluster = fresh_cluster(spec, addrs, Some(1))?;
        let mut fleet = Fleet::default();
        let measured = self
            .start(spec, &mut net, &prefix, &mut fleet)
            .and_then(|_| measure(&cluster, &mut fleet, spec));
        drop(fleet);
        drop(net);
        finish(spec, measured)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamically_linked_binary_is_not_taken_for_a_static_one() {
        // Test binaries are linked dynamically on the gnu target.
        let me = std::env::current_exe().unwrap_or_default();
        assert!(!is_static_elf(&me));
        assert_eq!(
            elf_interpreter(&std::fs::read(&me).unwrap_or_default()),
            Some(true)
        );
        assert!(!is_static_elf(Path::new("/nonexistent")));
        assert_eq!(elf_interpreter(b"\x7fELF\x02\x01 truncated"), None);
        assert_eq!(elf_interpreter(b"#!/bin/sh"), None);
    }
}
