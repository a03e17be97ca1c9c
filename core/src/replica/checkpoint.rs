//! Checkpoints, log truncation and state transfer.
//!
//! Every K instances a replica signs CHECKPOINT(instance, state digest); 2f+1
//! matching signatures make it stable, and the log below it is dropped. A
//! replica that is behind asks every peer for state. It restores a snapshot
//! only under a valid stable-checkpoint certificate (2f+1 replicas vouch for
//! the digest) and only if the snapshot hashes to that digest; it takes a
//! decided batch above the checkpoint only when f+1 replies agree on it.

use super::{split_snapshot, state_digest, Mode, Output, Replica, Stable, Transfer};
use crate::crypto::{Digest, Signature};
use crate::limits::TRANSFER_BACKOFF_EXP_MAX;
use crate::message::*;
use std::collections::BTreeMap;
use std::sync::Arc;

/// How many checkpoint intervals ahead of its stable checkpoint a replica records votes.
const CHECKPOINT_LOOKAHEAD: u64 = 4;
/// A state reply stays this far below the frame bound.
const STATE_REPLY_BYTES_MAX: usize = crate::limits::FRAME_BYTES_MAX - (1 << 20);

pub(super) fn sync_bytes(s: &SyncProof) -> usize {
    let mut w = crate::codec::Writer::new();
    crate::message::encode_message(&mut w, &Message::Sync(s.clone()));
    w.buf.len()
}

impl Replica {
    pub(super) fn take_checkpoint(&mut self, i: Instance) {
        let snapshot = Arc::new(super::encode_snapshot(self.app.as_ref(), &self.clients));
        let d = self.state_digest();
        self.own_checkpoints.insert(i, (d, snapshot));
        self.outputs.push_back(Output::Checkpoint {
            instance: i,
            digest: d,
        });
        let sig = self.crypto.sign(&CheckpointCert::sign_bytes(i, &d));
        self.broadcast(Message::Checkpoint {
            instance: i,
            digest: d,
            sig,
        });
    }

    pub(super) fn on_checkpoint(&mut self, s: ReplicaId, c: Instance, d: Digest, sig: Signature) {
        let k = self.cfg.checkpoint_interval;
        if c <= self.stable.cert.instance {
            return;
        }
        if c % k != 0 || c > self.stable.cert.instance + CHECKPOINT_LOOKAHEAD * k {
            self.note_instance_evidence(s, c);
            self.stats.dropped_out_of_bounds += 1;
            return;
        }
        if !self
            .crypto
            .verify_replica(s, &CheckpointCert::sign_bytes(c, &d), &sig)
        {
            self.stats.dropped_bad_auth += 1;
            return;
        }
        self.checkpoint_votes
            .entry(c)
            .or_default()
            .entry(s)
            .or_insert((d, sig));
        self.try_stabilize(c);
    }

    fn try_stabilize(&mut self, c: Instance) {
        let q = self.cfg.quorum();
        let Some(votes) = self.checkpoint_votes.get(&c) else {
            return;
        };
        let mut by_digest: BTreeMap<Digest, Vec<(ReplicaId, Signature)>> = BTreeMap::new();
        for (id, (d, sig)) in votes {
            by_digest.entry(*d).or_default().push((*id, *sig));
        }
        let Some((d, mut sigs)) = by_digest.into_iter().find(|(_, v)| v.len() >= q) else {
            return;
        };
        sigs.truncate(q);
        let cert = CheckpointCert {
            instance: c,
            digest: d,
            sigs,
        };
        self.adopt_checkpoint_cert(cert);
    }

    /// A valid stable-checkpoint certificate, from our votes or a peer's message:
    /// stabilise our own matching checkpoint, or note that we are behind.
    pub(super) fn adopt_checkpoint_cert(&mut self, cert: CheckpointCert) {
        if cert.instance <= self.stable.cert.instance {
            return;
        }
        match self.own_checkpoints.get(&cert.instance).cloned() {
            Some((own, snapshot)) if own == cert.digest => self.make_stable(cert, snapshot),
            Some(_) => self.stats.checkpoint_mismatches += 1,
            None if cert.instance > self.last_executed => self.note_stable_elsewhere(cert),
            None => {}
        }
    }

