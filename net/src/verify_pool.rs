//! Batch verification of the signatures in a turn's frames, on a worker pool,
//! ahead of the consensus core.
//!
//! Each event-loop turn hands the frames it read to [`BatchVerifier::precheck`]:
//! the signatures they carry are verified together (ed25519-zebra's batch
//! equation, ~2× cheaper per signature than one by one at batch sizes of 64),
//! split across worker threads when there are many, and the triples found
//! valid are recorded in the [`PreVerified`] set the replica's crypto consults.
//! A batch that fails is bisected until the bad signatures are isolated, so an
//! invalid signature costs O(log n) extra batches, never a wrong verdict:
//! under ZIP-215 a batch accepts exactly when every member verifies alone.

use crate::cluster::{Cluster, VerifyingKey};
use bft_core::crypto::{Peer, Signature};
use bft_core::message::ClientId;
use bft_core::preverify::{signature_items, PreVerified, SigItem};
use ed25519_zebra::batch;
use ed25519_zebra::VerificationKeyBytes;
use rand_core::OsRng;
use std::collections::BTreeMap;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Below this many signatures per worker, splitting costs more (a cross-thread
/// wake-up is 2–20 µs here) than it saves.
pub const PARALLEL_CHUNK_MIN: usize = 16;
/// Smaller sets are verified one by one (a batch of one gains nothing).
const SINGLES_BELOW: usize = 2;
/// Worker threads at most.
pub const VERIFY_THREADS_MAX: usize = 64;

/// A default for `--verify-threads`: none on a small machine (the consensus
/// thread batch-verifies itself), up to 8 where cores are plentiful.
pub fn default_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    cores.saturating_sub(2).min(8)
}

/// The public keys signatures are checked against.
#[derive(Clone, Debug)]
pub struct KeyTable {
    replicas: Vec<VerificationKeyBytes>,
    clients: BTreeMap<ClientId, VerificationKeyBytes>,
}

impl KeyTable {
    pub fn new(replicas: &[VerifyingKey], clients: &BTreeMap<ClientId, VerifyingKey>) -> KeyTable {
        KeyTable {
            replicas: replicas.iter().map(|k| k.to_bytes().into()).collect(),
            clients: clients
                .iter()
                .map(|(c, k)| (*c, k.to_bytes().into()))
                .collect(),
        }
    }

    pub fn from_cluster(cluster: &Cluster) -> KeyTable {
        KeyTable::new(&cluster.replica_keys, &cluster.client_keys)
    }

    fn get(&self, p: Peer) -> Option<VerificationKeyBytes> {
        match p {
            Peer::Replica(r) => self.replicas.get(r as usize).copied(),
            Peer::Client(c) => self.clients.get(&c).copied(),
        }
    }
}

/// Verdicts for `items`, each identical to verifying that item alone.
pub fn verify_all(items: &[batch::Item]) -> Vec<bool> {
    let mut out = vec![false; items.len()];
    verify_range(items, &mut out);
    out
}

fn verify_range(items: &[batch::Item], out: &mut [bool]) {
    if items.len() < SINGLES_BELOW {
        for (it, v) in items.iter().zip(out.iter_mut()) {
            *v = it.clone().verify_single().is_ok();
        }
        return;
    }
    let mut b = batch::Verifier::new();
    for it in items {
        b.queue(it.clone());
    }
    if b.verify(OsRng).is_ok() {
        out.fill(true);
        return;
    }
    let mid = items.len() / 2;
    let (lo, hi) = out.split_at_mut(mid);
    verify_range(&items[..mid], lo);
    verify_range(&items[mid..], hi);
}

