//! The `local` back end: replicas as child processes on loopback ports.

use super::fleet::{Fleet, Role};
use super::{finish, fresh_cluster, measure, Deployment, RunOutcome, RunSpec};
use crate::cli::replica::ProtocolArgs;
use anyhow::Context;
use std::path::Path;
use std::process::Command;

fn free_addrs(n: usize) -> anyhow::Result<Vec<String>> {
    let ls: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()
        .context("finding free loopback ports")?;
    Ok(ls
        .iter()
        .map(|l| l.local_addr().map(|a| a.to_string()))
        .collect::<Result<_, _>>()?)
}

fn spawn_replicas(
    dir: &Path,
    n: usize,
    proto: &ProtocolArgs,
    remote: bool,
) -> anyhow::Result<Fleet> {
    let exe = std::env::current_exe().context("locating the bftbench binary")?;
    let mut fleet = Fleet::default();
    let kv_addrs = if remote { free_addrs(n)? } else { Vec::new() };
    for (id, addr) in kv_addrs.iter().enumerate() {
        let log = dir.join(format!("kv-server-{id}.log"));
        let mut cmd = Command::new(&exe);
        cmd.args(["kv-server", "--listen", addr, "--control-stdio"]);
        fleet.spawn(Role::KvServer, &format!("kv-server {id}"), cmd, &log)?;
    }
    for id in 0..n {
        let execution = kv_addrs
            .get(id)
            .map_or("embedded".to_string(), |a| format!("remote={a}"));
        let log = dir.join(format!("replica-{id}.log"));
        let mut cmd = Command::new(&exe);
        cmd.arg("replica")
            .arg("--cluster")
            .arg(dir.join("cluster.toml"))
            .args(["--id", &id.to_string(), "--control-stdio"])
            .args(["--execution", &execution])
            .args(proto.to_flags());
        fleet.spawn(Role::Replica, &format!("replica {id}"), cmd, &log)?;
    }
    Ok(fleet)
}

#[derive(Debug, Default)]
pub struct Local;

impl Deployment for Local {
    fn name(&self) -> &'static str {
        "local"
    }

    fn run(&mut self, spec: &RunSpec) -> anyhow::Result<RunOutcome> {
        let cluster = fresh_cluster(spec, free_addrs(spec.n)?, Some(1))?;
        let mut fleet = spawn_replicas(
            &spec.dir,
            spec.n,
            &spec.protocol_args,
            spec.remote_execution,
        )?;
        let measured = measure(&cluster, &mut fleet, spec);
        drop(fleet);
        finish(spec, measured)
    }
}