    /// Re-sends our votes for checkpoints not yet stable (a lost vote must not
    /// pin the low watermark forever).
    /// Unstable checkpoints' votes, and the stable one's: a peer that lost
    /// every vote for it would otherwise keep its low watermark there.
    pub(super) fn resend_checkpoint_votes(&mut self) {
        let mut own: Vec<(Instance, Digest)> = self
            .own_checkpoints
            .iter()
            .map(|(i, (d, _))| (*i, *d))
            .collect();
        if self.stable.cert.instance > 0 {
            own.push((self.stable.cert.instance, self.stable.cert.digest));
        }
        for (i, d) in own {
            let sig = self.crypto.sign(&CheckpointCert::sign_bytes(i, &d));
            self.broadcast(Message::Checkpoint {
                instance: i,
                digest: d,
                sig,
            });
        }
    }

    fn make_stable(&mut self, cert: CheckpointCert, snapshot: Arc<Vec<u8>>) {
        let c = cert.instance;
        self.stable = Stable { cert, snapshot };
        self.record(|r| super::DurableRecord::Stable(r.stable.clone()));
        self.slots = self.slots.split_off(&(c + 1));
        self.own_checkpoints = self.own_checkpoints.split_off(&(c + 1));
        self.checkpoint_votes = self.checkpoint_votes.split_off(&(c + 1));
        if self.known_stable.as_ref().is_some_and(|k| k.instance <= c) {
            self.known_stable = None;
        }
        debug_assert!(self.slots.len() as u64 <= self.cfg.log_window());
    }

    /// A stable checkpoint we have not reached: if a whole interval behind, fetch state.
    pub(super) fn note_stable_elsewhere(&mut self, cert: CheckpointCert) {
        let c = cert.instance;
        if self.known_stable.as_ref().is_none_or(|k| k.instance < c) {
            self.known_stable = Some(cert);
        }
        if c >= self.last_executed + self.cfg.checkpoint_interval {
            self.start_state_transfer();
        }
    }

    pub(super) fn start_state_transfer(&mut self) {
        self.start_state_transfer_after(None);
    }

    fn start_state_transfer_after(&mut self, prior: Option<u64>) {
        if self.transfer.is_some() {
            return;
        }
        let nonce = self.rng.next_u64();
        let wait = self
            .cfg
            .state_transfer_timeout
            .backoff(self.transfer_failures);
        self.transfer = Some(Transfer {
            nonce,
            prior,
            replies: BTreeMap::new(),
            deadline: self.now + wait,
        });
        self.stats.state_transfers_started += 1;
        for r in 0..self.cfg.n as ReplicaId {
            if r != self.cfg.me {
                self.send_replica(
                    r,
                    Message::StateRequest {
                        nonce,
                        from: self.last_executed,
                        incarnation: self.own_incarnation(),
                    },
                );
            }
        }
    }

    pub(super) fn on_state_request(
        &mut self,
        s: ReplicaId,
        nonce: u64,
        from: Instance,
        incarnation: Incarnation,
    ) {
        // A reply may carry a whole snapshot: answer each peer at most a few
        // times per state-transfer timeout, so a flood cannot amplify.
        let gap = crate::time::Span(self.cfg.state_transfer_timeout.0 / 4);
        if self
            .state_replied
            .get(&s)
            .is_some_and(|t| self.now < *t + gap)
        {
            self.stats.dropped_rate_limited += 1;
            return;
        }
        self.state_replied.insert(s, self.now);
        // Before the reply: the reply tells the requester we know its run.
        if incarnation.replica == s {
            self.note_incarnation(&incarnation);
        }
        let with_snapshot = self.stable.cert.instance > from;
        let base = if with_snapshot {
            self.stable.cert.instance
        } else {
            from
        };
        let snapshot = if with_snapshot {
            self.stable.snapshot.as_ref().clone()
        } else {
            Vec::new()
        };
        // The reply must fit in one frame: snapshot first, then the SYNC, then
        // as much of the decided suffix as fits (the rest comes next round).
        let mut budget = STATE_REPLY_BYTES_MAX.saturating_sub(snapshot.len());
        let sync = self
            .last_sync
            .as_ref()
            .filter(|(s, bytes)| s.regency == self.regency && *bytes <= budget)
            .map(|(s, bytes)| {
                budget -= bytes;
                s.clone()
            });
        // `from` is peer input: an empty range, never an inverted one.
        let first = base.saturating_add(1).min(self.last_executed + 1);
        let mut suffix = Vec::new();
        for (i, slot) in self.slots.range(first..self.last_executed + 1) {
            let Some((_, b)) = &slot.decided else { break };
            let len = b.encoded_len() + 8;
            if len > budget || suffix.len() >= crate::limits::STATE_SUFFIX_MAX {
                break;
            }
            budget -= len;
            suffix.push((*i, b.clone()));
        }
        let reply = StateReply {
            nonce,
            regency: self.regency,
            stop_floor: self.regency.max(self.stop_floor),
            checkpoint: self.stable.cert.clone(),
            snapshot,
            suffix,
            sync,
            incarnations: self.incarnations.values().cloned().collect(),
        };
        self.send_replica(s, Message::StateReply(reply));
    }

