//! Normal case: requests, batching, PROPOSE → WRITE → ACCEPT, in-order execution.

use super::state::Insert;
use super::{Output, Replica};
use crate::crypto::{hash, Digest, Peer};
use crate::limits::*;
use crate::message::*;
use crate::time::{Span, Time};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What a follower makes of a leader's batch (`Replica::review_proposal`).
#[derive(Default)]
struct ProposalReview {
    stale: bool,
    needs_vouching: bool,
    /// Clients whose requests (MACs only) it could not check.
    unverifiable: Vec<ClientId>,
    /// When the request it holds that came last came (the leader cannot
    /// have added more than that one's wait).
    newest_held: Option<Time>,
}

impl Replica {
    pub(super) fn in_window(&self, i: Instance) -> bool {
        let low = self.stable.cert.instance;
        i > low && i <= low + self.cfg.log_window()
    }

    /// An executed instance that this regency's SYNC plan put to the vote
    /// again (see `adopt_planned`): its votes are still counted.
    fn revoting(&self, i: Instance) -> bool {
        self.slots
            .get(&i)
            .is_some_and(|s| s.planned && s.proposal.as_ref().is_some_and(|p| p.0 == self.regency))
    }

    /// Votes are kept for the current regency and the next (a peer may install it first).
    fn vote_regency_ok(&self, r: Regency) -> bool {
        r >= self.regency && r <= self.regency + 1
    }

    /// The one validity rule for a request, the same on every replica.
    pub(super) fn request_is_authentic(&self, req: &Request) -> bool {
        let bytes = req.signed_bytes();
        match &req.auth {
            RequestAuth::Macs(macs) => {
                macs.len() == self.cfg.n
                    && self.crypto.verify_mac(
                        Peer::Client(req.client),
                        &bytes,
                        &macs[self.cfg.me as usize],
                    )
            }
            RequestAuth::Signature(sig) => self.crypto.verify_client(req.client, &bytes, sig),
        }
    }

    /// A request from its client (`from` None) or forwarded by a peer.
    pub(super) fn on_request(&mut self, req: Request, from: Option<ReplicaId>) {
        // No well-formed batch can carry it: held, it would stall every
        // leader (always first in the queue, refused in every PROPOSE).
        if request_encoded_len(&req) + 4 > self.cfg.batch_max_bytes {
            self.stats.dropped_out_of_bounds += 1;
            return;
        }
        let macs_only = matches!(req.auth, RequestAuth::Macs(_));
        if macs_only && self.must_sign.applies(req.client, self.now) {
            self.stats.dropped_unsigned += 1;
            return;
        }
        if !self.request_is_authentic(&req) && !self.vouched_by_forwards(&req, from) {
            self.stats.dropped_bad_auth += 1;
            return;
        }
        let forwarded = from.is_some();
        if !forwarded {
            self.authenticated_client = Some(req.client);
        }
        if let Some(last) = self.clients.last_seq(req.client) {
            if req.seq <= last {
                if req.seq == last && !forwarded {
                    self.resend_cached_reply(req.client);
                }
                return;
            }
        }
        let id = req.id();
        match self.pending.insert(req, self.now) {
            Insert::Added => {}
            Insert::Known => return,
            Insert::Signed => {
                // The leader gets a full timeout with a copy it can check
                // before any STOP for it: counted as arriving at most one
                // timeout ago. An honest client's copy comes well within
                // that (its age is kept); a Byzantine one sent just before
                // two timeouts would leave the leader no time.
                let floor = Time(self.now.0.saturating_sub(self.cfg.request_timeout.0));
                self.pending.hold_back(id, floor);
                if !forwarded {
                    self.forward_signed_copy(id);
                }
                self.rearm_request_timer();
                return; // queued already, if this replica leads
            }
            Insert::Full => {
                self.stats.dropped_pending_full += 1;
                return;
            }
        }
        if self.leader() == self.cfg.me {
            self.pending.queue(id);
        }
    }

    /// A client's signed retransmission of a request already forwarded with
    /// MACs only (which the leader may have found bad): the leader gets the
    /// copy it can check before this replica's STOP (see `on_progress_timeout`).
    fn forward_signed_copy(&mut self, id: (ClientId, u64)) {
        let leader = self.leader();
        if self.progress_phase == 0 || leader == self.cfg.me {
            return;
        }
        if let Some((req, _)) = self.pending.requests.get(&id) {
            let req = req.clone();
            self.send_replica(leader, Message::Request(req));
        }
    }

