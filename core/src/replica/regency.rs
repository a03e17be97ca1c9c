//! Leader change (BFT-SMaRt's synchronization phase): STOP, STOPDATA, SYNC.
//!
//! - A replica whose request timer expires twice sends STOP(r+1).
//! - f+1 STOPs above its own target make a replica join (one faulty replica
//!   alone cannot start a leader change).
//! - When 2f+1 replicas want a regency ≥ t, t is installed: each sends its
//!   signed STOPDATA (stable checkpoint; per instance above it, what it
//!   accepted and what it wrote) to leader(t).
//! - leader(t) waits until the STOPDATA it holds (2f+1 or more) decide every
//!   instance (see `verify::choose`; those of all correct replicas always
//!   do, as write-sets are complete) and sends them as SYNC; every replica checks them,
//!   derives the same plan (see `verify::plan_from`) and votes WRITE on it.
//! - Timers back off: each regency that fails to synchronise doubles the next
//!   timeout, up to 2^BACKOFF_EXP_MAX.

use super::verify;
use super::{Mode, Replica};
use crate::crypto::Digest;
use crate::limits::*;
use crate::message::*;
use std::collections::BTreeMap;
use std::sync::Arc;

impl Replica {
    pub(super) fn start_stop(&mut self, target: Regency) {
        // Peers drop STOPs further ahead than this: asking for more only
        // raises the floor reported to rejoiners.
        let target = target.min(self.regency.saturating_add(REGENCY_LOOKAHEAD_MAX));
        if target <= self.regency {
            return;
        }
        let t = self.stop_target.map_or(target, |old| old.max(target));
        self.stop_target = Some(t);
        if t > self.stop_floor {
            // Durable: peers report it to replicas rejoining without state.
            self.stop_floor = t;
            self.record_regency();
        }
        self.broadcast(Message::Stop { regency: t });
    }

    pub(super) fn on_stop(&mut self, s: ReplicaId, t: Regency) {
        if t <= self.regency {
            return;
        }
        if t > self.regency + REGENCY_LOOKAHEAD_MAX {
            self.stats.dropped_out_of_bounds += 1;
            return;
        }
        let e = self.stop_votes.entry(s).or_insert(0);
        *e = (*e).max(t);
        self.check_stops();
    }

    fn targets_above(&self, floor: Regency) -> Vec<Regency> {
        let mut v: Vec<Regency> = self
            .stop_votes
            .values()
            .copied()
            .filter(|t| *t > floor)
            .collect();
        v.sort_unstable_by(|a, b| b.cmp(a));
        v
    }

    fn check_stops(&mut self) {
        let f = self.cfg.f();
        let mine = self.stop_target.unwrap_or(self.regency);
        let above = self.targets_above(mine);
        if above.len() > f {
            self.start_stop(above[f]);
        }
        let q = self.cfg.quorum();
        let installed = self.targets_above(self.regency);
        if installed.len() >= q {
            self.install(installed[q - 1]);
        }
    }

    pub(super) fn install(&mut self, t: Regency) {
        debug_assert!(t > self.regency);
        self.regency = t;
        self.stop_target = None;
        self.record_regency();
        self.mode = Mode::Syncing;
        self.stats.regencies_installed += 1;
        self.stop_votes.retain(|_, v| *v > t);
        self.stop_data.retain(|_, (sd, _)| sd.regency >= t);
        for slot in self.slots.values_mut() {
            slot.prune_before(t);
        }
        self.view_deadline =
            Some(self.now + self.cfg.view_change_timeout.backoff(self.view_failures));
        // The new regency gets a full request timeout once it is synchronised;
        // until then only the view-change timer escalates.
        self.progress_phase = 0;
        self.progress_deadline = None;
        // A rejoining replica's report could omit what it accepted before it
        // lost its state: it sends none (it counts as one of the f).
        if self.may_vote() {
            let (data, batches) = self.build_stop_data(t);
            self.send_replica(self.cfg.leader_of(t), Message::StopData { data, batches });
        }
    }

