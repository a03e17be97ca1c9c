//! Certificates and the leader-change decision rule, as pure functions.
//!
//! Every signature in a certificate is checked against the exact bytes of its
//! (kind, instance, …) so signatures from different instances or kinds can never
//! be combined into one certificate.

use crate::config::Config;
use crate::crypto::{Crypto, Digest};
use crate::message::*;
use std::collections::BTreeMap;
use std::sync::Arc;

/// At least a quorum of signatures from distinct known replicas (ids strictly
/// increasing), each valid over `bytes`.
fn quorum_sigs_valid(
    cfg: &Config,
    crypto: &dyn Crypto,
    sigs: &[(ReplicaId, crate::crypto::Signature)],
    bytes: &[u8],
) -> bool {
    sigs.len() >= cfg.quorum()
        && sigs.windows(2).all(|w| w[0].0 < w[1].0)
        && sigs
            .iter()
            .all(|(id, s)| (*id as usize) < cfg.n && crypto.verify_replica(*id, bytes, s))
}

pub fn write_cert_valid(cfg: &Config, crypto: &dyn Crypto, c: &WriteCert) -> bool {
    quorum_sigs_valid(
        cfg,
        crypto,
        &c.sigs,
        &WriteCert::sign_bytes(c.regency, c.instance, &c.digest),
    )
}

/// Genesis (instance 0, no signatures) or 2f+1 signatures at a checkpoint instance.
pub fn checkpoint_cert_valid(cfg: &Config, crypto: &dyn Crypto, c: &CheckpointCert) -> bool {
    if c.instance == 0 {
        return c.sigs.is_empty();
    }
    c.instance % cfg.checkpoint_interval == 0
        && quorum_sigs_valid(
            cfg,
            crypto,
            &c.sigs,
            &CheckpointCert::sign_bytes(c.instance, &c.digest),
        )
}

pub fn stop_data_valid(cfg: &Config, crypto: &dyn Crypto, sd: &StopData) -> bool {
    let low = sd.checkpoint.instance;
    let high = low.saturating_add(cfg.log_window());
    let entries_ok = sd
        .prepared
        .windows(2)
        .all(|w| w[0].instance < w[1].instance)
        && sd
            .prepared
            .iter()
            .all(|c| c.instance > low && c.instance <= high && c.regency < sd.regency);
    (sd.from as usize) < cfg.n
        && entries_ok
        && crypto.verify_replica(sd.from, &sd.sign_bytes(), &sd.sig)
        && checkpoint_cert_valid(cfg, crypto, &sd.checkpoint)
        && sd.prepared.iter().all(|c| write_cert_valid(cfg, crypto, c))
}

/// What a new regency starts from: the highest stable checkpoint among the
/// proofs and, for every instance above it up to the highest prepared one, the
/// value to re-propose (a no-op where nothing was prepared).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub checkpoint: CheckpointCert,
    pub entries: Vec<(Instance, Digest, Arc<Batch>)>,
}

impl Plan {
    pub fn last(&self) -> Instance {
        self.entries
            .last()
            .map_or(self.checkpoint.instance, |(i, _, _)| *i)
    }
}

/// Checks a SYNC (a quorum of valid STOPDATA for its regency from distinct
/// replicas, and a batch for every planned digest) and derives the plan every
/// correct replica derives.
///
/// Safety: a value decided at instance i in regency r was prepared by at least
/// f+1 correct replicas, one of which is in any quorum of STOPDATA and reports
/// a certificate of regency ≥ r; no conflicting certificate of a higher regency
/// can exist, so the highest certificate carries the decided value. Two valid
/// SYNCs for one regency can differ only where nothing was decided, and then
/// WRITE quorums decide at most one of them, as for an equivocating PROPOSE.
pub fn sync_plan(cfg: &Config, crypto: &dyn Crypto, sync: &SyncProof) -> Option<Plan> {
    let proofs = &sync.proofs;
    let distinct = proofs.windows(2).all(|w| w[0].from < w[1].from);
    if proofs.len() < cfg.quorum() || !distinct {
        return None;
    }
    if !proofs
        .iter()
        .all(|p| p.regency == sync.regency && stop_data_valid(cfg, crypto, p))
    {
        return None;
    }
    let (checkpoint, digests) = plan_from(proofs);
    let by_digest: BTreeMap<Digest, &Arc<Batch>> =
        sync.batches.iter().map(|b| (b.digest(), b)).collect();
    let noop = Arc::new(Batch::default());
    let noop_digest = noop.digest();
    let entries = digests
        .into_iter()
        .map(|(i, d)| match d {
            None => Some((i, noop_digest, noop.clone())),
            Some(d) => by_digest.get(&d).map(|b| (i, d, Arc::clone(b))),
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Plan {
        checkpoint,
        entries,
    })
}

/// The decision rule alone (inputs already verified): the highest stable
/// checkpoint, then per instance the digest of the highest-regency certificate
/// (`None`: nothing prepared, a no-op).
pub fn plan_from(proofs: &[StopData]) -> (CheckpointCert, Vec<(Instance, Option<Digest>)>) {
    let checkpoint = proofs
        .iter()
        .map(|p| &p.checkpoint)
        .max_by_key(|c| c.instance)
        .expect("a plan needs at least one proof")
        .clone();
    let low = checkpoint.instance;
    let mut best: BTreeMap<Instance, (Regency, Digest)> = BTreeMap::new();
    for c in proofs.iter().flat_map(|p| &p.prepared) {
        if c.instance <= low {
            continue;
        }
        let e = best.entry(c.instance).or_insert((c.regency, c.digest));
        if (c.regency, c.digest) > *e {
            *e = (c.regency, c.digest);
        }
    }
    let last = best.keys().next_back().copied().unwrap_or(low);
    let entries = (low + 1..=last)
        .map(|i| (i, best.get(&i).map(|(_, d)| *d)))
        .collect();
    (checkpoint, entries)
}