    /// A follower's reading of a leader's batch: stale if a request ran
    /// here already or comes twice; which requests it cannot check itself
    /// (it holds none with the same signed content, and its MAC entry or
    /// the signature is bad), naming the clients of those with MACs only
    /// (struck if the instance stalls the regency: `strike_stallers`); and
    /// when the request it holds that came last came.
    fn review_proposal(&mut self, batch: &Batch) -> ProposalReview {
        let mut review = ProposalReview::default();
        let reqs = batch.requests();
        // A request held with the same content has not run here (running
        // removes it): the common case costs one lookup per request.
        let mut unheld = Vec::new();
        for (k, r) in reqs.iter().enumerate() {
            match self.pending.requests.get(&r.id()) {
                Some((p, key)) if p.replier == r.replier && p.op == r.op => {
                    let at = key.0;
                    review.newest_held = Some(review.newest_held.map_or(at, |o: Time| o.max(at)));
                }
                _ if self.clients.last_seq(r.client).is_some_and(|l| r.seq <= l) => {
                    review.stale = true;
                    return review;
                }
                _ => unheld.push(k),
            }
        }
        if reqs.len() > 1 {
            let mut ids: Vec<_> = reqs.iter().map(Request::id).collect();
            ids.sort_unstable();
            if ids.windows(2).any(|w| w[0] == w[1]) {
                review.stale = true;
                return review;
            }
        }
        for k in unheld {
            let r = &reqs[k];
            if self.request_is_authentic(r) {
                continue;
            }
            review.needs_vouching = true;
            if matches!(r.auth, RequestAuth::Macs(_)) && !review.unverifiable.contains(&r.client) {
                review.unverifiable.push(r.client);
            }
        }
        review
    }

    /// A follower times how long the leader kept the requests it proposes
    /// (`leader_pace`) and asks for a leader change when that is too long.
    /// Only a PROPOSE made with room to spare counts (its batch under its
    /// request bound and half its byte bound, the pipeline not full as seen
    /// here): a leader working through a queue is busy, not slow. (With one request per batch every batch is
    /// full, and the pace is not timed.)
    fn note_leader_pace(&mut self, i: Instance, batch: &Batch, newest_held: Option<Time>) {
        let Some(at) = newest_held else { return };
        let spare = batch.requests().len() < self.cfg.batch_max_requests
            && batch.encoded_len() <= self.cfg.batch_max_bytes / 2
            && i <= self.last_executed + self.cfg.pipeline;
        if self.cfg.no_pace_for_tests || !spare {
            return;
        }
        let gap = Span(self.now.0.saturating_sub(at.max(self.timer_base).0));
        let slow = self.pace.too_slow(self.now, gap, self.cfg.request_timeout);
        if slow && self.stop_target.is_none() {
            self.stats.slow_leader_stops += 1;
            self.start_stop(self.regency + 1);
        }
    }

    fn strike(&mut self, client: ClientId) {
        if self.cfg.no_strikes_for_tests {
            return;
        }
        let base = Span(self.cfg.request_timeout.0.saturating_mul(STRIKE_TIMEOUTS));
        if self.must_sign.strike(client, self.regency, self.now, base) {
            self.stats.clients_struck += 1;
            self.pending.remove_unsigned_of(client);
        }
    }

    /// A request whose MAC for this replica is bad, forwarded by f+1 distinct
    /// peers (so by a correct one, which authenticated it): taken as theirs.
    /// Otherwise a client could make its requests valid everywhere but at
    /// the leader, and have the followers' request timers depose it.
    fn vouched_by_forwards(&mut self, req: &Request, from: Option<ReplicaId>) -> bool {
        let Some(s) = from else { return false };
        if !matches!(req.auth, RequestAuth::Macs(_)) {
            return false; // a signature is the same check everywhere
        }
        // Only what could still run and is not held already takes a place.
        let last = self.clients.last_seq(req.client).unwrap_or(0);
        if req.seq <= last || self.pending.requests.contains_key(&req.id()) {
            return false;
        }
        let key = (req.client, req.seq, hash(&req.signed_bytes()));
        if self.forwarded.entry(key).or_default().insert(s) {
            self.note_forwarder(s, key);
        }
        let count = self.forwarded.get(&key).map_or(0, |by| by.len());
        if count <= self.cfg.f() {
            return false;
        }
        self.forwarded.remove(&key);
        true
    }

    /// Each peer holds at most its share of `forwarded`; past it, its own
    /// oldest entry goes (another peer's never does, so a flood from one
    /// Byzantine replica cannot push out what correct ones forward).
    fn note_forwarder(&mut self, s: ReplicaId, key: (ClientId, u64, Digest)) {
        let share = FORWARDED_MAX / self.cfg.n;
        let mine = self.forwarded_by.entry(s).or_default();
        mine.push_back(key);
        while mine.len() > share {
            let Some(old) = mine.pop_front() else { break };
            if let Some(by) = self.forwarded.get_mut(&old) {
                by.remove(&s);
                if by.is_empty() {
                    self.forwarded.remove(&old);
                }
            }
        }
    }