    fn state_reply_valid(&self, reply: &StateReply) -> bool {
        let low = reply.checkpoint.instance;
        reply.stop_floor >= reply.regency
            && reply.incarnations.len() <= self.cfg.n
            && reply
                .suffix
                .windows(2)
                .all(|w| w[0].0.checked_add(1) == Some(w[1].0))
            && reply.suffix.first().is_none_or(|(i, _)| *i > low)
            && super::verify::checkpoint_cert_valid(
                &self.cfg,
                self.crypto.as_ref(),
                &reply.checkpoint,
            )
    }

    pub(super) fn on_state_reply(&mut self, s: ReplicaId, reply: StateReply) {
        let Some(t) = self.transfer.as_ref() else {
            return;
        };
        if reply.nonce != t.nonce && Some(reply.nonce) != t.prior {
            return;
        }
        if !self.state_reply_valid(&reply) {
            self.stats.dropped_invalid += 1;
            return;
        }
        if self.note_reported_incarnations(&reply.incarnations) {
            return;
        }
        self.note_rejoin_evidence(s, reply.checkpoint.instance, reply.stop_floor);
        self.adopt_checkpoint_cert(reply.checkpoint.clone());
        if let Some(t) = self.transfer.as_mut() {
            t.replies.insert(s, reply);
        }
        self.apply_transfer();
    }

    fn apply_transfer(&mut self) {
        self.adopt_reported_regency();
        let restored = self.restore_best_checkpoint();
        let before = self.last_executed;
        self.apply_vouched_suffix();
        let done = self
            .transfer
            .as_ref()
            .is_some_and(|t| t.replies.len() + 1 >= self.cfg.n);
        if restored || self.last_executed > before {
            self.stats.state_transfers_applied += 1;
            self.transfer_failures = 0;
        }
        if done {
            self.transfer = None;
        }
    }

    /// Catches up with the regency of the others. A forwarded SYNC is applied
    /// like the leader's own (its proofs carry its validity). Otherwise, if f+1
    /// peers report a higher regency (so at least one correct replica is
    /// there), we install it and wait for its SYNC: a replica never works in a
    /// regency without the SYNC that fixed what came before.
    fn adopt_reported_regency(&mut self) {
        let f = self.cfg.f();
        let Some(t) = &self.transfer else { return };
        let mut syncs: Vec<SyncProof> = t
            .replies
            .values()
            .filter_map(|r| r.sync.clone())
            .filter(|s| s.regency > self.synced_regency && s.regency >= self.regency)
            .collect();
        let mut regs: Vec<Regency> = t.replies.values().map(|r| r.regency).collect();
        syncs.sort_by_key(|s| std::cmp::Reverse(s.regency));
        for sync in syncs {
            if self.apply_sync_proof(sync) {
                return;
            }
        }
        if regs.len() <= f {
            return;
        }
        regs.sort_unstable_by(|a, b| b.cmp(a));
        if regs[f] > self.regency {
            self.install(regs[f]);
        }
    }

