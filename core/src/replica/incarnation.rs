//! Incarnations: which run of each replica a STOPDATA speaks for.
//!
//! A STOPDATA(t) is a promise (every instance it does not name reads as
//! "accepted nothing" below t), kept because the sender's regency is
//! durable. A replica that restarts without its state cannot keep the
//! promises of its earlier run, so it starts a new run: a higher number,
//! signed by it. Its peers keep the highest run they know of each replica
//! (durably), refuse STOPDATA of older runs, and refuse a SYNC built on one.
//! A rejoiner votes only once 2f+1 peers have answered a state request that
//! named its run, so f+1 correct replicas refuse its old promises from then
//! on and no SYNC resting on one can gather 2f+1 WRITEs. Knowledge of runs
//! survives other replicas' own restarts: it is durable, and a rejoiner
//! learns it again from the state replies of those 2f+1 (any f correct
//! knowers among its 3f peers are among them).

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
        let bytes = Incarnation::sign_bytes(r, inc.number);
        if !self.crypto.verify_replica(r, &bytes, &inc.sig) {
            self.stats.dropped_bad_auth += 1;
            return;
        }
        self.incarnations.insert(r, inc.clone());
        self.record(|_| super::DurableRecord::Incarnation(inc.clone()));
        let n = inc.number;
        self.stop_data
            .retain(|from, (sd, _)| *from != r || sd.incarnation >= n);
    }

    /// Signs and takes `number` as this replica's run.
    pub(super) fn take_incarnation(&mut self, number: u64) {
        let me = self.cfg.me;
        let sig = self.crypto.sign(&Incarnation::sign_bytes(me, number));
        let inc = Incarnation {
            replica: me,
            number,
            sig,
        };
        self.incarnations.insert(me, inc.clone());
        self.record(|_| super::DurableRecord::Incarnation(inc));
    }

    /// The runs a state reply reports. A rejoiner that finds one of its own
    /// runs above its current one (its clock went back) takes a higher one
    /// and asks again, with none of the evidence gathered for the lower.
    /// (Its current run comes back from every peer that learned it.)
    /// Returns whether it started over.
    pub(super) fn note_reported_incarnations(&mut self, incs: &[Incarnation]) -> bool {
        for inc in incs {
            self.note_incarnation(inc);
        }
        let me = self.cfg.me;
        let mine = self.incarnation_of(me);
        let Some(seen) = incs
            .iter()
            .filter(|i| i.replica == me && i.number > mine)
            .map(|i| i.number)
            .max()
        else {
            return false;
        };
        let bytes = Incarnation::sign_bytes(me, seen);
        let genuine = incs.iter().any(|i| {
            i.replica == me && i.number == seen && self.crypto.verify_replica(me, &bytes, &i.sig)
        });
        if self.rejoin.is_none() || !genuine {
            return false;
        }
        self.take_incarnation(seen.saturating_add(1));
        self.rejoin = Some(super::Rejoin::default());
        self.transfer = None;
        self.start_state_transfer();
        true
    }
}