    fn resend_cached_reply(&mut self, client: ClientId) {
        let Some((seq, result)) = self.clients.result(client) else {
            // Evicted under the results budget: say so, or the client waits
            // for a result that no replica can send.
            if let Some(seq) = self.clients.last_seq(client) {
                let msg = Message::ReplyDigest(ReplyDigest {
                    client,
                    seq,
                    digest: result_evicted_digest(),
                });
                self.send(Peer::Client(client), &msg);
            }
            return;
        };
        let reply = Message::Reply(Reply {
            client,
            seq,
            result: result.to_vec(),
        });
        self.send(Peer::Client(client), &reply);
    }

    /// Leader: fill free pipeline slots with batches of pending requests.
    pub(super) fn try_propose(&mut self) {
        // A leader proposes in a regency only after its SYNC fixed what came before.
        if self.mode != super::Mode::Normal
            || !self.may_vote()
            || self.leader() != self.cfg.me
            || self.synced_regency != self.regency
            || self.stop_target.is_some()
        {
            return;
        }
        if self.last_executed < self.synced_last {
            // Nor before it ran what the SYNC fixed: what it holds may have
            // run there, and followers refuse a batch of that as stale. If
            // the next instance has nothing to run (its plan entry was out
            // of the window, or it is decided without its batch), fetch it.
            let next = self.slots.get(&(self.last_executed + 1));
            let r = self.regency;
            let stuck = next.is_none_or(|s| {
                s.decided.is_none() && s.proposal.as_ref().is_none_or(|p| p.0 != r)
            });
            if stuck && self.transfer.is_none() {
                self.start_state_transfer();
            }
            return;
        }
        loop {
            let next = self.next_propose.max(self.last_executed + 1);
            if next > self.last_executed + self.cfg.pipeline || !self.in_window(next) {
                return;
            }
            if self
                .slots
                .get(&next)
                .and_then(|s| s.proposal.as_ref())
                .is_some_and(|(r, _, _)| *r == self.regency)
            {
                self.next_propose = next + 1;
                continue;
            }
            let Some(oldest) = self.pending.oldest_unproposed() else {
                return;
            };
            let full = self.pending.unproposed.len() >= self.cfg.batch_max_requests;
            let ready_at = oldest + self.cfg.batch_delay;
            if !full && ready_at > self.now {
                self.batch_deadline = Some(ready_at);
                return;
            }
            // Adaptive batching: with nothing in flight, propose at once (a lone
            // client waits for nothing); with an instance in flight, propose
            // another only once `batch_max / W` requests wait. Each instance costs
            // every replica ~3n messages, so a CPU-bound cluster gets large
            // batches, and a deep queue still fills the pipeline.
            let in_flight = next - 1 - self.last_executed;
            let target = (self.cfg.batch_max_requests as u64 / self.cfg.pipeline).max(1) as usize;
            if in_flight > 0 && self.pending.unproposed.len() < target {
                return;
            }
            let taken = self
                .pending
                .take_batch(self.cfg.batch_max_requests, self.cfg.batch_max_bytes);
            if taken.is_empty() {
                return;
            }
            let requests = self.in_seq_order(taken);
            if requests.is_empty() {
                continue; // all stale, and gone: take the next ones
            }
            self.next_propose = next + 1;
            self.broadcast(Message::Propose {
                regency: self.regency,
                instance: next,
                batch: Arc::new(Batch::new(requests)),
            });
        }
    }

    /// Leader: keeps the requests that can still run, each above its
    /// client's last executed and last ordered number (a Byzantine client
    /// can send its numbers out of order, and a lower one behind a higher
    /// could not run: followers would refuse the batch as stale).
    fn in_seq_order(&mut self, taken: Vec<Request>) -> Vec<Request> {
        let mut keep = Vec::with_capacity(taken.len());
        // Requests held here are above their client's last executed number
        // (refused on arrival otherwise, removed when they run).
        for r in taken {
            let ordered = self.ordered_seq.get(&r.client).copied().unwrap_or(0);
            if r.seq <= ordered {
                self.pending.remove(r.id());
                continue;
            }
            self.note_ordered(&r);
            keep.push(r);
        }
        keep
    }

    pub(super) fn note_ordered(&mut self, r: &Request) {
        if self.ordered_seq.len() >= CLIENTS_MAX && !self.ordered_seq.contains_key(&r.client) {
            // Entries whose numbers ran are the client table's business.
            let clients = &self.clients;
            self.ordered_seq
                .retain(|c, s| clients.last_seq(*c).is_none_or(|l| l < *s));
            if self.ordered_seq.len() >= CLIENTS_MAX {
                return; // as many clients in flight as the table holds
            }
        }
        let e = self.ordered_seq.entry(r.client).or_insert(0);
        *e = (*e).max(r.seq);
    }

    fn batch_is_well_formed(&self, batch: &Batch) -> bool {
        !batch.requests().is_empty()
            && batch.requests().len() <= self.cfg.batch_max_requests
            && batch.encoded_len() <= self.cfg.batch_max_bytes
    }

