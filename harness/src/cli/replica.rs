//! `bftbench replica`: one BFT replica with the key-value App, from a cluster file.

use super::shared::parse_duration;
use anyhow::{bail, Context};
use bft_core::bare::BareServer;
use bft_core::config::Config;
use bft_core::crypto::KeyedCrypto;
use bft_core::crypto::Peer;
use bft_core::message::ReplicaId;
use bft_core::preverify::PreVerified;
use bft_core::replica::Replica;
use bft_net::bft_wal::{DurableReplica, EmptyLog};
use bft_net::cluster::SigningKey;
use bft_net::cluster::{hex, load_secret, Cluster};
use bft_net::raft_engine::RaftEngine;
use bft_net::remote_app::RemoteApp;
use bft_net::replica_loop::{Engine, ReplicaNode};
use bft_net::verify_pool::{default_threads, BatchVerifier, VERIFY_THREADS_MAX};
use bft_workloads::kv::KvApp;
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Args, Debug, Clone)]
pub struct ProtocolArgs {
    /// Largest batch (requests).
    #[arg(long, default_value_t = 1024)]
    pub batch: usize,
    /// Consensus instances in flight (W).
    #[arg(long, default_value_t = 4)]
    pub pipeline: u64,
    #[arg(long, default_value_t = 128)]
    pub checkpoint_interval: u64,
    /// Request timeout in milliseconds (leader change after two expiries).
    #[arg(long, default_value_t = 1000)]
    pub request_timeout_ms: u64,
    /// Signature-verification worker threads beside the event loop (default:
    /// cores − 2, at most 8; 0 verifies batches on the event loop's thread).
    #[arg(long)]
    pub verify_threads: Option<usize>,
    /// Verify each signature alone inside the core instead of batching a turn's
    /// signatures ahead of it (for measuring what batching buys).
    #[arg(long)]
    pub no_batch_verify: bool,
    /// Socket I/O: `epoll` (mio; a syscall per read and per write) or `uring`
    /// (a turn's reads, and then its writes, as one io_uring submission each).
    #[arg(long, default_value = "epoll", value_parser = ["epoll", "uring"])]
    pub io: String,
    /// Where the durable state lives: `memory` (lost when the process
    /// stops) or `disk`: a write-ahead log beside the cluster file
    /// (`replica-<id>.wal` for BFT: regency, own votes, accepted values,
    /// decisions and the stable checkpoint; `raft-<id>.wal` for Raft: its
    /// log and hard state), fdatasynced once per loop turn before the turn's
    /// frames leave; a restarted replica replays it.
    #[arg(long, default_value = "memory", value_parser = ["memory", "disk"])]
    pub storage: String,
    /// The old name of `--storage disk` (Raft).
    #[arg(long, hide = true)]
    pub raft_disk: bool,
    /// Raft only: snapshot the App every this many log entries and compact
    /// the log behind the previous snapshot (on disk too); a follower behind
    /// the compacted part is sent the snapshot.
    #[arg(long, default_value_t = bft_net::raft_engine::SNAPSHOT_EVERY,
          value_parser = clap::value_parser!(u64).range(1..=bft_net::raft_engine::SNAPSHOT_EVERY_MAX))]
    pub raft_snapshot_every: u64,
}

impl ProtocolArgs {
    pub fn to_flags(&self) -> Vec<String> {
        let mut flags: Vec<String> = vec![
            "--batch".into(),
            self.batch.to_string(),
            "--pipeline".into(),
            self.pipeline.to_string(),
            "--checkpoint-interval".into(),
            self.checkpoint_interval.to_string(),
            "--request-timeout-ms".into(),
            self.request_timeout_ms.to_string(),
        ];
        if let Some(t) = self.verify_threads {
            flags.extend(["--verify-threads".into(), t.to_string()]);
        }
        if self.no_batch_verify {
            flags.push("--no-batch-verify".into());
        }
        if self.io != "epoll" {
            flags.extend(["--io".into(), self.io.clone()]);
        }
        if self.on_disk() {
            flags.extend(["--storage".into(), "disk".into()]);
        }
        if self.raft_snapshot_every != bft_net::raft_engine::SNAPSHOT_EVERY {
            flags.extend([
                "--raft-snapshot-every".into(),
                self.raft_snapshot_every.to_string(),
            ]);
        }
        flags
    }

    /// Whether the durable state is kept in a write-ahead log.
    pub fn on_disk(&self) -> bool {
        self.storage == "disk" || self.raft_disk
    }

