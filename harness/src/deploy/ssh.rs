//! The `ssh` back end: replicas, separated KV servers and the load generator
//! on hosts listed in an inventory (Terraform's `modules/inventory` writes
//! one), reached with the system `ssh`, so the user's `~/.ssh/config`, agent
//! and keys apply as for any other SSH command.
//!
//! Per run: fresh keys are made here; each host receives the binary (once,
//! under a content hash), the cluster file and only its own secret keys; every
//! process is `ssh host exec bftbench … --control-stdio`, so the control
//! channel (figures, stop on end of input) passes through SSH. The client runs
//! on a client host and sends its whole report back as one line
//! (`super::wire`). Whatever happens, each host's run folder (keys included)
//! is removed and any process of the run still alive there is killed.

use super::fleet::{usage_between, Fleet, Role, RoleUsage};
use super::wire::{WireReport, MEASURING_LINE, REPORT_LINE_MAX, REPORT_PREFIX};
use super::{finish, fresh_cluster, Deployment, RunOutcome, RunSpec};
use anyhow::{bail, Context};
use bft_net::client_loop::LoadReport;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Hosts an inventory may list (per role).
pub const HOSTS_MAX: usize = 1_000;
/// Inventory files larger than this are refused before parsing.
const INVENTORY_BYTES_MAX: u64 = 1 << 20;
/// The only inventory format so far.
const INVENTORY_VERSION: u32 = 1;

fn default_replica_port() -> u16 {
    7000
}
fn default_kv_port() -> u16 {
    7100
}
fn default_remote_dir() -> String {
    ".bftbench".into()
}

/// One host: reached over SSH at `ssh_host`, reached by the cluster's other
/// hosts at `address`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    pub name: String,
    pub ssh_host: String,
    pub address: String,
    /// Overrides the inventory's `ssh_port` for this host.
    #[serde(default)]
    pub ssh_port: Option<u16>,
}

/// The inventory file (JSON), as `modules/inventory` writes it; the fields
/// after `clients` are for hand-written inventories and tests.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    pub version: u32,
    /// What the hosts were sized for (informational: each matrix cell says
    /// which protocol and n it runs).
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub ssh_user: Option<String>,
    /// Passed as `-p` when set (else ssh's own configuration decides).
    #[serde(default)]
    pub ssh_port: Option<u16>,
    #[serde(default = "default_replica_port")]
    pub replica_port: u16,
    #[serde(default = "default_kv_port")]
    pub kv_port: u16,
    pub replicas: Vec<Host>,
    pub clients: Vec<Host>,
    /// Extra `ssh` arguments, e.g. `["-i", "~/.ssh/bench"]`.
    #[serde(default)]
    pub ssh_options: Vec<String>,
    /// Folder on each host for the binary and run folders (relative paths
    /// are under the login's home).
    #[serde(default = "default_remote_dir")]
    pub remote_dir: String,
    /// KV servers listen on 127.0.0.1 beside their replica (the default);
    /// false: on the host's `address` (for several "hosts" sharing one
    /// machine, as in this project's own test).
    #[serde(default = "default_true")]
    pub kv_on_loopback: bool,
}

fn default_true() -> bool {
    true
}

/// Characters allowed in host names and the remote folder: they end up in
/// remote paths and shell commands.
fn safe_word(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./~".contains(c))
}

impl Inventory {
    pub fn load(path: &Path) -> anyhow::Result<Inventory> {
        let f = std::fs::File::open(path)
            .with_context(|| format!("opening the inventory {}", path.display()))?;
        let mut text = String::new();
        f.take(INVENTORY_BYTES_MAX + 1)
            .read_to_string(&mut text)
            .with_context(|| format!("reading {}", path.display()))?;
        if text.len() as u64 > INVENTORY_BYTES_MAX {
            bail!(
                "{}: larger than {INVENTORY_BYTES_MAX} bytes",
                path.display()
            );
        }
        Inventory::parse(&text).with_context(|| format!("inventory {}", path.display()))
    }