    pub(super) fn on_propose(&mut self, s: ReplicaId, r: Regency, i: Instance, batch: Arc<Batch>) {
        self.note_regency_evidence(s, r);
        if self.keep_early_proposal(s, r, i, &batch) || !self.proposal_admissible(s, r, i, &batch) {
            return;
        }
        let d = batch.digest();
        // One PROPOSE per (regency, instance) is reviewed and kept; another
        // is equivocation, and reviewing it would let a leader strike any
        // client at no cost while the first one decides.
        if let Some((pr, pd, _)) = self.slots.get(&i).and_then(|s| s.proposal.as_ref()) {
            if *pr == r {
                if *pd != d {
                    self.stats.equivocations_seen += 1;
                }
                return;
            }
        }
        let review = if s == self.cfg.me {
            ProposalReview::default()
        } else {
            self.review_proposal(&batch)
        };
        // A leader orders what has not run: a batch of requests executed
        // already (or one twice) is waste a slow leader could hide behind.
        if review.stale {
            self.stats.stale_proposals_refused += 1;
            return;
        }
        if !review.unverifiable.is_empty() {
            // Only instances in flight are kept (those that ran cannot stall).
            self.deferred_strikes = self.deferred_strikes.split_off(&(self.last_executed + 1));
            if self.deferred_strikes.len() < self.cfg.pipeline as usize {
                self.deferred_strikes
                    .insert(i, (d, review.unverifiable.clone()));
            }
            let msg = Message::Unverifiable {
                regency: r,
                instance: i,
                clients: review.unverifiable,
            };
            self.send_replica(s, msg);
        }
        let slot = self.slots.entry(i).or_default();
        if slot.wrote_other_than(&d) {
            self.stats.fresh_values_declined += 1;
        }
        slot.proposal = Some((r, d, batch.clone()));
        slot.planned = false;
        slot.needs_vouching = review.needs_vouching;
        self.note_leader_pace(i, &batch, review.newest_held);
        self.vote_write(i);
        self.try_accept(i);
        self.try_decide(i);
    }

    /// A PROPOSE from this regency's leader, synchronised, in the window,
    /// above the SYNC plan, and well formed.
    fn proposal_admissible(&mut self, s: ReplicaId, r: Regency, i: Instance, b: &Batch) -> bool {
        let synced = self.mode == super::Mode::Normal && self.synced_regency == r;
        if r != self.regency || !synced || s != self.cfg.leader_of(r) {
            self.stats.dropped_invalid += 1;
            return false;
        }
        if !self.in_window(i) || i <= self.last_executed {
            self.stats.dropped_out_of_bounds += 1;
            return false;
        }
        // The SYNC fixed every instance up to `synced_last`; a leader's PROPOSE
        // there is another value (we may have skipped the plan's, out of window).
        if i <= self.synced_last || !self.batch_is_well_formed(b) {
            self.stats.dropped_invalid += 1;
            return false;
        }
        true
    }

    /// Leader: a follower could not check these clients' requests in our
    /// PROPOSE. f+1 followers saying so about one client include a correct
    /// one; if that instance then stalls the regency, the client is struck
    /// here too (`strike_stallers`), or it would stall each regency this
    /// replica leads with requests only it can check.
    pub(super) fn on_unverifiable(
        &mut self,
        s: ReplicaId,
        r: Regency,
        i: Instance,
        clients: Vec<ClientId>,
    ) {
        let in_flight = i > self.last_executed && i <= self.last_executed + self.cfg.pipeline;
        if r != self.regency || self.leader() != self.cfg.me || s == self.cfg.me || !in_flight {
            return;
        }
        let Some((pr, _, batch)) = self.slots.get(&i).and_then(|s| s.proposal.clone()) else {
            return;
        };
        let d = batch.digest();
        if pr != r || self.unverifiable_from.contains(&(i, s)) {
            return;
        }
        // One report per follower and instance, for instances in flight.
        let next = self.last_executed + 1;
        self.unverifiable_from = self.unverifiable_from.split_off(&(next, 0));
        self.unverifiable = self.unverifiable.split_off(&(next, 0));
        self.unverifiable_from.insert((i, s));
        let macs_only: std::collections::BTreeSet<ClientId> = batch
            .requests()
            .iter()
            .filter(|q| matches!(q.auth, RequestAuth::Macs(_)))
            .map(|q| q.client)
            .collect();
        for c in clients.into_iter().take(batch.requests().len()) {
            let key = (i, c);
            let full = self.unverifiable.len() >= FORWARDED_MAX;
            if !macs_only.contains(&c) || (full && !self.unverifiable.contains_key(&key)) {
                continue;
            }
            self.unverifiable
                .entry(key)
                .or_insert_with(|| (d, Default::default()))
                .1
                .insert(s);
        }
    }

