//! Incarnations: which run of each replica a STOPDATA speaks for.
//!
//! A STOPDATA(t) is a promise (every instance it does not name reads as
//! "accepted nothing" below t), kept because the sender's regency is
//! durable. A replica that restarts without its state cannot keep the
//! promises of its earlier run, so it starts a new run: a higher number and
//! a random tag, signed by it. Its peers keep the highest run they know of
//! each replica (durably), refuse STOPDATA of older runs, and refuse a SYNC
//! built on one. A rejoiner votes only once 2f+1 peers have answered a state
//! request that named its run, and only at a regency at or above the floor
//! they report (`Rejoin` in mod.rs). The floor is what keeps a SYNC applied
//! before the new run was known from deciding against the new run's votes;
//! runs keep an old STOPDATA out of every SYNC built or applied afterwards.
//! Knowledge of runs survives other replicas' own restarts: it is durable,
//! and a rejoiner learns it again from the state replies of those 2f+1.

use super::Replica;
use crate::message::*;

impl Replica {
    /// The highest run of `r` this replica knows (0: genesis).
    pub fn incarnation_of(&self, r: ReplicaId) -> u64 {
        self.incarnations.get(&r).map_or(0, |i| i.number)
    }

    pub(super) fn own_incarnation(&self) -> Incarnation {
        self.incarnations
            .get(&self.cfg.me)
            .cloned()
            .unwrap_or_else(|| Incarnation::genesis(self.cfg.me))
    }

    /// Whether a STOPDATA speaks for the latest run of its sender we know.
    pub(super) fn is_current(&self, sd: &StopData) -> bool {
        sd.incarnation >= self.incarnation_of(sd.from)
    }

    /// Takes a peer's higher run (signature checked) and drops that peer's
    /// STOPDATA of older runs. Peer input: bounded and verified first.
    pub(super) fn note_incarnation(&mut self, inc: &Incarnation) {
        let r = inc.replica;
        if r as usize >= self.cfg.n || r == self.cfg.me || inc.number <= self.incarnation_of(r) {
            return;
        }
        if !inc.valid(self.crypto.as_ref()) {
            self.stats.dropped_bad_auth += 1;
            return;
        }
        self.incarnations.insert(r, inc.clone());
        self.record(|_| super::DurableRecord::Incarnation(inc.clone()));
        let n = inc.number;
        self.stop_data
            .retain(|from, (sd, _)| *from != r || sd.incarnation >= n);
    }

    /// The runs a state reply reports; returns whether this replica started
    /// over. A rejoiner that finds another run of its own with its number or
    /// a higher one (its clock went back) takes a higher number and asks
    /// again, with none of the evidence gathered for the lower run. (Its own
    /// current run comes back from every peer that learned it: same tag.)
    pub(super) fn note_reported_incarnations(&mut self, incs: &[Incarnation]) -> bool {
        for inc in incs {
            self.note_incarnation(inc);
        }
        let mine = self.own_incarnation();
        let crypto = self.crypto.as_ref();
        let clash = incs
            .iter()
            .filter(|i| i.replica == mine.replica && i.number >= mine.number && **i != mine)
            .filter(|i| i.valid(crypto))
            .map(|i| i.number)
            .max();
        let Some(seen) = clash else {
            return false;
        };
        if self.rejoin.is_none() {
            // Restarted from a log older than a run of its own that peers saw
            // (a restored backup): its STOPDATA are refused; say so.
            self.stats.dropped_invalid += 1;
            return false;
        }
        let tag = self.rng.next_u64();
        let run = Incarnation::signed(mine.replica, seen.saturating_add(1), tag, crypto);
        self.incarnations.insert(run.replica, run.clone());
        self.record(|_| super::DurableRecord::Incarnation(run));
        self.rejoin = Some(super::Rejoin::default());
        self.transfer = None;
        self.start_state_transfer();
        true
    }
}
