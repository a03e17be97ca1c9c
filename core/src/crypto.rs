//! Authentication behind one small trait.
//!
//! Two kinds of proof are used, each where it pays:
//! - **MACs** (HMAC-SHA256, one key per pair of nodes) authenticate every link
//!   frame and, as a vector of per-replica MACs, client requests.
//! - **Signatures** appear only where a third party must be convinced:
//!   CHECKPOINT votes (stable checkpoints), STOPDATA (leader change) and,
//!   optionally, client requests. The normal case (PROPOSE, WRITE, ACCEPT)
//!   signs nothing.
//!
//! [`KeyedCrypto`] is the real implementation: ed25519-dalek signs,
//! ed25519-zebra verifies under ZIP-215's rules (the one rule under which
//! single and batch verification agree on every input, so a replica that
//! batch-verifies ahead of the core reaches the verdicts it would alone), and
//! HMAC-SHA256 authenticates links.
//! [`SimCrypto`] keeps the same MACs but replaces ed25519 by an HMAC under a
//! per-signer secret that all simulated nodes know: just as deterministic,
//! ~100× cheaper, and only for the simulator, where every node is ours.

use crate::message::{ClientId, ReplicaId};
use crate::preverify::PreVerified;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use ed25519_zebra::VerificationKey;
use hmac::{Hmac, Mac as _};
use sha2::{Digest as _, Sha256};
use std::sync::Arc;

/// SHA-256 output: batch digests, state digests.
pub type Digest = [u8; DIGEST_BYTES];
pub const DIGEST_BYTES: usize = 32;
/// HMAC-SHA256 tag.
pub type Mac = [u8; 32];
pub const MAC_BYTES: usize = 32;
pub const SIGNATURE_BYTES: usize = 64;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; SIGNATURE_BYTES]);

impl std::fmt::Debug for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sig({:02x}{:02x}..)", self.0[0], self.0[1])
    }
}

/// Who is at the other end of a link.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Peer {
    Replica(ReplicaId),
    Client(ClientId),
}

impl Peer {
    pub(crate) fn key_id(self) -> [u8; 9] {
        let mut out = [0u8; 9];
        match self {
            Peer::Replica(r) => out[1..5].copy_from_slice(&r.to_le_bytes()),
            Peer::Client(c) => {
                out[0] = 1;
                out[1..9].copy_from_slice(&c.to_le_bytes());
            }
        }
        out
    }
}

pub fn hash(bytes: &[u8]) -> Digest {
    Sha256::digest(bytes).into()
}

/// Hashes several parts with length prefixes, so boundaries cannot shift.
pub fn hash_parts(parts: &[&[u8]]) -> Digest {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().into()
}

/// The operations the core needs. One instance belongs to one node ("me").
pub trait Crypto {
    /// Signs with this node's key.
    fn sign(&self, msg: &[u8]) -> Signature;
    /// Verifies a replica's signature. Single and batched verification must
    /// accept exactly the same set (one validity rule on every replica).
    fn verify_replica(&self, signer: ReplicaId, msg: &[u8], sig: &Signature) -> bool;
    fn verify_client(&self, client: ClientId, msg: &[u8], sig: &Signature) -> bool;
    /// MAC with the key this node shares with `peer`.
    fn mac(&self, peer: Peer, msg: &[u8]) -> Mac;
    fn verify_mac(&self, peer: Peer, msg: &[u8], tag: &Mac) -> bool {
        constant_time_eq(&self.mac(peer, msg), tag)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// An HMAC key shared by two nodes: `HMAC(secret, "bftbench-link" ‖ min(a,b) ‖ max(a,b))`.
fn link_key(secret: &[u8; 32], a: Peer, b: Peer) -> HmacSha256 {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let key = hmac(secret, &[b"bftbench-link", &lo.key_id(), &hi.key_id()]);
    HmacSha256::new_from_slice(&key).expect("HMAC takes any key length")
}

fn tag(key: &HmacSha256, msg: &[u8]) -> Mac {
    let mut m = key.clone();
    m.update(msg);
    m.finalize().into_bytes().into()
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("the public key of {0:?} is a low-order point: no shared secret can be derived")]
    LowOrderKey(Peer),
}

/// Real crypto: ed25519 signatures, and HMAC-SHA256 link keys that only the
/// two ends of a link can compute: each pair's secret is the X25519
/// Diffie-Hellman of their static ed25519 keys (converted to Montgomery form),
/// so no third node, Byzantine or not, can forge a link MAC.
#[derive(Clone)]
pub struct KeyedCrypto {
    signing: SigningKey,
    replicas: Vec<Option<VerificationKey>>,
    clients: std::collections::BTreeMap<ClientId, VerificationKey>,
    replica_links: Vec<HmacSha256>,
    client_links: std::collections::BTreeMap<ClientId, HmacSha256>,
    /// Signatures the network layer has already batch-verified this turn.
    preverified: Option<Arc<PreVerified>>,
}

fn zebra_key(key: &VerifyingKey) -> Option<VerificationKey> {
    VerificationKey::try_from(key.to_bytes()).ok()
}

impl KeyedCrypto {
    /// Keys for node `me`. A replica lists every client it serves; a client may
    /// pass no clients.
    pub fn new(
        me: Peer,
        signing: SigningKey,
        replicas: Vec<VerifyingKey>,
        clients: std::collections::BTreeMap<ClientId, VerifyingKey>,
    ) -> Result<KeyedCrypto, CryptoError> {
        let scalar = signing.to_scalar_bytes();
        let derive = |peer: Peer, key: &VerifyingKey| {
            let shared = key.to_montgomery().mul_clamped(scalar).to_bytes();
            if shared == [0u8; 32] {
                return Err(CryptoError::LowOrderKey(peer));
            }
            Ok(link_key(&shared, me, peer))
        };
        let replica_links = replicas
            .iter()
            .enumerate()
            .map(|(r, k)| derive(Peer::Replica(r as ReplicaId), k))
            .collect::<Result<_, _>>()?;
        let client_links = match me {
            Peer::Replica(_) => clients
                .iter()
                .map(|(c, k)| Ok((*c, derive(Peer::Client(*c), k)?)))
                .collect::<Result<_, _>>()?,
            Peer::Client(_) => Default::default(),
        };
        Ok(KeyedCrypto {
            signing,
            replicas: replicas.iter().map(zebra_key).collect(),
            clients: clients
                .iter()
                .filter_map(|(c, k)| Some((*c, zebra_key(k)?)))
                .collect(),
            replica_links,
            client_links,
            preverified: None,
        })
    }