    /// Instance `i` ran `d`: its notes of unverifiable clients in a PROPOSE
    /// of `d` go (that batch decided: it stalled nothing). A note of another
    /// batch there (a plan's no-op ran instead) stays for `strike_stallers`.
    fn forget_notes_of(&mut self, i: Instance, d: &Digest) {
        if self.deferred_strikes.get(&i).is_some_and(|(nd, _)| nd == d) {
            self.deferred_strikes.remove(&i);
        }
        let ran: Vec<(Instance, ClientId)> = self
            .unverifiable
            .range((i, 0)..=(i, ClientId::MAX))
            .filter(|(_, (nd, _))| nd == d)
            .map(|(k, _)| *k)
            .collect();
        for k in ran {
            self.unverifiable.remove(&k);
        }
    }

    /// On leaving a regency: the first PROPOSE of it whose batch did not
    /// decide (the one that stalled it) strikes the clients whose requests
    /// in it could not be checked, at a follower that saw them
    /// (`deferred_strikes`) and at its leader told so by f+1 followers.
    /// Only then: a request whose MAC entries a Byzantine relay altered, or
    /// a leader framing a client inside a batch that decided, costs that
    /// client nothing. Judged by the batch, not by the instance: a SYNC may
    /// have filled the instance with a no-op, or a transfer run past it.
    /// Runs once the new regency's plan is adopted (it may bring the batch
    /// back).
    pub(super) fn strike_stallers(&mut self) {
        // Decided with that batch, or brought back by the new plan; an
        // instance run and collected under a checkpoint is given the benefit.
        let decided_as = |me: &Replica, i: Instance, d: &Digest| match me.slots.get(&i) {
            Some(s) => {
                s.decided.as_ref().is_some_and(|(dd, _)| dd == d)
                    || s.proposal
                        .as_ref()
                        .is_some_and(|(r, pd, _)| *r == me.regency && pd == d)
            }
            None => i <= me.last_executed,
        };
        let deferred = std::mem::take(&mut self.deferred_strikes);
        let mine = deferred
            .into_iter()
            .find(|(i, (d, _))| !decided_as(self, *i, d))
            .map(|(_, (_, clients))| clients)
            .unwrap_or_default();
        let f = self.cfg.f();
        let failed = self
            .unverifiable
            .iter()
            .find(|((i, _), (d, by))| by.len() > f && !decided_as(self, *i, d))
            .map(|((i, _), _)| *i);
        let reported: Vec<ClientId> = self
            .unverifiable
            .iter()
            .filter(|((i, _), (_, by))| Some(*i) == failed && by.len() > f)
            .map(|((_, c), _)| *c)
            .collect();
        for c in mine.into_iter().chain(reported) {
            self.strike(c);
        }
        self.unverifiable.clear();
        self.unverifiable_from.clear();
    }

    /// A PROPOSE may overtake the SYNC of its regency: keep it for later.
    fn keep_early_proposal(
        &mut self,
        s: ReplicaId,
        r: Regency,
        i: Instance,
        batch: &Arc<Batch>,
    ) -> bool {
        let waiting =
            (r == self.regency && self.mode == super::Mode::Syncing) || r == self.regency + 1;
        if !waiting || s != self.cfg.leader_of(r) || !self.in_window(i) {
            return false;
        }
        if self.early.len() < EARLY_PROPOSALS_MAX {
            self.early.insert((r, i), batch.clone());
        } else {
            self.stats.dropped_out_of_bounds += 1;
        }
        true
    }

    /// Proposals kept for regency `t`, now that it is synchronised.
    pub(super) fn replay_early_proposals(&mut self, t: Regency) {
        let early = std::mem::take(&mut self.early);
        for ((r, i), batch) in early {
            if r == t {
                self.on_propose(self.cfg.leader_of(t), t, i, batch);
            } else if r > t {
                self.early.insert((r, i), batch);
            }
        }
    }

    /// Messages from f+1 replicas about instances beyond our window mean we fell
    /// (at least a checkpoint) behind, e.g. after a restart: fetch state.
    pub(super) fn note_instance_evidence(&mut self, s: ReplicaId, i: Instance) {
        let low = self.stable.cert.instance;
        if i <= low + self.cfg.log_window() {
            return;
        }
        self.beyond.insert(s);
        if self.beyond.len() > self.cfg.f() {
            self.beyond.clear();
            self.start_state_transfer();
        }
    }

    /// Votes from f+1 replicas in a higher regency mean we fell behind: fetch state.
    pub(super) fn note_regency_evidence(&mut self, s: ReplicaId, r: Regency) {
        if r <= self.regency {
            return;
        }
        let e = self.ahead.entry(s).or_insert(r);
        *e = (*e).max(r);
        let regency = self.regency;
        self.ahead.retain(|_, v| *v > regency);
        if self.ahead.len() > self.cfg.f() {
            self.start_state_transfer();
        }
    }

