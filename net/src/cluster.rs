//! Cluster files (TOML: replicas, addresses, public keys) and key files.
//!
//! `keygen` writes `cluster.toml`, one `replica-<id>.key` per replica and
//! `clients.key`, the secret files with mode 0600. Secrets are never logged.

use bft_core::crypto::{signing_key_from_seed, KeyedCrypto, Peer};
use bft_core::message::{ClientId, ReplicaId};
pub use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {msg}")]
    Invalid { path: PathBuf, msg: String },
    #[error("{path}: replica address `{addr}` does not resolve")]
    Unresolved { path: PathBuf, addr: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ClusterError + '_ {
    move |source| ClusterError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn invalid(path: &Path, msg: impl Into<String>) -> ClusterError {
    ClusterError::Invalid {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReplicaEntry {
    pub id: ReplicaId,
    pub addr: String,
    pub public_key: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClientsEntry {
    /// Client ids are `first_id`, `first_id + 1`, … in key order.
    pub first_id: ClientId,
    pub public_keys: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ClusterFile {
    pub protocol: String,
    pub replica: Vec<ReplicaEntry>,
    pub clients: ClientsEntry,
}

/// A validated cluster: addresses and public keys, ready to build crypto.
#[derive(Clone, Debug)]
pub struct Cluster {
    pub file: ClusterFile,
    pub addrs: Vec<SocketAddr>,
    pub replica_keys: Vec<VerifyingKey>,
    pub client_keys: BTreeMap<ClientId, VerifyingKey>,
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn verifying_key(s: &str) -> Option<VerifyingKey> {
    let b: [u8; 32] = unhex(s)?.try_into().ok()?;
    VerifyingKey::from_bytes(&b).ok()
}

fn secret_from_hex(s: &str) -> Option<SigningKey> {
    let b: [u8; 32] = unhex(s.trim())?.try_into().ok()?;
    Some(SigningKey::from_bytes(&b))
}

/// 32 bytes from the OS (`/dev/urandom`), for real keys.
fn os_random() -> std::io::Result<[u8; 32]> {
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b)
}

fn write_secret(path: &Path, text: &str) -> Result<(), ClusterError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(path))?;
    f.write_all(text.as_bytes()).map_err(io_err(path))
}

#[derive(Clone, Debug)]
pub struct KeygenOptions {
    /// One address per replica; replica i listens on `addrs[i]`.
    pub addrs: Vec<String>,
    /// `bft` (n = 3f+1 replicas) or `bare` (one unreplicated server).
    pub protocol: String,
    pub clients: usize,
    pub first_client_id: ClientId,
    /// Deterministic keys for tests and benchmarks; None draws from the OS.
    pub seed: Option<u64>,
}

/// Writes `cluster.toml` and the secret key files into `dir`.
pub fn keygen(dir: &Path, o: &KeygenOptions) -> Result<ClusterFile, ClusterError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let key = |who: Peer| -> Result<SigningKey, ClusterError> {
        match o.seed {
            Some(s) => Ok(signing_key_from_seed(s, who)),
            None => Ok(SigningKey::from_bytes(
                &os_random().map_err(io_err(Path::new("/dev/urandom")))?,
            )),
        }
    };
    let mut replica = Vec::new();
    for (id, addr) in o.addrs.iter().enumerate() {
        let id = id as ReplicaId;
        let sk = key(Peer::Replica(id))?;
        write_secret(&dir.join(format!("replica-{id}.key")), &hex(&sk.to_bytes()))?;
        replica.push(ReplicaEntry {
            id,
            addr: addr.clone(),
            public_key: hex(sk.verifying_key().as_bytes()),
        });
    }
    let mut secrets = String::new();
    let mut public_keys = Vec::new();
    for c in 0..o.clients as ClientId {
        let sk = key(Peer::Client(o.first_client_id + c))?;
        secrets.push_str(&hex(&sk.to_bytes()));
        secrets.push('\n');
        public_keys.push(hex(sk.verifying_key().as_bytes()));
    }
    write_secret(&dir.join("clients.key"), &secrets)?;
    let file = ClusterFile {
        protocol: o.protocol.clone(),
        replica,
        clients: ClientsEntry {
            first_id: o.first_client_id,
            public_keys,
        },
    };
    let path = dir.join("cluster.toml");
    let text = toml::to_string(&file).map_err(|e| invalid(&path, e.to_string()))?;
    std::fs::write(
        &path,
        format!("# bftbench cluster file (written by `bftbench keygen`)\n{text}"),
    )
    .map_err(io_err(&path))?;
    Ok(file)
}

/// How often names in a cluster file are looked up again while they do not
/// resolve yet (a Kubernetes pod's DNS record appears after the pod starts).
const RESOLVE_RETRY: Duration = Duration::from_millis(500);

/// `host:port` to a socket address: an IP literal directly, a name through
/// the system resolver. `Ok(None)`: a well-formed name that does not resolve
/// (yet); `Err`: malformed.
fn resolve(addr: &str) -> Result<Option<SocketAddr>, String> {
    if let Ok(a) = addr.parse() {
        return Ok(Some(a));
    }
    syntax(addr)?;
    Ok(addr.to_socket_addrs().ok().and_then(|mut it| it.next()))
}

impl ClusterFile {
    /// What can be checked without the network: protocol and replica count,
    /// ids, address syntax, keys.
    pub fn check(&self, path: &Path) -> Result<(), ClusterError> {
        let n = self.replica.len();
        match self.protocol.as_str() {
            "bft" if n < 4 || (n - 1) % 3 != 0 => {
                return Err(invalid(
                    path,
                    format!("{n} replicas: BFT needs n = 3f+1 (4, 7, 10, …)"),
                ))
            }
            "bare" if n != 1 => {
                return Err(invalid(
                    path,
                    format!("{n} servers: bare means exactly one"),
                ))
            }
            "raft" if n < 3 => {
                return Err(invalid(path, format!("{n} replicas: Raft needs n ≥ 3")))
            }
            "bft" | "bare" | "raft" => {}
            p => {
                return Err(invalid(
                    path,
                    format!("protocol `{p}`: expected bft, raft or bare"),
                ))
            }
        }
        for (i, r) in self.replica.iter().enumerate() {
            if r.id as usize != i {
                return Err(invalid(
                    path,
                    format!(
                        "replica ids must be 0..{n} in order; found {} at position {i}",
                        r.id
                    ),
                ));
            }
            if let (Err(_), Err(why)) = (r.addr.parse::<SocketAddr>(), syntax(&r.addr)) {
                return Err(invalid(
                    path,
                    format!("replica {}: bad address ({why})", r.id),
                ));
            }
        }
        Ok(())
    }
}

/// Whether `addr` is a well-formed `name:port` (without looking it up).
fn syntax(addr: &str) -> Result<(), String> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("`{addr}` is not host:port"))?;
    let named = !host.is_empty()
        && host.parse::<std::net::IpAddr>().is_err()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if named && port.parse::<u16>().is_ok() {
        Ok(())
    } else {
        Err(format!("`{addr}` is not host:port"))
    }
}