    /// The BFT configuration of replica `me` of `n`, validated.
    pub fn config(&self, n: usize, me: ReplicaId) -> anyhow::Result<Config> {
        let mut cfg = Config::new(n, me);
        cfg.batch_max_requests = self.batch;
        cfg.pipeline = self.pipeline;
        cfg.checkpoint_interval = self.checkpoint_interval;
        cfg.request_timeout = bft_core::Span::from_millis(self.request_timeout_ms);
        cfg.view_change_timeout = cfg.request_timeout;
        cfg.state_transfer_timeout = cfg.request_timeout;
        cfg.validate().context("replica configuration")?;
        Ok(cfg)
    }

    /// The replica's crypto and, unless disabled, the batch verifier feeding it.
    fn crypto(
        &self,
        cluster: &Cluster,
        me: ReplicaId,
        secret: SigningKey,
    ) -> anyhow::Result<(KeyedCrypto, Option<BatchVerifier>)> {
        let crypto = cluster.crypto(Peer::Replica(me), secret)?;
        if self.no_batch_verify {
            return Ok((crypto, None));
        }
        let threads = self.verify_threads.unwrap_or_else(default_threads);
        if threads > VERIFY_THREADS_MAX {
            bail!("--verify-threads {threads}: at most {VERIFY_THREADS_MAX}");
        }
        let set = Arc::new(PreVerified::default());
        let verifier = BatchVerifier::new(cluster, set.clone(), threads)
            .context("starting signature-verification threads")?;
        Ok((crypto.with_preverified(set), Some(verifier)))
    }
}

/// Listens on replica `id`'s address and feeds `engine` through the batch verifier, if any.
fn bind<E: Engine>(
    cluster: &Cluster,
    id: ReplicaId,
    engine: E,
    (verifier, io): (Option<BatchVerifier>, &str),
    what: &str,
) -> anyhow::Result<ReplicaNode<E>> {
    let mut node = ReplicaNode::bind(cluster, engine)
        .with_context(|| format!("{what}: cannot listen on {}", cluster.addrs[id as usize]))?;
    if io == "uring" {
        node = node
            .with_uring()
            .with_context(|| format!("{what}: --io uring"))?;
    }
    Ok(match verifier {
        Some(v) => node.with_batch_verifier(v),
        None => node,
    })
}

fn verify_report<E: Engine>(node: &ReplicaNode<E>) -> String {
    node.verifier()
        .map_or("off".into(), |v| format!("{:?}", v.stats))
}

#[derive(Args, Debug)]
pub struct ReplicaArgs {
    #[arg(long)]
    pub cluster: PathBuf,
    #[arg(long)]
    pub id: ReplicaId,
    /// Secret key file (default: replica-<id>.key beside the cluster file).
    #[arg(long)]
    pub key: Option<PathBuf>,
    #[command(flatten)]
    pub protocol: ProtocolArgs,
    /// Test-only (hidden): this replica is Byzantine, its PROPOSEs rewritten
    /// (`stale-leader`, `censoring-leader`; see `bft_harness::adversary`).
    #[arg(long, hide = true)]
    pub adversary_for_tests: Option<String>,
    /// Where the App runs: `embedded` (in this process) or `remote=ADDR` (a `bftbench kv-server`).
    #[arg(long, default_value = "embedded")]
    pub execution: String,
    /// Serve the control channel on stdin/stdout: a `stats` line is answered
    /// with this process's CPU, peak memory and bytes; end of input stops it.
    #[arg(long, alias = "exit-on-stdin-eof")]
    pub control_stdio: bool,
    /// Where this replica keeps what must outlive it: `replica-<id>.started`
    /// (written at its first launch), and with `--storage disk` its log.
    /// Default: the cluster file's folder.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// BFT: this replica ran before, even though its data folder says
    /// otherwise (it was lost): it rejoins without state. A replica whose
    /// `replica-<id>.started` exists does so by itself unless its log has
    /// its state (ARCHITECTURE.md, "Restarts").
    #[arg(long)]
    pub rejoin: bool,
    /// Keep looking up replica names that do not resolve yet for this long
    /// (Kubernetes publishes a pod's name after the pod starts).
    #[arg(long, default_value = "0s")]
    pub resolve_wait: String,
}

/// The App: in-process, or a proxy to a `bftbench kv-server`.
fn app_for(execution: &str) -> anyhow::Result<Box<dyn bft_core::app::App>> {
    if execution == "embedded" {
        return Ok(Box::new(KvApp::new()));
    }
    let Some(addr) = execution.strip_prefix("remote=") else {
        anyhow::bail!("--execution {execution}: expected `embedded` or `remote=ADDR`");
    };
    let addr: std::net::SocketAddr = addr
        .parse()
        .with_context(|| format!("--execution: bad address `{addr}`"))?;
    let app = RemoteApp::connect(addr, std::time::Duration::from_secs(10))
        .with_context(|| format!("--execution: no kv-server at {addr}"))?;
    Ok(Box::new(app))
}