    /// Sends WRITE for the slot's proposal in the current regency, once.
    pub(super) fn vote_write(&mut self, i: Instance) {
        let r = self.regency;
        let Some(slot) = self.slots.get_mut(&i) else {
            return;
        };
        let Some((pr, d, _)) = &slot.proposal else {
            return;
        };
        if *pr != r || slot.voted_write == Some(r) {
            return;
        }
        if slot.needs_vouching && slot.write_count(r, d) <= self.cfg.f() {
            return;
        }
        // A leader's fresh value is written only where we wrote nothing else:
        // so a correct replica writes at most one value of its own choosing
        // per instance, and its write-set stays complete (the leader-change
        // rule's liveness rests on that). A plan's value is always written.
        if !slot.planned && slot.wrote_other_than(d) {
            return;
        }
        if let Some((dd, _)) = &slot.decided {
            if dd != d {
                return;
            }
        }
        let d = *d;
        if self.rejoin.is_some() {
            return;
        }
        slot.voted_write = Some(r);
        slot.note_written(r, d, self.cfg.writeset_max());
        self.record(|_| super::DurableRecord::Wrote {
            instance: i,
            regency: r,
            digest: d,
        });
        self.broadcast(Message::Write {
            regency: r,
            instance: i,
            digest: d,
        });
    }

    pub(super) fn on_write(&mut self, s: ReplicaId, r: Regency, i: Instance, d: Digest) {
        self.note_regency_evidence(s, r);
        if !self.vote_regency_ok(r) || !self.in_window(i) {
            self.note_instance_evidence(s, i);
            self.stats.dropped_out_of_bounds += 1;
            return;
        }
        if i <= self.last_executed && !self.revoting(i) {
            return;
        }
        let slot = self.slots.entry(i).or_default();
        match slot.writes.get(&(r, s)) {
            Some(old) if *old != d => self.stats.equivocations_seen += 1,
            Some(_) => {}
            None => {
                slot.writes.insert((r, s), d);
            }
        }
        self.vote_write(i);
        self.try_accept(i);
    }

    /// After 2f+1 matching WRITEs for our proposal: record it as accepted, send ACCEPT.
    pub(super) fn try_accept(&mut self, i: Instance) {
        let (q, r) = (self.cfg.quorum(), self.regency);
        if self.mode != super::Mode::Normal || !self.may_vote() {
            return;
        }
        let Some(slot) = self.slots.get_mut(&i) else {
            return;
        };
        let Some((pr, d, batch)) = slot.proposal.clone() else {
            return;
        };
        if pr != r || slot.voted_accept == Some(r) || slot.write_count(r, &d) < q {
            return;
        }
        slot.accepted = Some((r, d, batch));
        slot.voted_accept = Some(r);
        // The batch is taken from the slot only when journaling (no clone otherwise).
        self.record(|me| super::DurableRecord::Accepted {
            instance: i,
            regency: r,
            digest: d,
            batch: me.slots[&i]
                .accepted
                .as_ref()
                .map(|a| a.2.clone())
                .expect("accepted just above"),
        });
        self.broadcast(Message::Accept {
            regency: r,
            instance: i,
            digest: d,
        });
    }

    pub(super) fn on_accept(&mut self, s: ReplicaId, r: Regency, i: Instance, d: Digest) {
        self.note_regency_evidence(s, r);
        if !self.vote_regency_ok(r) || !self.in_window(i) {
            self.note_instance_evidence(s, i);
            self.stats.dropped_out_of_bounds += 1;
            return;
        }
        if i <= self.last_executed && !self.revoting(i) {
            return;
        }
        let slot = self.slots.entry(i).or_default();
        match slot.accepts.get(&(r, s)) {
            Some(old) if *old != d => self.stats.equivocations_seen += 1,
            Some(_) => {}
            None => {
                slot.accepts.insert((r, s), d);
            }
        }
        self.try_decide(i);
    }

    /// 2f+1 ACCEPTs for one (regency, digest) in this instance decide it.
    pub(super) fn try_decide(&mut self, i: Instance) {
        let q = self.cfg.quorum();
        let Some(slot) = self.slots.get_mut(&i) else {
            return;
        };
        if slot.decided.is_some() {
            return;
        }
        let mut counts = BTreeMap::<(Regency, Digest), usize>::new();
        for ((r, _), d) in &slot.accepts {
            *counts.entry((*r, *d)).or_default() += 1;
        }
        let Some(((_, d), _)) = counts.into_iter().find(|(_, c)| *c >= q) else {
            return;
        };
        let Some(batch) = slot.batch_for(&d) else {
            return; // the value is decided but we lack its batch: state transfer brings it
        };
        self.record_decided(i, d, batch);
        self.stats.instances_decided += 1;
        self.execute_ready();
    }

