//! Certificates and the leader-change decision rule, as pure functions.
//!
//! Every signature in a certificate is checked against the exact bytes of its
//! (kind, instance, …) so signatures from different instances or kinds can never
//! be combined into one certificate. The normal case produces no certificate:
//! a leader change decides from signed STOPDATA reports alone (`choose`).

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

/// A STOPDATA is well formed (reports strictly ascending, inside the log
/// window above its checkpoint, about regencies before its own, each write-set
/// naming a digest once) and signed by its sender.
pub fn stop_data_valid(cfg: &Config, crypto: &dyn Crypto, sd: &StopData) -> bool {
    let low = sd.checkpoint.instance;
    let high = low.saturating_add(cfg.log_window());
    let before = |r: &Regency| *r < sd.regency;
    let report_ok = |rep: &InstanceReport| {
        rep.instance > low
            && rep.instance <= high
            && rep.accepted.as_ref().is_none_or(|(r, _)| before(r))
            && rep.written.len() <= cfg.writeset_max()
            && rep.written.iter().all(|(r, _)| before(r))
            && rep
                .written
                .iter()
                .enumerate()
                .all(|(k, (_, d))| rep.written[..k].iter().all(|(_, e)| e != d))
    };
    let entries_ok = sd.reports.windows(2).all(|w| w[0].instance < w[1].instance)
        && sd.reports.iter().all(report_ok);
    (sd.from as usize) < cfg.n
        && entries_ok
        && crypto.verify_replica(sd.from, &sd.sign_bytes(), &sd.sig)
        && checkpoint_cert_valid(cfg, crypto, &sd.checkpoint)
}

/// What a new regency starts from: the highest stable checkpoint among the
/// proofs and, for every instance above it up to the last one any proof
/// reports, the value to re-propose (a no-op where the instance is Free).
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

/// Checks a SYNC (at least a quorum of valid STOPDATA for its regency from
/// distinct replicas, from which the rule below derives a plan, and a batch
/// for every planned digest) and derives the plan every correct replica
/// derives from it.
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
    let (checkpoint, digests) = plan_from(cfg, proofs)?;
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

/// What the reports of one instance allow a new regency to propose there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// This value may have been decided: it must be proposed again.
    Bound(Digest),
    /// Nothing can have been decided: any value (we use a no-op).
    Free,
    /// These reports cannot tell: the leader waits for more STOPDATA.
    Unsure,
}

/// The rule of Cachin's Byzantine Paxos ("Yet another visit to Paxos", 2009),
/// over the reports of one instance (`None`: the replica reported nothing,
/// i.e. it accepted nothing and wrote nothing there). With q = 2f+1:
/// - **Free** if at least q reports accepted nothing.
/// - **Bound(v)** if some report accepted (ts, v), at least q reports accepted
///   nothing, something before ts, or exactly (ts, v), and more than f
///   reports wrote v in regency ts or later. Among several, the highest
///   (ts, v) wins, so every replica derives the same choice.
///
/// Why it is safe: if v was decided at regency r, at least f+1 correct
/// replicas accepted (≥ r, v) and report it (accepting needs 2f+1 WRITEs, so
/// no correct replica accepts another value from r on). Any q reports include
/// one of them, so fewer than q can report nothing or something before r, and
/// nothing is Free; a value w ≠ v at ts ≥ r would need a correct replica to
/// have written w from r on, which (by induction over regencies: in a synced
/// regency a correct replica writes at or below the plan's last instance only
/// the plan's value, see `Durable::synced_last`) only an equivocating leader
/// at r itself could cause, and then the reports of (≥ r, v) keep (r, w) from
/// having q reports at or below it.
/// Why it is live: write-sets are complete (`Config::writeset_max`), so the
/// reports of all correct replicas are always decisive: the highest value
/// they accepted, (ts, v), was written at ts by f+1 correct replicas, which
/// still report it; no correct replica accepted another value at ts or
/// later, so all of them are at or below it. Faulty reports added to them
/// cannot make them indecisive.
pub fn choose(f: usize, q: usize, reports: &[Option<&InstanceReport>]) -> Choice {
    let accepted: Vec<Option<(Regency, Digest)>> =
        reports.iter().map(|r| r.and_then(|r| r.accepted)).collect();
    let mut candidates: Vec<(Regency, Digest)> = accepted.iter().flatten().copied().collect();
    candidates.sort_unstable();
    candidates.dedup();
    for &(ts, v) in candidates.iter().rev() {
        let at_or_below = accepted
            .iter()
            .filter(|a| a.is_none_or(|(r, d)| r < ts || (r, d) == (ts, v)))
            .count();
        let writers = reports
            .iter()
            .flatten()
            .filter(|rep| rep.written.iter().any(|(r, d)| *d == v && *r >= ts))
            .count();
        if at_or_below >= q && writers > f {
            return Choice::Bound(v);
        }
    }
    if accepted.iter().filter(|a| a.is_none()).count() >= q {
        Choice::Free
    } else {
        Choice::Unsure
    }
}