impl Cluster {
    pub fn load(path: &Path) -> Result<Cluster, ClusterError> {
        Cluster::load_resolving(path, Duration::ZERO)
    }

    /// Loads a cluster file whose addresses may be names, looking them up
    /// until they all resolve or `wait` has passed.
    pub fn load_resolving(path: &Path, wait: Duration) -> Result<Cluster, ClusterError> {
        let text = std::fs::read_to_string(path).map_err(io_err(path))?;
        let file: ClusterFile = toml::from_str(&text).map_err(|e| invalid(path, e.to_string()))?;
        // Only `Unresolved` is retried: a malformed file fails at once.
        let deadline = Instant::now() + wait;
        loop {
            match Cluster::from_file(path, file.clone()) {
                Err(ClusterError::Unresolved { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(RESOLVE_RETRY)
                }
                other => return other,
            }
        }
    }

    pub fn from_file(path: &Path, file: ClusterFile) -> Result<Cluster, ClusterError> {
        file.check(path)?;
        let mut addrs = Vec::new();
        let mut replica_keys = Vec::new();
        for r in &file.replica {
            let addr = resolve(&r.addr)
                .map_err(|why| invalid(path, format!("replica {}: bad address ({why})", r.id)))?
                .ok_or_else(|| ClusterError::Unresolved {
                    path: path.to_path_buf(),
                    addr: r.addr.clone(),
                })?;
            addrs.push(addr);
            let k = verifying_key(&r.public_key)
                .ok_or_else(|| invalid(path, format!("replica {}: bad public key", r.id)))?;
            replica_keys.push(k);
        }
        let mut client_keys = BTreeMap::new();
        for (i, pk) in file.clients.public_keys.iter().enumerate() {
            let k = verifying_key(pk)
                .ok_or_else(|| invalid(path, format!("client key {i}: bad public key")))?;
            client_keys.insert(file.clients.first_id + i as ClientId, k);
        }
        Ok(Cluster {
            file,
            addrs,
            replica_keys,
            client_keys,
        })
    }

    pub fn n(&self) -> usize {
        self.addrs.len()
    }

    pub fn crypto(&self, me: Peer, secret: SigningKey) -> Result<KeyedCrypto, ClusterError> {
        let clients = match me {
            Peer::Replica(_) => self.client_keys.clone(),
            Peer::Client(_) => BTreeMap::new(),
        };
        KeyedCrypto::new(me, secret, self.replica_keys.clone(), clients)
            .map_err(|e| invalid(Path::new("cluster"), e.to_string()))
    }
}

pub fn load_secret(path: &Path) -> Result<SigningKey, ClusterError> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    secret_from_hex(&text).ok_or_else(|| invalid(path, "not a 32-byte hex secret key"))
}