    /// Marks instance `i` decided by `batch` and journals it (without the
    /// batch when it is the one this replica accepted, already journaled).
    pub(super) fn record_decided(&mut self, i: Instance, d: Digest, batch: Arc<Batch>) {
        let slot = self.slots.entry(i).or_default();
        let accepted = slot.accepted.as_ref().is_some_and(|(_, ad, _)| *ad == d);
        slot.decided = Some((d, batch));
        self.record(|me| super::DurableRecord::Decided {
            instance: i,
            digest: d,
            batch: (!accepted)
                .then(|| me.slots[&i].decided.as_ref().map(|(_, b)| b.clone()))
                .flatten(),
        });
    }

    /// Executes decided instances strictly in order.
    pub(super) fn execute_ready(&mut self) {
        loop {
            let i = self.last_executed + 1;
            let Some((d, batch)) = self.slots.get(&i).and_then(|s| s.decided.clone()) else {
                return;
            };
            self.last_executed = i;
            self.forget_notes_of(i, &d);
            let executed = self.execute_batch(&batch, true);
            self.outputs.push_back(Output::Deliver {
                instance: i,
                digest: d,
                executed,
            });
            self.on_progress();
            if i % self.cfg.checkpoint_interval == 0 {
                self.take_checkpoint(i);
            }
        }
    }

    fn on_progress(&mut self) {
        self.view_failures = 0;
        self.rearm_request_timer();
    }

    /// When the request waiting longest started waiting in this regency.
    fn oldest_wait_start(&self) -> Option<crate::time::Time> {
        self.pending
            .oldest_arrival()
            .map(|t| t.max(self.timer_base))
    }

    /// The request timer times the request waiting longest: others executing
    /// do not reset it, so a leader cannot hold on by ordering some requests
    /// (or stale ones) and not others (BFT-SMaRt times each request).
    pub(super) fn rearm_request_timer(&mut self) {
        let Some(start) = self.oldest_wait_start() else {
            self.progress_deadline = None;
            self.progress_phase = 0;
            return;
        };
        let t = self.cfg.request_timeout;
        let first = start + t;
        if self.now < first {
            self.progress_phase = 0;
            self.progress_deadline = Some(first);
        } else if self.progress_phase == 0 {
            // Waited a full timeout already: forwarding is due.
            self.progress_deadline = Some(self.now);
        } else if self.progress_phase == 1 {
            // Forwarded: STOP once this request, not an older one, waited
            // twice (and the leader had a full timeout since the forward).
            let second = start + t + t;
            self.progress_deadline = Some(self.progress_deadline.map_or(second, |d| d.max(second)));
        }
    }

    /// Runs a decided batch: the requests new for their clients (applied in
    /// order, so a later request of the same client in the batch still runs),
    /// through one `execute_batch` call. Returns the ids that ran.
    pub(super) fn execute_batch(&mut self, batch: &Batch, reply: bool) -> Vec<(ClientId, u64)> {
        let mut latest: BTreeMap<ClientId, u64> = BTreeMap::new();
        let mut run: Vec<&Request> = Vec::new();
        for req in batch.requests() {
            self.pending.remove_through(req.client, req.seq);
            let last = latest
                .get(&req.client)
                .copied()
                .or_else(|| self.clients.last_seq(req.client));
            if last.is_some_and(|s| s >= req.seq) {
                continue;
            }
            let known = last.is_some();
            if !known && self.clients.len() + latest.len() >= CLIENTS_MAX {
                continue; // deterministic on every replica: the table is part of the state
            }
            latest.insert(req.client, req.seq);
            run.push(req);
        }
        let ops: Vec<&[u8]> = run.iter().map(|r| r.op.as_slice()).collect();
        let results = self.app.execute_batch(&ops);
        assert_eq!(
            results.len(),
            run.len(),
            "the App returned one result per operation"
        );
        let mut executed = Vec::with_capacity(run.len());
        for (req, result) in run.into_iter().zip(results) {
            self.stats.requests_executed += 1;
            let result = if reply {
                self.reply(req, result)
            } else {
                result
            };
            self.clients.record(req.client, req.seq, result);
            executed.push(req.id());
        }
        executed
    }

    /// Answers an executed request: the full result if the client chose this
    /// replica (or all), else its digest. Returns the result for the cache.
    fn reply(&mut self, req: &Request, result: Vec<u8>) -> Vec<u8> {
        if !req.replier.sends_full(self.cfg.me) {
            let msg = Message::ReplyDigest(ReplyDigest {
                client: req.client,
                seq: req.seq,
                digest: hash(&result),
            });
            self.send(Peer::Client(req.client), &msg);
            return result;
        }
        // The result moves into the reply and back out, not copied.
        let msg = Message::Reply(Reply {
            client: req.client,
            seq: req.seq,
            result,
        });
        self.send(Peer::Client(req.client), &msg);
        match msg {
            Message::Reply(r) => r.result,
            _ => unreachable!("built as a Reply above"),
        }
    }