    /// Parses and checks an inventory's JSON text.
    fn parse(text: &str) -> anyhow::Result<Inventory> {
        let mut inv: Inventory = serde_json::from_str(text).context("not an inventory")?;
        // Commands run over ssh start in the login's home: `~/x` is `x`.
        if let Some(rest) = inv.remote_dir.strip_prefix("~/") {
            inv.remote_dir = rest.to_string();
        }
        inv.check()?;
        Ok(inv)
    }

    fn check(&self) -> anyhow::Result<()> {
        if self.version != INVENTORY_VERSION {
            bail!(
                "version {}: this bftbench reads version {INVENTORY_VERSION}",
                self.version
            );
        }
        for (role, hosts) in [("replicas", &self.replicas), ("clients", &self.clients)] {
            if hosts.is_empty() || hosts.len() > HOSTS_MAX {
                bail!("`{role}` must list 1 to {HOSTS_MAX} hosts");
            }
        }
        let mut names = BTreeSet::new();
        for h in self.replicas.iter().chain(&self.clients) {
            if !safe_word(&h.name) || h.name.contains('/') || h.name.starts_with('.') {
                bail!("host name `{}`: use letters, digits, `-` and `_`", h.name);
            }
            if !names.insert(&h.name) {
                bail!("host name `{}` appears twice", h.name);
            }
            if h.ssh_host.is_empty() || h.ssh_host.starts_with('-') || h.address.is_empty() {
                bail!("host `{}`: ssh_host and address must be set", h.name);
            }
        }
        if !safe_word(&self.remote_dir)
            || self.remote_dir.contains("..")
            || self.remote_dir.contains('~')
        {
            bail!(
                "remote_dir `{}`: use a plain path (letters, digits, `-_./`, a leading `~/`)",
                self.remote_dir
            );
        }
        if self.replica_port == self.kv_port {
            bail!("replica_port and kv_port are both {}", self.kv_port);
        }
        Ok(())
    }

    /// Where replica `i` of `n` runs: hosts are used round-robin, so n may
    /// exceed the replica hosts (several replicas per host, each on its own
    /// ports).
    fn place(&self, i: usize) -> (&Host, u16) {
        let h = self.replicas.len();
        (&self.replicas[i % h], (i / h) as u16)
    }

    /// Refuses port ranges that overlap or overflow for `n` replicas.
    fn check_ports(&self, n: usize) -> anyhow::Result<()> {
        let per_host = n.div_ceil(self.replicas.len()) as u32;
        let (r, k) = (self.replica_port as u32, self.kv_port as u32);
        if r.max(k) + per_host > 65_536 {
            bail!("{per_host} replicas per host: ports past 65535");
        }
        if r < k + per_host && k < r + per_host {
            bail!(
                "{per_host} replicas per host use ports {r}.. and KV servers {k}..: the ranges overlap"
            );
        }
        Ok(())
    }
}

/// `s` as one single-quoted POSIX shell word.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A path on a remote host, as the remote shell should see it: relative
/// paths are under the login's home.
fn remote_path(p: &str) -> String {
    if p.starts_with('/') {
        shell_quote(p)
    } else {
        format!("\"$HOME\"/{}", shell_quote(p))
    }
}

pub struct Ssh {
    inv: Inventory,
    binary: PathBuf,
    /// The binary's name on the hosts: `bftbench-<first 16 hex of SHA-256>`.
    binary_name: String,
    /// Hosts that already hold the binary.
    installed: BTreeSet<String>,
}