    /// Consults `set` before verifying a signature: an exact (signer, message,
    /// signature) triple found there was verified already (by a batch).
    pub fn with_preverified(mut self, set: Arc<PreVerified>) -> KeyedCrypto {
        self.preverified = Some(set);
        self
    }

    fn key(&self, signer: Peer) -> Option<&VerificationKey> {
        match signer {
            Peer::Replica(r) => self.replicas.get(r as usize).and_then(Option::as_ref),
            Peer::Client(c) => self.clients.get(&c),
        }
    }

    fn verify(&self, signer: Peer, msg: &[u8], sig: &Signature) -> bool {
        if let Some(set) = &self.preverified {
            if set.contains_triple(signer, msg, sig) {
                return true;
            }
        }
        zebra_verify(self.key(signer), msg, sig)
    }

    fn link(&self, peer: Peer) -> Option<&HmacSha256> {
        match peer {
            Peer::Replica(r) => self.replica_links.get(r as usize),
            Peer::Client(c) => self.client_links.get(&c),
        }
    }
}

/// ZIP-215 verification (cofactored equation, canonical `s`).
pub fn zebra_verify(key: Option<&VerificationKey>, msg: &[u8], sig: &Signature) -> bool {
    let sig = ed25519_zebra::Signature::from_bytes(&sig.0);
    key.is_some_and(|k| k.verify(&sig, msg).is_ok())
}

impl Crypto for KeyedCrypto {
    fn sign(&self, msg: &[u8]) -> Signature {
        Signature(self.signing.sign(msg).to_bytes())
    }
    fn verify_replica(&self, signer: ReplicaId, msg: &[u8], sig: &Signature) -> bool {
        self.verify(Peer::Replica(signer), msg, sig)
    }
    fn verify_client(&self, client: ClientId, msg: &[u8], sig: &Signature) -> bool {
        self.verify(Peer::Client(client), msg, sig)
    }
    /// A peer without a key gets an all-zero tag, which `verify_mac` never accepts.
    fn mac(&self, peer: Peer, msg: &[u8]) -> Mac {
        self.link(peer).map_or([0; 32], |k| tag(k, msg))
    }
    fn verify_mac(&self, peer: Peer, msg: &[u8], t: &Mac) -> bool {
        self.link(peer)
            .is_some_and(|k| constant_time_eq(&tag(k, msg), t))
    }
}

/// Simulator crypto: real HMAC links; "signatures" are HMACs under a
/// per-signer secret derived from the simulation's seed.
///
/// Every simulated node can derive every key here. That is sound only because
/// the simulator's adversary (twins, mutations) is written to use its own
/// identity's keys; real deployments use [`KeyedCrypto`].
#[derive(Clone)]
pub struct SimCrypto {
    me: Peer,
    replica_links: Vec<HmacSha256>,
    master: [u8; 32],
}

impl SimCrypto {
    pub fn new(me: Peer, master: [u8; 32], n: usize) -> SimCrypto {
        SimCrypto {
            me,
            replica_links: (0..n as ReplicaId)
                .map(|r| link_key(&master, me, Peer::Replica(r)))
                .collect(),
            master,
        }
    }