    /// First expiry: forward pending requests to the leader. Later: ask for a leader change.
    /// First expiry: hand the leader the requests waiting longest, then give
    /// it a full timeout (and the oldest its second) before any STOP.
    fn forward_oldest(&mut self) {
        let t = self.cfg.request_timeout;
        let leader = self.leader();
        let oldest = self.pending.oldest(self.cfg.batch_max_requests);
        self.forwarded_through = oldest.last().map(|(_, at)| *at);
        if leader != self.cfg.me {
            for (req, _) in oldest {
                self.send_replica(leader, Message::Request(req));
            }
        }
        self.resend_checkpoint_votes();
        self.progress_phase = 1;
        let start = self.oldest_wait_start().unwrap_or(self.now);
        self.progress_deadline = Some((start + t + t).max(self.now + t));
    }

    /// Only a signed request justifies a STOP: a MAC entry good here may be
    /// bad at the leader (the client's doing, not the leader's), and k ≤ f
    /// correct replicas timing out on it, with f Byzantine ones, would
    /// depose a correct leader. Requests with MACs only that waited two
    /// timeouts are let go (an honest client retransmits them signed well
    /// before: `Client`); true if any were, and the timer is re-armed for
    /// the rest.
    fn let_go_of_unsigned(&mut self) -> bool {
        let waited = self.cfg.request_timeout.backoff(1);
        if self.now < self.timer_base + waited {
            return false;
        }
        let stale = self
            .pending
            .unsigned_before(Time(self.now.0 - waited.0 + 1));
        if stale.is_empty() {
            return false;
        }
        for id in &stale {
            self.pending.remove(*id);
        }
        self.stats.dropped_unsigned += stale.len() as u64;
        // A decision here that cannot run (an earlier instance is not
        // decided here) means this replica fell behind, and they may have
        // run elsewhere. Without that evidence no transfer starts: an open
        // one puts STOPs off, and Byzantine clients keep requests going stale.
        if self.decided_ahead() {
            self.start_state_transfer();
        }
        self.rearm_request_timer();
        true
    }

    /// A later instance is decided (here, or by 2f+1 ACCEPTs whose batch
    /// this replica lacks) while the next one to run is not.
    fn decided_ahead(&self) -> bool {
        let q = self.cfg.quorum();
        self.slots.range(self.last_executed + 1..).any(|(_, s)| {
            s.decided.is_some() || {
                let mut counts = BTreeMap::<(Regency, Digest), usize>::new();
                s.accepts.iter().any(|((r, _), d)| {
                    let c = counts.entry((*r, *d)).or_default();
                    *c += 1;
                    *c >= q
                })
            }
        })
    }

    pub(super) fn on_progress_timeout(&mut self) {
        if self.pending.is_empty() || self.mode == super::Mode::Syncing {
            self.progress_deadline = None;
            return;
        }
        let t = self.cfg.request_timeout;
        // A request the last forward did not carry (it was not among the
        // oldest then) is forwarded before any STOP is sent for it.
        // Once per oldest request: a leader that keeps clearing the forwarded
        // ones (ordering a high seq of each of their clients) cannot keep
        // putting its STOP off.
        let oldest = self.pending.oldest_key();
        let unforwarded = oldest.is_some_and(|k| self.forwarded_through.is_none_or(|f| k > f))
            && oldest != self.reforwarded_for;
        if self.progress_phase == 0 || (self.progress_phase == 1 && unforwarded) {
            if self.progress_phase == 1 {
                self.reforwarded_for = oldest;
            }
            self.forward_oldest();
            return;
        }
        // Decisions here that cannot run (a batch this replica refused, or
        // never got): fetch state before asking for a leader change.
        if self.transfer.is_none() && self.decided_ahead() {
            self.start_state_transfer();
        }
        // Catching up: what is pending may have run already, so a transfer
        // gets one timeout, once per oldest request, before the STOP (a
        // replica kept fetching state, say by a regency stalled on a request
        // only its leader could check, must still ask for a leader change).
        if self.transfer.is_some() && self.postponed_for != oldest {
            self.postponed_for = oldest;
            self.progress_deadline = Some(self.now + t);
            return;
        }
        if self.let_go_of_unsigned() {
            return;
        }
        if self.pending.oldest_key() != self.pending.oldest_signed_key() {
            // The request waiting longest has MACs only: no STOP for it.
            self.progress_deadline = Some(self.now + t);
            return;
        }
        self.progress_phase = 2;
        let target = self
            .regency
            .max(self.stop_target.unwrap_or(0))
            .saturating_add(1);
        self.start_stop(target);
        self.start_state_transfer();
        self.progress_deadline =
            Some(self.now + self.cfg.view_change_timeout.backoff(self.view_failures));
        self.view_failures = (self.view_failures + 1).min(BACKOFF_EXP_MAX);
    }
}