struct Worker {
    jobs: Option<Sender<Vec<batch::Item>>>,
    results: Receiver<Vec<bool>>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    fn spawn(k: usize) -> std::io::Result<Worker> {
        let (jobs, job_rx) = channel::<Vec<batch::Item>>();
        let (res_tx, results) = channel();
        let thread = std::thread::Builder::new()
            .name(format!("verify-{k}"))
            .spawn(move || {
                for items in job_rx {
                    if res_tx.send(verify_all(&items)).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Worker {
            jobs: Some(jobs),
            results,
            thread: Some(thread),
        })
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.jobs.take(); // closes the channel: the thread's loop ends
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What the verifier did, for the replica's final report.
#[derive(Debug, Default, Clone)]
pub struct VerifyStats {
    pub signatures: u64,
    pub valid: u64,
    pub unknown_signer: u64,
    pub parallel_turns: u64,
}

pub struct BatchVerifier {
    keys: KeyTable,
    n: usize,
    preverified: Arc<PreVerified>,
    workers: Vec<Worker>,
    sig_items: Vec<SigItem>,
    pub stats: VerifyStats,
}

impl BatchVerifier {
    /// `threads` workers beside the calling thread (0: verify on the caller).
    pub fn new(
        cluster: &Cluster,
        preverified: Arc<PreVerified>,
        threads: usize,
    ) -> std::io::Result<BatchVerifier> {
        BatchVerifier::with_keys(KeyTable::from_cluster(cluster), preverified, threads)
    }

    pub fn with_keys(
        keys: KeyTable,
        preverified: Arc<PreVerified>,
        threads: usize,
    ) -> std::io::Result<BatchVerifier> {
        assert!(threads <= VERIFY_THREADS_MAX, "--verify-threads is bounded");
        Ok(BatchVerifier {
            n: keys.replicas.len(),
            keys,
            preverified,
            workers: (0..threads).map(Worker::spawn).collect::<Result<_, _>>()?,
            sig_items: Vec::new(),
            stats: VerifyStats::default(),
        })
    }

    /// Verifies the signatures in `frames` and records the valid ones.
    pub fn precheck<'a>(&mut self, frames: impl Iterator<Item = &'a [u8]>) {
        self.sig_items.clear();
        for f in frames {
            signature_items(f, self.n, &mut self.sig_items);
        }
        let mut items = Vec::with_capacity(self.sig_items.len());
        let mut prints = Vec::with_capacity(self.sig_items.len());
        for it in &self.sig_items {
            let Some(key) = self.keys.get(it.signer) else {
                self.stats.unknown_signer += 1;
                continue; // the core rejects it
            };
            items.push(batch::Item::from((key, zebra_sig(&it.sig), &it.msg)));
            prints.push(it.fingerprint());
        }
        if items.is_empty() {
            return;
        }
        let verdicts = self.verify(items);
        self.stats.signatures += verdicts.len() as u64;
        let valid = prints
            .into_iter()
            .zip(&verdicts)
            .filter_map(|(p, ok)| ok.then_some(p));
        let before = self.preverified.len();
        self.preverified.insert(valid);
        self.stats.valid += (self.preverified.len() - before) as u64;
    }

    /// Forgets this turn's verdicts (call once its frames were handled).
    pub fn end_turn(&self) {
        self.preverified.clear();
    }

    fn verify(&mut self, items: Vec<batch::Item>) -> Vec<bool> {
        let ways = (items.len() / PARALLEL_CHUNK_MIN).min(self.workers.len() + 1);
        if ways <= 1 {
            return verify_all(&items);
        }
        self.stats.parallel_turns += 1;
        let chunks: Vec<&[batch::Item]> = items.chunks(items.len().div_ceil(ways)).collect();
        // Chunk 0 stays on this thread; chunk k goes to worker k-1.
        let sent: Vec<bool> = chunks[1..]
            .iter()
            .zip(&self.workers)
            .map(|(c, w)| w.jobs.as_ref().is_some_and(|j| j.send(c.to_vec()).is_ok()))
            .collect();
        let mut out = verify_all(chunks[0]);
        for (k, chunk) in chunks[1..].iter().enumerate() {
            // A worker that died (it cannot, short of a bug) is replaced by this thread.
            let v = match sent[k] {
                true => self.workers[k].results.recv().ok(),
                false => None,
            };
            out.extend(v.unwrap_or_else(|| verify_all(chunk)));
        }
        out
    }
}

fn zebra_sig(sig: &Signature) -> ed25519_zebra::Signature {
    ed25519_zebra::Signature::from_bytes(&sig.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bft_core::crypto::{signing_key_from_seed, Crypto, KeyedCrypto};
    use bft_core::message::{Message, Replier, Request, RequestAuth};
    use bft_core::wire::encode_frame;
    use curve25519_dalek::{constants::ED25519_BASEPOINT_POINT as B, EdwardsPoint, Scalar};
    use ed25519_dalek::Signer as _;
    use sha2::{Digest as _, Sha512};

    const CLIENTS: u64 = 40;

    fn keys() -> (Vec<VerifyingKey>, BTreeMap<ClientId, VerifyingKey>) {
        let replicas = (0..4)
            .map(|r| signing_key_from_seed(5, Peer::Replica(r)).verifying_key())
            .collect();
        let clients = (0..CLIENTS)
            .map(|c| (c, signing_key_from_seed(5, Peer::Client(c)).verifying_key()))
            .collect();
        (replicas, clients)
    }

    /// A client frame carrying a signed request; `tamper` breaks the signature.
    fn signed_frame(c: ClientId, seq: u64, tamper: bool) -> Vec<u8> {
        let key = signing_key_from_seed(5, Peer::Client(c));
        let op = format!("op-{c}-{seq}").into_bytes();
        let mut sig = key
            .sign(&Request::auth_bytes(c, seq, Replier::All, &op))
            .to_bytes();
        if tamper {
            sig[40] ^= 1;
        }
        let req = Message::Request(Request {
            client: c,
            seq,
            replier: Replier::All,
            op,
            auth: RequestAuth::Signature(bft_core::crypto::Signature(sig)),
        });
        let sim = bft_core::crypto::SimCrypto::new(Peer::Client(c), [0; 32], 4);
        encode_frame(Peer::Client(c), Peer::Replica(0), &req, &sim)
    }

    /// A valid ZIP-215 signature whose R has a small-order component: the
    /// cofactored equation holds, the cofactorless one does not.
    fn mixed_order_signature(msg: &[u8]) -> (VerifyingKey, [u8; 64]) {
        let key = signing_key_from_seed(9, Peer::Client(0));
        let a = key.to_scalar();
        let torsion = curve25519_dalek::constants::EIGHT_TORSION[1];
        let r = Scalar::from_bytes_mod_order([7; 32]);
        let big_r: EdwardsPoint = r * B + torsion;
        let r_bytes = big_r.compress().to_bytes();
        let k = Scalar::from_hash(
            Sha512::new()
                .chain_update(r_bytes)
                .chain_update(key.verifying_key().to_bytes())
                .chain_update(msg),
        );
        let s = r + k * a;
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&r_bytes);
        sig[32..].copy_from_slice(&s.to_bytes());
        (key.verifying_key(), sig)
    }

    #[test]
    fn batch_verdicts_equal_single_verdicts() {
        let (key, edge) = mixed_order_signature(b"edge");
        let vkb: VerificationKeyBytes = key.to_bytes().into();
        let mut items = Vec::new();
        let mut expect = Vec::new();
        for i in 0..70u64 {
            let k = signing_key_from_seed(5, Peer::Client(i % CLIENTS));
            let msg = i.to_le_bytes();
            let mut sig = k.sign(&msg).to_bytes();
            let bad = i % 9 == 4;
            if bad {
                sig[3] ^= 0x10;
            }
            let vk: VerificationKeyBytes = k.verifying_key().to_bytes().into();
            items.push(batch::Item::from((
                vk,
                zebra_sig(&bft_core::crypto::Signature(sig)),
                &msg[..],
            )));
            expect.push(!bad);
        }
        // The mixed-order signature is valid alone and in a batch, alike.
        items.push(batch::Item::from((
            vkb,
            ed25519_zebra::Signature::from_bytes(&edge),
            &b"edge"[..],
        )));
        expect.push(true);
        let singles: Vec<bool> = items
            .iter()
            .map(|i| i.clone().verify_single().is_ok())
            .collect();
        assert_eq!(singles, expect);
        assert_eq!(verify_all(&items), expect);
        assert_eq!(verify_all(&items[60..]), expect[60..]);
    }

    #[test]
    fn mixed_order_signatures_are_why_we_verify_under_zip215() {
        // ed25519-dalek's strict check rejects what its own batch equation
        // (cofactorless, randomised) accepts with probability 1/8 — a verdict
        // that would depend on batching. ZIP-215 accepts it both ways.
        let (key, sig) = mixed_order_signature(b"edge");
        let dalek = ed25519_dalek::Signature::from_bytes(&sig);
        assert!(key.verify_strict(b"edge", &dalek).is_err());
        let crypto = KeyedCrypto::new(
            Peer::Replica(0),
            signing_key_from_seed(1, Peer::Replica(0)),
            vec![key],
            BTreeMap::new(),
        )
        .expect("keys");
        assert!(crypto.verify_replica(0, b"edge", &bft_core::crypto::Signature(sig)));
        assert!(!crypto.verify_replica(0, b"other", &bft_core::crypto::Signature(sig)));
    }

    #[test]
    fn precheck_records_exactly_the_valid_triples_with_and_without_workers() {
        let (replicas, clients) = keys();
        let frames: Vec<Vec<u8>> = (0..100u64)
            .map(|i| signed_frame(i % CLIENTS, i, i % 7 == 3))
            .collect();
        for threads in [0, 3] {
            let set = Arc::new(PreVerified::default());
            let mut v =
                BatchVerifier::with_keys(KeyTable::new(&replicas, &clients), set.clone(), threads)
                    .expect("threads");
            v.precheck(frames.iter().map(Vec::as_slice));
            let crypto = KeyedCrypto::new(
                Peer::Replica(0),
                signing_key_from_seed(5, Peer::Replica(0)),
                replicas.clone(),
                clients.clone(),
            )
            .expect("keys");
            let mut items = Vec::new();
            for f in &frames {
                bft_core::preverify::signature_items(f, 4, &mut items);
            }
            assert_eq!(items.len(), 100);
            for (i, it) in items.iter().enumerate() {
                let valid = crypto.verify_client(i as u64 % CLIENTS, &it.msg, &it.sig);
                assert_eq!(set.contains(&it.fingerprint()), valid, "item {i}");
                assert_eq!(valid, i % 7 != 3);
            }
            assert_eq!(v.stats.signatures, 100);
            assert_eq!(v.stats.valid as usize, set.len());
            assert_eq!(v.stats.parallel_turns > 0, threads > 0);
            v.end_turn();
            assert!(set.is_empty());
        }
    }

    #[test]
    fn the_core_trusts_only_recorded_triples() {
        // Negative control: a forged signature is accepted only if someone
        // records it, which the verifier never does for an invalid one.
        let (replicas, clients) = keys();
        let set = Arc::new(PreVerified::default());
        let crypto = KeyedCrypto::new(
            Peer::Replica(0),
            signing_key_from_seed(5, Peer::Replica(0)),
            replicas,
            clients,
        )
        .expect("keys")
        .with_preverified(set.clone());
        let forged = bft_core::crypto::Signature([1; 64]);
        assert!(!crypto.verify_client(1, b"m", &forged));
        set.insert([bft_core::preverify::fingerprint(
            Peer::Client(1),
            b"m",
            &forged,
        )]);
        assert!(crypto.verify_client(1, b"m", &forged));
        assert!(
            !crypto.verify_client(2, b"m", &forged),
            "bound to the signer"
        );
        assert!(
            !crypto.verify_client(1, b"n", &forged),
            "bound to the message"
        );
    }
}