impl Ssh {
    /// Reads the inventory; `binary` is what the hosts run (default: this
    /// executable).
    pub fn new(inventory: &Path, binary: Option<PathBuf>) -> anyhow::Result<Ssh> {
        let inv = Inventory::load(inventory)?;
        let binary = match binary {
            Some(b) => b,
            None => std::env::current_exe().context("locating the bftbench binary")?,
        };
        let bytes = std::fs::read(&binary)
            .with_context(|| format!("reading the binary {}", binary.display()))?;
        let digest = bft_net::cluster::hex(&<sha2::Sha256 as sha2::Digest>::digest(&bytes));
        Ok(Ssh {
            inv,
            binary,
            binary_name: format!("bftbench-{}", &digest[..16]),
            installed: BTreeSet::new(),
        })
    }

    /// `ssh [options] [user@]host`, without the remote command.
    fn ssh(&self, host: &Host) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args(["-T", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"])
            .args(["-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3"]);
        if let Some(port) = host.ssh_port.or(self.inv.ssh_port) {
            cmd.arg("-p").arg(port.to_string());
        }
        cmd.args(&self.inv.ssh_options);
        match &self.inv.ssh_user {
            Some(u) => cmd.arg(format!("{u}@{}", host.ssh_host)),
            None => cmd.arg(&host.ssh_host),
        };
        cmd
    }

    /// Runs `script` on `host` to completion, `input` as its stdin; returns
    /// whether it exited 0. A failure to run ssh at all is an error.
    fn exec(&self, host: &Host, script: &str, input: Option<&Path>) -> anyhow::Result<bool> {
        let mut cmd = self.ssh(host);
        cmd.arg(script).stdout(Stdio::null()).stderr(Stdio::piped());
        cmd.stdin(match input {
            Some(p) => Stdio::from(
                std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?,
            ),
            None => Stdio::null(),
        });
        let out = cmd
            .output()
            .with_context(|| format!("running ssh to {} (is ssh installed?)", host.name))?;
        if out.status.code() == Some(255) {
            bail!(
                "ssh to {} ({}) failed: {}",
                host.name,
                host.ssh_host,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(out.status.success())
    }

    fn must_exec(&self, host: &Host, script: &str, input: Option<&Path>) -> anyhow::Result<()> {
        if !self.exec(host, script, input)? {
            bail!("on {}: `{script}` failed", host.name);
        }
        Ok(())
    }

    fn remote_binary(&self) -> String {
        format!("{}/bin/{}", self.inv.remote_dir, self.binary_name)
    }

    /// Copies the binary to `host` unless it is already there.
    fn install(&mut self, host: &Host) -> anyhow::Result<()> {
        if self.installed.contains(&host.name) {
            return Ok(());
        }
        let bin = remote_path(&self.remote_binary());
        if !self.exec(host, &format!("test -x {bin}"), None)? {
            let dir = remote_path(&format!("{}/bin", self.inv.remote_dir));
            let tmp = format!("{bin}.$$");
            let script =
                format!("mkdir -p {dir} && cat > {tmp} && chmod 755 {tmp} && mv -f {tmp} {bin}");
            self.must_exec(host, &script, Some(&self.binary))
                .context("copying the binary")?;
        }
        self.installed.insert(host.name.clone());
        Ok(())
    }

    /// Copies `files` (local path, remote name) into the run folder on
    /// `host`, readable by the login user only.
    fn push(&self, host: &Host, dir: &str, files: &[(PathBuf, &str)]) -> anyhow::Result<()> {
        for (local, name) in files {
            let script = format!(
                "umask 077 && mkdir -p {d} && cat > {d}/{n}",
                d = remote_path(dir),
                n = shell_quote(name)
            );
            self.must_exec(host, &script, Some(local))
                .with_context(|| format!("copying {name} to {}", host.name))?;
        }
        Ok(())
    }

    /// `ssh host exec DIR/bftbench ARGS` as a fleet member.
    #[allow(clippy::too_many_arguments)]
    fn spawn(
        &self,
        fleet: &mut Fleet,
        host: &Host,
        dir: &str,
        role: Role,
        label: &str,
        args: &[String],
        log: &std::path::Path,
    ) -> anyhow::Result<usize> {
        let mut script = format!("exec {}/bftbench", remote_path(dir));
        for a in args {
            script.push(' ');
            script.push_str(&shell_quote(a));
        }
        let mut cmd = self.ssh(host);
        cmd.arg(script);
        fleet.spawn(role, &format!("{label} on {}", host.name), cmd, log)
    }
}

/// The run's folders on its hosts; dropping it kills what is left of the
/// run there and removes the folders (keys included).
struct RemoteRun<'a> {
    ssh: &'a Ssh,
    /// `remote_dir/runs/<run>`; host `h` uses `<that>/<h>`.
    root: String,
    hosts: Vec<Host>,
}

impl Drop for RemoteRun<'_> {
    fn drop(&mut self) {
        for h in &self.hosts {
            let dir = format!("{}/{}", self.root, h.name);
            // Every process of the run was started as `<dir>/bftbench`; the
            // pattern's `[h]` keeps pkill from matching its own shell.
            let pattern = format!("{dir}/bftbenc[h]");
            let script = format!(
                "pkill -KILL -f -- {p} ; rm -rf {d}; rmdir {root} 2>/dev/null; true",
                p = shell_quote(&pattern),
                d = remote_path(&dir),
                root = remote_path(&self.root)
            );
            if let Err(e) = self.ssh.exec(h, &script, None) {
                eprintln!("warning: cleaning up on {}: {e:#}", h.name);
            }
        }
    }
}

/// The arguments of the client on the client host.
fn client_args(spec: &RunSpec, dir: &str) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "client".into(),
        "--cluster".into(),
        format!("{dir}/cluster.toml"),
        "--keys".into(),
        format!("{dir}/clients.key"),
        "--workload".into(),
        format!("{dir}/workload.properties"),
        "--threads".into(),
        spec.clients.to_string(),
        "--duration".into(),
        format!("{}ms", spec.duration.as_millis()),
        "--warmup".into(),
        format!("{}ms", spec.warmup.as_millis()),
        "--seed".into(),
        "1".into(),
        "--load-first".into(),
        "--control-stdio".into(),
    ];
    if let Some(t) = spec.target {
        a.extend(["--target".into(), t.to_string()]);
    }
    if spec.signed {
        a.push("--signed".into());
    }
    if spec.full_replies {
        a.push("--full-replies".into());
    }
    a
}