pub fn run(a: ReplicaArgs) -> anyhow::Result<i32> {
    let wait = parse_duration(&a.resolve_wait).context("--resolve-wait")?;
    let cluster = Cluster::load_resolving(&a.cluster, wait)?;
    if a.id as usize >= cluster.n() {
        bail!("--id {}: the cluster has replicas 0..{}", a.id, cluster.n());
    }
    let key = a.key.clone().unwrap_or_else(|| {
        a.cluster
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join(format!("replica-{}.key", a.id))
    });
    let secret = load_secret(&key)?;
    if secret.verifying_key() != cluster.replica_keys[a.id as usize] {
        bail!(
            "--key {}: not the key of replica {} in {}",
            key.display(),
            a.id,
            a.cluster.display()
        );
    }
    let stop = crate::control::serve(a.control_stdio);
    if cluster.file.protocol == "raft" {
        let (crypto, verifier) = a.protocol.crypto(&cluster, a.id, secret)?;
        let seed = std::process::id() as u64; // draws election timeouts
        let (n, app) = (cluster.n(), app_for(&a.execution)?);
        let engine = if a.protocol.on_disk() {
            let wal = data_dir(&a)?.join(format!("raft-{}.wal", a.id));
            RaftEngine::durable(a.id, n, Box::new(crypto), app, seed, &wal)?
        } else {
            RaftEngine::new(a.id, n, Box::new(crypto), app, seed)?
        };
        let engine = engine.snapshot_every(a.protocol.raft_snapshot_every);
        let what = format!("raft replica {}", a.id);
        let mut node = bind(&cluster, a.id, engine, (verifier, &a.protocol.io), &what)?;
        node.run(&stop)?;
        let e = node.engine();
        eprintln!(
            "final: exec={} state={} transfers={}",
            e.applied(),
            hex(&e.state_digest()),
            e.stats().state_transfers_applied
        );
        eprintln!(
            "raft replica {} stopped: executed {} requests; net {:?}; batch verification {}",
            a.id,
            e.stats().requests_executed,
            node.net,
            verify_report(&node)
        );
        return Ok(0);
    }
    if cluster.file.protocol == "bare" {
        let (crypto, verifier) = a.protocol.crypto(&cluster, 0, secret)?;
        let server = BareServer::new(Box::new(crypto), app_for(&a.execution)?);
        let mut node = bind(&cluster, 0, server, (verifier, &a.protocol.io), "server")?;
        node.run(&stop)?;
        let s = node.engine().stats();
        eprintln!(
            "final: exec={} state={} transfers=0",
            s.requests_executed,
            hex(&node.engine().state_digest())
        );
        eprintln!(
            "server stopped: executed {} requests; net {:?}; batch verification {}",
            s.requests_executed,
            node.net,
            verify_report(&node)
        );
        return Ok(0);
    }
    let cfg = a.protocol.config(cluster.n(), a.id)?;
    let (crypto, verifier) = a.protocol.crypto(&cluster, a.id, secret)?;
    // A restarted process draws other state-transfer nonces than its last run.
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let seed = std::process::id() as u64 ^ clock;
    let own_crypto: Box<dyn bft_core::crypto::Crypto + Send> = Box::new(crypto.clone());
    let (crypto, app) = (Box::new(crypto), app_for(&a.execution)?);
    let what = format!("replica {}", a.id);
    let verifier = (verifier, a.protocol.io.as_str());
    let mark = LaunchMark::new(&a, &cluster)?;
    let ran_before = mark.ran_before()? || a.rejoin;
    if a.protocol.on_disk() {
        let wal = data_dir(&a)?.join(format!("replica-{}.wal", a.id));
        // A new run after one whose state was lost: numbered by the clock
        // (peers raise it if an earlier run had a later reading).
        let empty = if ran_before {
            EmptyLog::Rejoin { incarnation: clock }
        } else {
            EmptyLog::Genesis
        };
        let replica = DurableReplica::open(cfg, crypto, app, seed, &wal, empty)
            .with_context(|| format!("{what}: --storage disk"))?;
        if a.rejoin && !replica.replica().is_rejoining() {
            bail!(
                "--rejoin: {} holds this replica's state and it restarts from it; drop --rejoin",
                wal.display()
            );
        }
        if replica.replica().is_rejoining() {
            eprintln!("{what}: ran before and has no state: rejoining without it");
        }
        let mut node = bind(&cluster, a.id, replica, verifier, &what)?;
        mark.write()?;
        node.run(&stop)?;
        report_bft(&node, node.engine().replica(), a.id);
        return Ok(0);
    }
    let replica = if ran_before {
        eprintln!("{what}: ran before with --storage memory: rejoining without state");
        Replica::amnesiac(cfg, crypto, app, seed, bft_core::Time::ZERO, clock)
    } else {
        Replica::new(cfg, crypto, app, seed)
    };
    let replica = replica.context("replica configuration")?;
    if let Some(mode) = &a.adversary_for_tests {
        let mode = crate::adversary::parse(mode)?;
        eprintln!("{what}: Byzantine for a test ({mode:?})");
        let censored = cluster.file.clients.first_id;
        let engine = crate::adversary::ByzantineLeader::new(replica, mode, own_crypto, censored);
        let mut node = bind(&cluster, a.id, engine, verifier, &what)?;
        mark.write()?;
        node.run(&stop)?;
        eprintln!("{what}: rewrote {} PROPOSEs", node.engine().rewritten());
        report_bft(&node, node.engine().replica(), a.id);
        return Ok(0);
    }
    let mut node = bind(&cluster, a.id, replica, verifier, &what)?;
    mark.write()?;
    node.run(&stop)?;
    report_bft(&node, node.engine(), a.id);
    Ok(0)
}

