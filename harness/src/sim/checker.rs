//! Oracles over what correct replicas and clients observed.
//!
//! - agreement: no two correct replicas decide different batches at one instance,
//!   nor run different requests of it (what runs depends only on the state);
//! - validity and exactly-once: only submitted requests execute, each at most
//!   once per replica;
//! - equal state digests at equal checkpoint instances;
//! - liveness (checked by the world after the heal): every submitted request completes;
//! - latency, with Byzantine clients: an honest request submitted after the
//!   heal completes within the world's stated bound.

use bft_core::crypto::Digest;
use bft_core::message::{ClientId, Instance, ReplicaId};
use bft_core::time::Span;
use std::collections::{BTreeMap, BTreeSet};

/// The requests one delivery ran, in order.
type Ran = Vec<(ClientId, u64)>;

#[derive(Debug, Default)]
pub struct Checker {
    /// First decision seen per instance: its digest, the replica, what it ran.
    decided: BTreeMap<Instance, (Digest, ReplicaId, Ran)>,
    executed: BTreeMap<ReplicaId, BTreeSet<(ClientId, u64)>>,
    checkpoints: BTreeMap<Instance, (Digest, ReplicaId)>,
    submitted: BTreeSet<(ClientId, u64)>,
    violations: Vec<String>,
    /// Instances delivered by any correct replica (for the >f-crash experiment).
    pub deliveries: u64,
}

/// Violations kept per run; the first ones tell the story.
const VIOLATIONS_MAX: usize = 16;

impl Checker {
    fn violate(&mut self, v: String) {
        if self.violations.len() < VIOLATIONS_MAX {
            self.violations.push(v);
        }
    }

    /// A crashed replica's journal did not rebuild its durable state: a
    /// restart from disk would have forgotten something.
    pub fn journal_incomplete(&mut self, replica: ReplicaId) {
        self.violate(format!(
            "durability: r{replica}'s journal does not rebuild its durable state"
        ));
    }

    pub fn journal_invalid(&mut self, replica: ReplicaId, why: &str) {
        self.violate(format!(
            "durability: r{replica}'s journal does not apply: {why}"
        ));
    }

    pub fn submitted(&mut self, id: (ClientId, u64)) {
        self.submitted.insert(id);
    }

    pub fn on_deliver(
        &mut self,
        replica: ReplicaId,
        instance: Instance,
        digest: Digest,
        executed: &[(ClientId, u64)],
    ) {
        self.deliveries += 1;
        match self.decided.get(&instance) {
            Some((d, first, _)) if *d != digest => {
                let first = *first;
                self.violate(format!(
                    "agreement: instance {instance} decided differently by r{first} and r{replica}"
                ));
            }
            Some((_, first, ran)) if ran.as_slice() != executed => {
                let first = *first;
                self.violate(format!(
                    "execution: r{first} and r{replica} ran different requests of instance {instance}"
                ));
            }
            Some(_) => {}
            None => {
                self.decided
                    .insert(instance, (digest, replica, executed.to_vec()));
            }
        }
        for id in executed {
            if !self.submitted.contains(id) {
                self.violate(format!(
                    "validity: r{replica} executed unsubmitted request {id:?}"
                ));
            }
            if !self.executed.entry(replica).or_default().insert(*id) {
                self.violate(format!("exactly-once: r{replica} executed {id:?} twice"));
            }
        }
    }

    /// A replica that rebuilds its state from scratch (Raft replaying its log
    /// after a restart) executes its requests again, legitimately.
    pub fn forget_executions(&mut self, replica: ReplicaId) {
        self.executed.remove(&replica);
    }

    pub fn on_checkpoint(&mut self, replica: ReplicaId, instance: Instance, digest: Digest) {
        match self.checkpoints.get(&instance) {
            Some((d, first)) if *d != digest => {
                let first = *first;
                self.violate(format!(
                    "state digest: r{first} and r{replica} differ at checkpoint {instance}"
                ));
            }
            Some(_) => {}
            None => {
                self.checkpoints.insert(instance, (digest, replica));
            }
        }
    }

    /// Final states: replicas at the same instance must have the same digest.
    pub fn final_states(&mut self, states: &[(ReplicaId, Instance, Digest)]) {
        let mut at: BTreeMap<Instance, (Digest, ReplicaId)> = BTreeMap::new();
        for (r, i, d) in states {
            match at.get(i) {
                Some((dd, first)) if dd != d => {
                    let first = *first;
                    self.violate(format!(
                        "state digest: r{first} and r{r} differ after instance {i}"
                    ));
                }
                Some(_) => {}
                None => {
                    at.insert(*i, (*d, *r));
                }
            }
        }
    }