/// The run's workload as a YCSB property file, for the client host.
fn write_properties(spec: &RunSpec) -> anyhow::Result<PathBuf> {
    let path = spec.dir.join("workload.properties");
    let text: String = spec
        .props
        .entries()
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect();
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Replicas, KV servers and the client of one run, started on their hosts.
struct Started {
    fleet: Fleet,
    client: usize,
}

impl Ssh {
    /// Copies each host its files (the cluster file, only its own replicas'
    /// keys; the client host the client keys and workload) and links the
    /// binary into its run folder, before any process starts.
    fn upload(&self, spec: &RunSpec, root: &str) -> anyhow::Result<()> {
        let props = write_properties(spec)?;
        let client_host = &self.inv.clients[0];
        for host in self.hosts_of(spec) {
            let dir = format!("{root}/{}", host.name);
            let mut files = vec![(spec.dir.join("cluster.toml"), "cluster.toml".to_string())];
            for id in (0..spec.n).filter(|&i| self.inv.place(i).0.name == host.name) {
                let key = format!("replica-{id}.key");
                files.push((spec.dir.join(&key), key));
            }
            if host.name == client_host.name {
                files.push((spec.dir.join("clients.key"), "clients.key".into()));
                files.push((props.clone(), "workload.properties".into()));
            }
            let files: Vec<(PathBuf, &str)> =
                files.iter().map(|(p, n)| (p.clone(), n.as_str())).collect();
            self.push(&host, &dir, &files)?;
            // Started through this link, every process of the run names the
            // run folder in its command line, which is how cleanup finds it.
            let link = format!(
                "ln -sf {} {}/bftbench",
                remote_path(&self.remote_binary()),
                remote_path(&dir)
            );
            self.must_exec(&host, &link, None)?;
        }
        Ok(())
    }

    fn start(&self, spec: &RunSpec, root: &str) -> anyhow::Result<Started> {
        self.upload(spec, root)?;
        let client_host = self.inv.clients[0].clone();
        let dir_of = |h: &Host| format!("{root}/{}", h.name);
        let mut fleet = Fleet::default();
        for id in 0..spec.n {
            let (host, slot) = self.inv.place(id);
            let dir = dir_of(host);
            let execution = if spec.remote_execution {
                let ip = if self.inv.kv_on_loopback {
                    "127.0.0.1"
                } else {
                    &host.address
                };
                let kv = format!("{ip}:{}", self.inv.kv_port + slot);
                let log = spec.dir.join(format!("kv-server-{id}.log"));
                let args = ["kv-server", "--listen", &kv, "--control-stdio"].map(String::from);
                self.spawn(
                    &mut fleet,
                    host,
                    &dir,
                    Role::KvServer,
                    "kv-server",
                    &args,
                    &log,
                )?;
                format!("remote={kv}")
            } else {
                "embedded".into()
            };
            let mut args: Vec<String> = ["replica", "--cluster"].map(String::from).into();
            args.push(format!("{dir}/cluster.toml"));
            args.extend(["--id".into(), id.to_string(), "--control-stdio".into()]);
            args.extend(["--execution".into(), execution]);
            args.extend(spec.protocol_args.to_flags());
            let log = spec.dir.join(format!("replica-{id}.log"));
            let label = format!("replica {id}");
            self.spawn(&mut fleet, host, &dir, Role::Replica, &label, &args, &log)?;
        }
        let dir = dir_of(&client_host);
        let log = spec.dir.join("client.log");
        let args = client_args(spec, &dir);
        let client = self.spawn(
            &mut fleet,
            &client_host,
            &dir,
            Role::Client,
            "client",
            &args,
            &log,
        )?;
        Ok(Started { fleet, client })
    }

    fn hosts_of(&self, spec: &RunSpec) -> Vec<Host> {
        let mut names = BTreeSet::new();
        (0..spec.n)
            .map(|i| self.inv.place(i).0)
            .chain(self.inv.clients.first())
            .filter(|h| names.insert(h.name.clone()))
            .cloned()
            .collect()
    }
}

/// Follows the remote client through its run: samples the other processes
/// when it says the measured interval begins and when its report arrives.
fn measure_remote(
    s: &mut Started,
    log: &Path,
) -> anyhow::Result<(LoadReport, Vec<(Role, RoleUsage)>)> {
    let tail = || last_lines(log, 3);
    let line = s
        .fleet
        .read_line(s.client, REPORT_LINE_MAX)
        .with_context(tail)?;
    if line != MEASURING_LINE {
        bail!("the client said `{line}` where `{MEASURING_LINE}` was expected");
    }
    let before = s.fleet.sample()?;
    let line = s
        .fleet
        .read_line(s.client, REPORT_LINE_MAX)
        .with_context(tail)?;
    let after = s.fleet.sample()?;
    let Some(json) = line.strip_prefix(REPORT_PREFIX) else {
        bail!("the client printed `{line}` instead of its report");
    };
    let (report, cb, ca) = WireReport::parse(json)?.into_parts()?;
    let mut usage = usage_between(&before, &after);
    usage.extend(usage_between(
        &vec![(Role::Client, cb)],
        &vec![(Role::Client, ca)],
    ));
    usage.sort_by_key(|(r, _)| *r);
    Ok((report, usage))
}

/// The last `n` lines of a log file, for error messages.
fn last_lines(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(n)..].join(" | ");
    format!("client log {}: {tail}", path.display())
}