    fn build_stop_data(&self, t: Regency) -> (StopData, Vec<Arc<Batch>>) {
        let low = self.stable.cert.instance;
        let mut reports = Vec::new();
        let mut batches = Vec::new();
        for (i, slot) in self.slots.range(low + 1..) {
            let accepted = slot.accepted.as_ref().filter(|(r, _, _)| *r < t);
            let written: Vec<(Regency, Digest)> = slot
                .written
                .iter()
                .copied()
                .filter(|(r, _)| *r < t)
                .collect();
            if accepted.is_none() && written.is_empty() {
                continue;
            }
            if let Some((_, _, b)) = accepted {
                batches.push(b.clone());
            }
            reports.push(InstanceReport {
                instance: *i,
                accepted: accepted.map(|(r, d, _)| (*r, *d)),
                written,
            });
        }
        let mut sd = StopData {
            regency: t,
            from: self.cfg.me,
            incarnation: self.incarnation_of(self.cfg.me),
            checkpoint: self.stable.cert.clone(),
            reports,
            sig: crate::crypto::Signature([0; 64]),
        };
        sd.sig = self.crypto.sign(&sd.sign_bytes());
        (sd, batches)
    }

    pub(super) fn on_stop_data(&mut self, s: ReplicaId, sd: StopData, batches: Vec<Arc<Batch>>) {
        let mut accepted = sd.reports.iter().filter_map(|rep| rep.accepted);
        let batches_match = batches
            .iter()
            .all(|b| accepted.next().is_some_and(|(_, d)| b.digest() == d))
            && accepted.next().is_none();
        if sd.from != s || self.cfg.leader_of(sd.regency) != self.cfg.me || !batches_match {
            self.stats.dropped_invalid += 1;
            return;
        }
        if sd.regency < self.regency || sd.regency > self.regency + REGENCY_LOOKAHEAD_MAX {
            self.stats.dropped_out_of_bounds += 1;
            return;
        }
        if !verify::stop_data_valid(&self.cfg, self.crypto.as_ref(), &sd) {
            self.stats.dropped_bad_auth += 1;
            return;
        }
        if !self.is_current(&sd) {
            // A promise of a run that lost its state: nobody keeps it.
            self.stats.dropped_invalid += 1;
            return;
        }
        self.stop_data.insert(s, (sd, batches));
        self.try_sync();
    }

    /// Leader: once the STOPDATA for this regency (at least 2f+1) decide every
    /// instance, send them all as SYNC. Until then, wait for more: with all
    /// correct replicas' STOPDATA the rule decides.
    fn try_sync(&mut self) {
        if self.mode != Mode::Syncing || self.leader() != self.cfg.me {
            return;
        }
        let chosen: Vec<&(StopData, Vec<Arc<Batch>>)> = self
            .stop_data
            .values()
            .filter(|(sd, _)| sd.regency == self.regency)
            .collect();
        if chosen.len() < self.cfg.quorum() {
            return;
        }
        let proofs: Vec<StopData> = chosen.iter().map(|(sd, _)| sd.clone()).collect();
        let Some((_, plan)) = verify::plan_from(&self.cfg, &proofs) else {
            self.stats.sync_waits += 1;
            return;
        };
        let available: BTreeMap<Digest, Arc<Batch>> = chosen
            .iter()
            .flat_map(|(_, b)| b.iter().map(|b| (b.digest(), b.clone())))
            .collect();
        let batches: Vec<Arc<Batch>> = plan
            .iter()
            .filter_map(|(_, d)| d.and_then(|d| available.get(&d).cloned()))
            .collect();
        self.broadcast(Message::Sync(SyncProof {
            regency: self.regency,
            proofs,
            batches,
        }));
    }

    pub(super) fn on_sync(&mut self, s: ReplicaId, sync: SyncProof) {
        if s != self.cfg.leader_of(sync.regency) {
            self.stats.dropped_invalid += 1;
            return;
        }
        self.apply_sync_proof(sync);
    }