pub fn load_client_secrets(path: &Path) -> Result<Vec<SigningKey>, ClusterError> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            secret_from_hex(l)
                .ok_or_else(|| invalid(path, format!("line {}: not a hex secret key", i + 1)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keygen_writes_a_loadable_cluster_with_private_secrets() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("bftbench-keygen-{}", std::process::id()));
        let o = KeygenOptions {
            addrs: (0..4).map(|i| format!("127.0.0.1:{}", 17000 + i)).collect(),
            protocol: "bft".into(),
            clients: 3,
            first_client_id: 1000,
            seed: None,
        };
        keygen(&dir, &o).unwrap();
        let c = Cluster::load(&dir.join("cluster.toml")).unwrap();
        assert_eq!(c.n(), 4);
        assert_eq!(c.addrs[3].port(), 17003);
        assert_eq!(c.client_keys.len(), 3);
        let sk = load_secret(&dir.join("replica-2.key")).unwrap();
        assert_eq!(sk.verifying_key(), c.replica_keys[2]);
        let mode = std::fs::metadata(dir.join("replica-2.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            load_client_secrets(&dir.join("clients.key")).unwrap().len(),
            3
        );
        let text = std::fs::read_to_string(dir.join("cluster.toml")).unwrap();
        assert!(
            !text.contains(&hex(&sk.to_bytes())),
            "no secret in the cluster file"
        );
        std::fs::write(
            dir.join("bad.toml"),
            text.replace("127.0.0.1:17001", "nowhere"),
        )
        .unwrap();
        let e = Cluster::load(&dir.join("bad.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("bad address (`nowhere` is not host:port)"),
            "{e}"
        );
        // Names resolve through the system resolver; `.invalid` never does.
        std::fs::write(
            dir.join("named.toml"),
            text.replace("127.0.0.1:17001", "localhost:17001"),
        )
        .unwrap();
        let c = Cluster::load(&dir.join("named.toml")).unwrap();
        assert!(c.addrs[1].ip().is_loopback() && c.addrs[1].port() == 17001);
        std::fs::write(
            dir.join("unknown.toml"),
            text.replace("127.0.0.1:17001", "no-such-host.invalid:17001"),
        )
        .unwrap();
        let e = Cluster::load_resolving(&dir.join("unknown.toml"), Duration::from_millis(1));
        assert!(
            matches!(e, Err(ClusterError::Unresolved { ref addr, .. }) if addr == "no-such-host.invalid:17001"),
            "{e:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