impl Deployment for Ssh {
    fn name(&self) -> &'static str {
        "ssh"
    }

    fn run(&mut self, spec: &RunSpec) -> anyhow::Result<RunOutcome> {
        let run = spec
            .dir
            .file_name()
            .map_or("bftbench-run".into(), |n| n.to_string_lossy().into_owned());
        let addrs = (0..spec.n)
            .map(|i| {
                let (h, slot) = self.inv.place(i);
                format!("{}:{}", h.address, self.inv.replica_port + slot)
            })
            .collect();
        self.inv.check_ports(spec.n)?;
        // Real hosts get real keys, never the seeded test keys.
        fresh_cluster(spec, addrs, None)?;
        let hosts = self.hosts_of(spec);
        for h in &hosts {
            self.install(h)?;
        }
        let guard = RemoteRun {
            ssh: self,
            root: format!("{}/runs/{run}", self.inv.remote_dir),
            hosts,
        };
        let measured = self.start(spec, &guard.root).and_then(|mut s| {
            let r = measure_remote(&mut s, &spec.dir.join("client.log"));
            drop(s.fleet); // stop the processes before the guard cleans up
            r
        });
        drop(guard);
        finish(spec, measured)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inventory(extra: &str) -> anyhow::Result<Inventory> {
        let text = format!(
            r#"{{"version": 1, {extra}
                "replicas": [{{"name": "r0", "ssh_host": "h0", "address": "10.0.0.1"}},
                             {{"name": "r1", "ssh_host": "h1", "address": "10.0.0.2"}}],
                "clients": [{{"name": "c0", "ssh_host": "h2", "address": "10.0.0.3"}}]}}"#
        );
        Inventory::parse(&text)
    }

    #[test]
    fn placement_is_round_robin_with_a_port_slot_per_replica_on_a_host() {
        let inv = inventory("").unwrap();
        let placed: Vec<(&str, u16)> = (0..4)
            .map(|i| {
                let (h, slot) = inv.place(i);
                (h.name.as_str(), slot)
            })
            .collect();
        assert_eq!(placed, [("r0", 0), ("r1", 0), ("r0", 1), ("r1", 1)]);
        assert!(
            inv.check_ports(4).is_ok(),
            "7000.. and 7100.. are far apart"
        );
        let close = inventory(r#""replica_port": 7000, "kv_port": 7001,"#).unwrap();
        assert!(close.check_ports(2).is_ok(), "one replica per host fits");
        let err = close.check_ports(4).unwrap_err();
        assert!(format!("{err}").contains("overlap"), "{err}");
    }

    #[test]
    fn unsafe_or_inconsistent_inventories_are_refused() {
        let mut inv = inventory("").unwrap();
        inv.version = 2;
        assert!(format!("{}", inv.check().unwrap_err()).contains("version 2"));
        let mut inv = inventory("").unwrap();
        inv.clients[0].name = "r0".into();
        assert!(format!("{}", inv.check().unwrap_err()).contains("twice"));
        let mut inv = inventory("").unwrap();
        inv.replicas[1].ssh_host = "-oProxyCommand=x".into();
        assert!(
            inv.check().is_err(),
            "an ssh_host must not read as an option"
        );
        assert!(inventory(r#""remote_dir": "a b","#).is_err());
        assert!(inventory(r#""remote_dir": "../x","#).is_err());
        assert!(inventory(r#""remote_dir": "x;rm -rf /","#).is_err());
        assert!(inventory(r#""kv_port": 7000,"#).is_err());
        assert!(
            inventory(r#""frobnicate": 1,"#).is_err(),
            "unknown fields are errors"
        );
        let home = inventory(r#""remote_dir": "~/bench","#).unwrap();
        assert_eq!(
            home.remote_dir, "bench",
            "commands start in the home folder"
        );
        assert_eq!(remote_path("bench/x"), "\"$HOME\"/'bench/x'");
        assert_eq!(remote_path("/opt/b"), "'/opt/b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