/// The decision rule over verified STOPDATA: the highest stable checkpoint,
/// then per instance above it up to the last one any proof reports, the
/// bound digest or `None` (a no-op). `None` overall while some instance is
/// `Unsure`. Covering every reported instance, Free ones too, is what keeps
/// write-sets small: a leader's fresh value only goes where no proof
/// reports anything, and (ARCHITECTURE.md, "Leader change") once a value is
/// accepted, every quorum holds a correct replica that reports its instance.
#[allow(clippy::type_complexity)]
pub fn plan_from(
    cfg: &Config,
    proofs: &[StopData],
) -> Option<(CheckpointCert, Vec<(Instance, Option<Digest>)>)> {
    let checkpoint = proofs
        .iter()
        .map(|p| &p.checkpoint)
        .max_by_key(|c| c.instance)?
        .clone();
    let low = checkpoint.instance;
    let mut by_instance: BTreeMap<Instance, Vec<Option<&InstanceReport>>> = BTreeMap::new();
    for (k, p) in proofs.iter().enumerate() {
        for rep in p.reports.iter().filter(|rep| rep.instance > low) {
            let row = by_instance
                .entry(rep.instance)
                .or_insert_with(|| vec![None; proofs.len()]);
            row[k] = Some(rep);
        }
    }
    let mut bound = BTreeMap::new();
    for (i, row) in &by_instance {
        match choose(cfg.f(), cfg.quorum(), row) {
            Choice::Bound(d) => {
                bound.insert(*i, d);
            }
            Choice::Free => {}
            Choice::Unsure => return None,
        }
    }
    let last = by_instance.keys().next_back().copied().unwrap_or(low);
    let entries = (low + 1..=last)
        .map(|i| (i, bound.get(&i).copied()))
        .collect();
    Some((checkpoint, entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: Digest = [1; 32];
    const W: Digest = [2; 32];

    fn report(
        accepted: Option<(Regency, Digest)>,
        written: &[(Regency, Digest)],
    ) -> InstanceReport {
        InstanceReport {
            instance: 1,
            accepted,
            written: written.to_vec(),
        }
    }

    fn choose4(reports: &[&InstanceReport]) -> Choice {
        let rows: Vec<Option<&InstanceReport>> = reports.iter().map(|r| Some(*r)).collect();
        choose(1, 3, &rows)
    }

    #[test]
    fn nothing_accepted_is_free_and_nothing_reported_counts_as_nothing() {
        let wrote = report(None, &[(0, V)]);
        assert_eq!(choose(1, 3, &[None, Some(&wrote), None]), Choice::Free);
    }

    /// v was decided in regency 2: replicas 0 and 1 accepted it, 2 wrote it.
    /// Replica 3 lies that it accepted w in regency 3.
    #[test]
    fn a_liars_higher_claim_neither_binds_nor_frees_and_all_correct_reports_bind_the_decision() {
        let acc = report(Some((2, V)), &[(2, V)]);
        let wrote = report(None, &[(2, V)]);
        let liar = report(Some((3, W)), &[(3, W)]);
        assert_eq!(choose4(&[&acc, &wrote, &liar]), Choice::Unsure);
        assert_eq!(choose4(&[&acc, &acc, &wrote, &liar]), Choice::Bound(V));
        assert_eq!(choose4(&[&acc, &acc, &wrote]), Choice::Bound(V));
        // Silence is not freedom: one acceptor and two reports of nothing.
        assert_eq!(choose(1, 3, &[Some(&acc), None, None]), Choice::Unsure);
        // The control: with a second writer of w, the claim is certified
        // (w may have been decided) and, being highest, binds.
        let wrote_w = report(None, &[(3, W)]);
        assert_eq!(choose4(&[&wrote_w, &wrote, &liar]), Choice::Bound(W));
    }

    /// The leader of regency 2 equivocated: v was decided (0, 1 and the liar
    /// 3 wrote it), while replica 2 wrote w. Replica 3 now claims w.
    #[test]
    fn an_equivocated_value_cannot_displace_the_decided_one() {
        let acc = report(Some((2, V)), &[(2, V)]);
        let wrote_w = report(None, &[(2, W)]);
        let liar = report(Some((2, W)), &[(2, W)]);
        assert_eq!(choose4(&[&acc, &wrote_w, &liar]), Choice::Unsure);
        assert_eq!(choose4(&[&acc, &acc, &wrote_w, &liar]), Choice::Bound(V));
    }

    #[test]
    fn a_plan_covers_every_reported_instance_with_a_no_op_where_free() {
        let cfg = Config::new(4, 0);
        let genesis = CheckpointCert {
            instance: 0,
            digest: [0; 32],
            sigs: vec![],
        };
        let sd = |from, reports: Vec<InstanceReport>| StopData {
            regency: 3,
            from,
            incarnation: 0,
            checkpoint: genesis.clone(),
            reports,
            sig: crate::crypto::Signature([0; 64]),
        };
        // Instance 1 was accepted by all; instance 3 only written by one.
        let at = |instance, rep: InstanceReport| InstanceReport { instance, ..rep };
        let v1 = report(Some((1, V)), &[(1, V)]);
        let proofs = vec![
            sd(0, vec![v1.clone(), at(3, report(None, &[(2, W)]))]),
            sd(1, vec![v1.clone()]),
            sd(2, vec![v1]),
        ];
        let (_, entries) = plan_from(&cfg, &proofs).expect("decisive");
        assert_eq!(entries, vec![(1, Some(V)), (2, None), (3, None)]);
    }

    #[test]
    fn a_value_rewritten_in_a_later_regency_stays_certified() {
        let old = report(Some((1, V)), &[(4, V)]);
        let newer = report(None, &[(4, V)]);
        assert_eq!(choose4(&[&old, &newer, &newer]), Choice::Bound(V));
    }
}