    /// Memory high-water marks: the log stays within the watermark window and
    /// pending requests within their bound, whatever peers send.
    pub fn bounds(&mut self, replica: ReplicaId, log_len: usize, log_window: u64, pending: usize) {
        if log_len as u64 > log_window || pending > bft_core::limits::PENDING_REQUESTS_MAX {
            self.violate(format!(
                "bounds: r{replica} holds {log_len} log slots (window {log_window}) and {pending} pending requests"
            ));
        }
    }

    pub fn liveness(&mut self, missing: usize, total: usize) {
        if missing > 0 {
            self.violate(format!(
                "liveness: {missing} of {total} submitted requests incomplete after the heal bound"
            ));
        }
    }

    /// Every honest request submitted after the heal completed within
    /// `bound`, and some did (else the bound was not tested).
    pub fn latency(&mut self, longest: Span, bound: Span, measured: u64) {
        if measured == 0 {
            self.violate("latency: no honest request was made after the heal".into());
        }
        if longest > bound {
            self.violate(format!(
                "latency: an honest request waited {:.0} ms after the heal, beyond the {:.0} ms bound",
                longest.as_millis_f64(),
                bound.as_millis_f64()
            ));
        }
    }

    /// The slow leader's longest term stayed within `bound`.
    pub fn slow_leader(&mut self, longest: Span, bound: Span) {
        if longest > bound {
            self.violate(format!(
                "slow leader: it led for {:.0} ms, beyond the {:.0} ms bound",
                longest.as_millis_f64(),
                bound.as_millis_f64()
            ));
        }
    }

    /// Leader changes after the heal stayed within `bound`.
    pub fn leader_changes(&mut self, changes: u64, bound: u64) {
        if changes > bound {
            self.violate(format!(
                "leader changes: {changes} after the heal, beyond the bound of {bound}"
            ));
        }
    }

    pub fn violations(&self) -> &[String] {
        &self.violations
    }

    pub fn decided_instances(&self) -> usize {
        self.decided.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Negative controls: each oracle must fire on the condition it guards.

    #[test]
    fn agreement_fires_on_conflicting_decisions() {
        let mut c = Checker::default();
        c.on_deliver(0, 1, [1; 32], &[]);
        c.on_deliver(1, 1, [1; 32], &[]);
        assert!(c.violations().is_empty());
        c.on_deliver(2, 1, [2; 32], &[]);
        assert!(c.violations()[0].starts_with("agreement"));
    }

    #[test]
    fn execution_fires_when_one_decision_runs_different_requests() {
        let mut c = Checker::default();
        c.submitted((7, 1));
        c.submitted((7, 2));
        c.on_deliver(0, 1, [1; 32], &[(7, 1)]);
        c.on_deliver(1, 1, [1; 32], &[(7, 1)]);
        assert!(c.violations().is_empty());
        c.on_deliver(2, 1, [1; 32], &[]);
        assert!(c.violations()[0].starts_with("execution"));
    }

    #[test]
    fn validity_and_exactly_once_fire() {
        let mut c = Checker::default();
        c.submitted((7, 1));
        c.on_deliver(0, 1, [1; 32], &[(7, 1)]);
        assert!(c.violations().is_empty());
        c.on_deliver(0, 2, [2; 32], &[(7, 1)]);
        assert!(c.violations()[0].starts_with("exactly-once"));
        c.on_deliver(1, 3, [3; 32], &[(8, 1)]);
        assert!(c.violations()[1].starts_with("validity"));
    }

    #[test]
    fn digest_and_liveness_fire() {
        let mut c = Checker::default();
        c.on_checkpoint(0, 8, [1; 32]);
        c.on_checkpoint(1, 8, [2; 32]);
        c.final_states(&[(0, 9, [1; 32]), (1, 9, [3; 32]), (2, 10, [4; 32])]);
        c.liveness(0, 10);
        assert_eq!(c.violations().len(), 2);
        c.liveness(3, 10);
        assert!(c.violations()[2].starts_with("liveness"));
        c.bounds(0, 16, 16, 10);
        assert_eq!(c.violations().len(), 3);
        c.bounds(0, 17, 16, 10);
        assert!(c.violations()[3].starts_with("bounds"));
    }
}