fn data_dir(a: &ReplicaArgs) -> anyhow::Result<PathBuf> {
    let dir = a.data_dir.clone().unwrap_or_else(|| {
        a.cluster
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .to_path_buf()
    });
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("creating the data folder {}", dir.display()))?;
    Ok(dir)
}

/// `replica-<id>.started` in the data folder: this replica ran before in
/// this cluster (the mark names the cluster by its protocol and replica keys,
/// so edited addresses keep it and new keys are another cluster). Written
/// after the replica bound its ports and before it sends anything, so a
/// launch that failed to start does not count.
struct LaunchMark {
    dir: PathBuf,
    path: PathBuf,
    mark: String,
}

impl LaunchMark {
    fn new(a: &ReplicaArgs, cluster: &Cluster) -> anyhow::Result<LaunchMark> {
        let dir = data_dir(a)?;
        let mut parts: Vec<&[u8]> = vec![b"bftbench-cluster", cluster.file.protocol.as_bytes()];
        let keys: Vec<[u8; 32]> = cluster.replica_keys.iter().map(|k| k.to_bytes()).collect();
        parts.extend(keys.iter().map(|k| k.as_slice()));
        Ok(LaunchMark {
            path: dir.join(format!("replica-{}.started", a.id)),
            dir,
            mark: format!("{}\n", hex(&bft_core::crypto::hash_parts(&parts))),
        })
    }

    fn ran_before(&self) -> anyhow::Result<bool> {
        match std::fs::read(&self.path) {
            Ok(m) if m == self.mark.as_bytes() => Ok(true),
            Ok(_) => bail!(
                "{} marks a replica of another cluster (other keys): this data folder is not \
                 this replica's; use another --data-dir, or remove the folder to start afresh",
                self.path.display()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e).with_context(|| format!("reading {}", self.path.display())),
        }
    }

    /// Durably: a temporary file, fsynced, renamed into place, the folder fsynced.
    fn write(&self) -> anyhow::Result<()> {
        let tmp = self.path.with_extension("started.tmp");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            std::io::Write::write_all(&mut f, self.mark.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            std::fs::File::open(&self.dir)?.sync_all()
        };
        write().with_context(|| format!("writing {}", self.path.display()))
    }
}

fn report_bft<E: Engine>(node: &ReplicaNode<E>, r: &Replica, id: ReplicaId) {
    let s = r.stats();
    eprintln!(
        "final: exec={} state={} transfers={} rejoined={} ops={} regency={} struck={} dropped_unsigned={} stale_refused={}",
        r.last_executed(),
        hex(&r.state_digest()),
        s.state_transfers_applied,
        s.rejoined,
        r.executed_total(),
        r.regency(),
        s.clients_struck,
        s.dropped_unsigned,
        s.stale_proposals_refused
    );
    eprintln!(
        "replica {} stopped: executed {} requests in {} instances, regency {}; net {:?}; dropped bad-auth {} undecodable {} unknown-sender {}; batch verification {}",
        id,
        s.requests_executed,
        r.last_executed(),
        r.regency(),
        node.net,
        s.dropped_bad_auth,
        s.dropped_undecodable,
        s.dropped_unknown_sender,
        verify_report(node)
    );
}