    /// Applies a SYNC (from its leader or forwarded in a state reply) if it is
    /// for a regency we have not synchronised yet and its proofs hold.
    pub(super) fn apply_sync_proof(&mut self, sync: SyncProof) -> bool {
        let t = sync.regency;
        let fresh = t > self.regency || (t == self.regency && self.mode == Mode::Syncing);
        if !fresh || t <= self.synced_regency {
            return false;
        }
        if !sync.proofs.iter().all(|p| self.is_current(p)) {
            // Built on a promise of a run that lost its state.
            self.stats.dropped_invalid += 1;
            return false;
        }
        let Some(plan) = verify::sync_plan(&self.cfg, self.crypto.as_ref(), &sync) else {
            self.stats.dropped_bad_auth += 1;
            return false;
        };
        self.apply_sync(t, plan);
        let bytes = super::checkpoint::sync_bytes(&sync);
        self.last_sync = Some((sync, bytes));
        true
    }

    fn apply_sync(&mut self, t: Regency, plan: verify::Plan) {
        if t > self.regency {
            self.stats.regencies_installed += 1;
        }
        self.enter_normal(t);
        self.synced_regency = t;
        self.synced_last = plan.last();
        self.record_regency();
        self.adopt_checkpoint_cert(plan.checkpoint.clone());
        if plan.checkpoint.instance > self.last_executed {
            self.start_state_transfer();
        }
        for (i, d, batch) in &plan.entries {
            self.adopt_planned(t, *i, *d, batch);
        }
        self.strike_stallers();
        self.next_propose = plan.last().saturating_add(1).max(self.last_executed + 1);
        self.pending.requeue();
        self.replay_early_proposals(t);
    }

    fn adopt_planned(&mut self, t: Regency, i: Instance, d: Digest, batch: &Arc<Batch>) {
        if !self.in_window(i) {
            return;
        }
        // An instance we executed is voted on again when the plan names the
        // value we decided: the others may need our votes to decide it (we
        // may be the only correct replica that saw its decision).
        if i <= self.last_executed && self.decided_digest(i) != Some(d) {
            if self.decided_digest(i).is_some() {
                self.stats.plan_conflicts += 1;
            }
            return;
        }
        for req in batch.requests() {
            if self.pending.requests.contains_key(&req.id()) {
                self.pending.in_flight.insert(req.id());
            }
            self.note_ordered(req);
        }
        let slot = self.slots.entry(i).or_default();
        if slot.decided.as_ref().is_some_and(|(dd, _)| *dd != d) {
            self.stats.plan_conflicts += 1;
            return;
        }
        slot.proposal = Some((t, d, batch.clone()));
        slot.planned = true;
        slot.needs_vouching = false; // f+1 replicas wrote it: one correct checked it
        self.vote_write(i);
        self.try_accept(i);
        self.try_decide(i);
    }

    /// Leaves any leader change and works normally in regency `t`.
    pub(super) fn enter_normal(&mut self, t: Regency) {
        self.regency = t;
        self.mode = Mode::Normal;
        if self.stop_target.is_some_and(|st| st <= t) {
            self.stop_target = None;
        }
        self.view_deadline = None;
        self.stop_votes.retain(|_, v| *v > t);
        self.stop_data.retain(|_, (sd, _)| sd.regency > t);
        self.ahead.retain(|_, v| *v > t);
        for slot in self.slots.values_mut() {
            slot.prune_before(t);
        }
        self.pending.in_flight.clear();
        self.pending.requeue();
        self.next_propose = self.last_executed + 1;
        self.timer_base = self.now;
        self.pace.reset();
        self.ordered_seq.clear();
        self.forwarded_through = None;
        self.progress_phase = 0;
        self.progress_deadline = None;
        self.rearm_request_timer();
    }

    /// The new leader did not synchronise in time: ask for the next regency.
    pub(super) fn on_view_timeout(&mut self) {
        self.view_failures = (self.view_failures + 1).min(BACKOFF_EXP_MAX);
        let target = self
            .regency
            .max(self.stop_target.unwrap_or(0))
            .saturating_add(1);
        self.start_stop(target);
        self.start_state_transfer();
        self.view_deadline =
            Some(self.now + self.cfg.view_change_timeout.backoff(self.view_failures));
    }
}