    /// Restores the highest certified snapshot above our state whose bytes match its digest.
    fn restore_best_checkpoint(&mut self) -> bool {
        let Some(t) = &self.transfer else {
            return false;
        };
        let mut candidates: Vec<(CheckpointCert, Vec<u8>)> = t
            .replies
            .values()
            .filter(|r| r.checkpoint.instance > self.last_executed && !r.snapshot.is_empty())
            .map(|r| (r.checkpoint.clone(), r.snapshot.clone()))
            .collect();
        candidates.sort_by_key(|c| std::cmp::Reverse(c.0.instance));
        if candidates.is_empty() {
            return false;
        }
        let backup = self.app.snapshot();
        for (cert, snapshot) in candidates {
            if self.try_restore(&cert, &snapshot) {
                self.finish_restore(cert, snapshot);
                return true;
            }
            self.stats.poisoned_state_rejected += 1;
            self.app
                .restore(&backup)
                .expect("an App restores its own snapshot");
        }
        false
    }

    fn try_restore(&mut self, cert: &CheckpointCert, snapshot: &[u8]) -> bool {
        let Some((app, clients)) = split_snapshot(snapshot) else {
            return false;
        };
        if self.app.restore(app).is_err() {
            return false;
        }
        if state_digest(&self.app.digest(), &clients) != cert.digest {
            return false;
        }
        self.clients = clients;
        true
    }

    fn finish_restore(&mut self, cert: CheckpointCert, snapshot: Vec<u8>) {
        let c = cert.instance;
        self.last_executed = c;
        self.stable = Stable {
            cert,
            snapshot: Arc::new(snapshot),
        };
        self.record(|r| super::DurableRecord::Stable(r.stable.clone()));
        self.slots = self.slots.split_off(&(c + 1));
        self.own_checkpoints = self.own_checkpoints.split_off(&(c + 1));
        self.checkpoint_votes = self.checkpoint_votes.split_off(&(c + 1));
        if self.known_stable.as_ref().is_some_and(|k| k.instance <= c) {
            self.known_stable = None;
        }
        let executed: Vec<_> = self
            .pending
            .requests
            .keys()
            .filter(|(cl, seq)| self.clients.last_seq(*cl).is_some_and(|s| s >= *seq))
            .copied()
            .collect();
        for id in executed {
            self.pending.remove(id);
        }
        self.next_propose = self.next_propose.max(c + 1);
        self.progress_phase = 0;
        self.progress_deadline = None;
        self.rearm_request_timer();
    }

    /// Decides instances above our state that f+1 replies report with the same batch.
    fn apply_vouched_suffix(&mut self) {
        let f = self.cfg.f();
        loop {
            let i = self.last_executed + 1;
            if !self.in_window(i) {
                return;
            }
            let Some(t) = &self.transfer else { return };
            let mut votes: BTreeMap<Digest, (usize, Arc<Batch>)> = BTreeMap::new();
            for reply in t.replies.values() {
                let Some(first) = reply.suffix.first().map(|(i, _)| *i) else {
                    continue;
                };
                if let Some((_, b)) = i
                    .checked_sub(first)
                    .and_then(|k| reply.suffix.get(k as usize))
                {
                    votes.entry(b.digest()).or_insert((0, b.clone())).0 += 1;
                }
            }
            let Some((d, (_, batch))) = votes.into_iter().find(|(_, (n, _))| *n > f) else {
                return;
            };
            self.record_decided(i, d, batch);
            self.stats.instances_decided += 1;
            self.execute_ready();
        }
    }

    pub(super) fn on_transfer_timeout(&mut self) {
        let Some(t) = self.transfer.take() else {
            return;
        };
        let prior = Some(t.nonce);
        // No progress in time (a snapshot too large for the link, say): wait
        // longer next time. Progress resets it (`apply_transfer`), replies
        // alone do not: one fast useless reply must not cancel the back-off.
        self.transfer_failures = (self.transfer_failures + 1).min(TRANSFER_BACKOFF_EXP_MAX);
        let lagging = self
            .known_stable
            .as_ref()
            .is_some_and(|k| k.instance > self.last_executed)
            || self.mode == Mode::Syncing
            || self.rejoin.as_ref().is_some_and(|r| r.at.is_none());
        if lagging {
            self.start_state_transfer_after(prior);
        } else {
            self.transfer_failures = 0;
        }
    }
}