    fn sig_for(&self, signer: Peer, msg: &[u8]) -> Signature {
        let a = hmac(&self.master, &[b"sim-sig", &signer.key_id(), msg]);
        let mut out = [0u8; SIGNATURE_BYTES];
        out[..32].copy_from_slice(&a);
        out[32..].copy_from_slice(&hash(&a));
        Signature(out)
    }
}

impl Crypto for SimCrypto {
    fn sign(&self, msg: &[u8]) -> Signature {
        self.sig_for(self.me, msg)
    }
    fn verify_replica(&self, signer: ReplicaId, msg: &[u8], sig: &Signature) -> bool {
        constant_time_eq(&self.sig_for(Peer::Replica(signer), msg).0, &sig.0)
    }
    fn verify_client(&self, client: ClientId, msg: &[u8], sig: &Signature) -> bool {
        constant_time_eq(&self.sig_for(Peer::Client(client), msg).0, &sig.0)
    }
    fn mac(&self, peer: Peer, msg: &[u8]) -> Mac {
        match peer {
            Peer::Replica(r) if (r as usize) < self.replica_links.len() => {
                tag(&self.replica_links[r as usize], msg)
            }
            _ => tag(&link_key(&self.master, self.me, peer), msg),
        }
    }
}

/// Deterministic ed25519 key for tests and `keygen --seed`: never for production keys.
pub fn signing_key_from_seed(seed: u64, who: Peer) -> SigningKey {
    let bytes = hash_parts(&[b"bftbench-test-key", &seed.to_le_bytes(), &who.key_id()]);
    SigningKey::from_bytes(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyed(me: Peer, n: u32) -> KeyedCrypto {
        let reps = (0..n)
            .map(|r| signing_key_from_seed(1, Peer::Replica(r)).verifying_key())
            .collect();
        let mut clients = std::collections::BTreeMap::new();
        clients.insert(9, signing_key_from_seed(1, Peer::Client(9)).verifying_key());
        KeyedCrypto::new(me, signing_key_from_seed(1, me), reps, clients).unwrap()
    }

    #[test]
    fn link_macs_are_symmetric_and_pair_specific() {
        let a = keyed(Peer::Replica(0), 4);
        let b = keyed(Peer::Replica(1), 4);
        let c = keyed(Peer::Replica(2), 4);
        let tag = a.mac(Peer::Replica(1), b"hello");
        assert!(b.verify_mac(Peer::Replica(0), b"hello", &tag));
        assert!(!c.verify_mac(Peer::Replica(0), b"hello", &tag));
        assert!(!b.verify_mac(Peer::Replica(0), b"hellO", &tag));
        let client = keyed(Peer::Client(9), 4);
        let t2 = client.mac(Peer::Replica(2), b"req");
        assert!(c.verify_mac(Peer::Client(9), b"req", &t2));
        assert!(!b.verify_mac(Peer::Client(9), b"req", &t2));
        // Replica 2 cannot forge the 0–1 link: its own keys give other tags.
        let forged = c.mac(Peer::Replica(1), b"hello");
        assert!(!b.verify_mac(Peer::Replica(0), b"hello", &forged));
        // Unknown peers never verify.
        assert!(!b.verify_mac(Peer::Client(77), b"x", &[0; 32]));
    }

    #[test]
    fn ed25519_signatures_verify_only_for_their_signer_and_message() {
        let a = keyed(Peer::Replica(0), 4);
        let b = keyed(Peer::Replica(1), 4);
        let sig = a.sign(b"vote");
        assert!(b.verify_replica(0, b"vote", &sig));
        assert!(!b.verify_replica(1, b"vote", &sig));
        assert!(!b.verify_replica(0, b"vote!", &sig));
        assert!(!b.verify_replica(77, b"vote", &sig));
        let client = keyed(Peer::Client(9), 4);
        assert!(a.verify_client(9, b"op", &client.sign(b"op")));
        assert!(!a.verify_client(8, b"op", &client.sign(b"op")));
    }

    #[test]
    fn sim_signatures_bind_signer_and_message() {
        let a = SimCrypto::new(Peer::Replica(0), [5; 32], 4);
        let b = SimCrypto::new(Peer::Replica(1), [5; 32], 4);
        let sig = a.sign(b"m");
        assert!(b.verify_replica(0, b"m", &sig));
        assert!(!b.verify_replica(1, b"m", &sig));
        assert!(!b.verify_replica(0, b"n", &sig));
    }
}
