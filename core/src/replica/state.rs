//! The replica's data: log slots, the durable part, the client table, pending requests.

use crate::codec::{DecodeError, Reader, Writer};
use crate::crypto::{hash, Digest};
use crate::limits::*;
use crate::message::*;
use crate::time::Time;
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

/// One consensus instance's log entry.
#[derive(Clone, Debug, Default)]
pub struct Slot {
    /// The value under vote in `regency` (from PROPOSE or SYNC).
    pub proposal: Option<(Regency, Digest, Arc<Batch>)>,
    /// At most one WRITE and one ACCEPT per (regency, sender) is kept; each
    /// sender is proven by its link MAC.
    pub writes: BTreeMap<(Regency, ReplicaId), Digest>,
    pub accepts: BTreeMap<(Regency, ReplicaId), Digest>,
    /// The proposal holds a request whose authenticator failed here (a MAC
    /// entry for us can be bad while others' are good): WRITE only once f+1
    /// replicas have, as one of them is correct and authenticated it.
    pub needs_vouching: bool,
    pub voted_write: Option<Regency>,
    pub voted_accept: Option<Regency>,
    /// The latest value we saw 2f+1 WRITEs for (and ACCEPTed), with its batch.
    pub accepted: Option<(Regency, Digest, Arc<Batch>)>,
    /// `proposal` came from a SYNC plan (not from the leader's PROPOSE).
    pub planned: bool,
    /// Our write-set: each digest we sent WRITE for, at the highest regency we
    /// did, newest last. Complete: at most `Config::writeset_max` digests
    /// ever reach it (see `Replica::vote_write`).
    pub written: Vec<(Regency, Digest)>,
    pub decided: Option<(Digest, Arc<Batch>)>,
}

impl Slot {
    /// WRITEs for (regency, digest).
    pub fn write_count(&self, regency: Regency, digest: &Digest) -> usize {
        self.writes
            .range((regency, 0)..=(regency, ReplicaId::MAX))
            .filter(|(_, d)| *d == digest)
            .count()
    }

    /// Records that we sent WRITE(regency, digest): regencies only grow, so
    /// the entry goes last. Nothing is ever dropped: `max` holds by the rule
    /// that a fresh value is written only where nothing else was.
    pub fn note_written(&mut self, regency: Regency, digest: Digest, max: usize) {
        self.written.retain(|(_, d)| *d != digest);
        self.written.push((regency, digest));
        assert!(self.written.len() <= max, "write-set bound exceeded");
        debug_assert!(self.written.windows(2).all(|w| w[0].0 <= w[1].0));
    }

    /// We wrote another value here than `digest`: a leader's fresh `digest`
    /// must not be written (only a SYNC plan's value may be).
    pub fn wrote_other_than(&self, digest: &Digest) -> bool {
        self.written.iter().any(|(_, d)| d != digest)
    }

    pub fn accept_count(&self, regency: Regency, digest: &Digest) -> usize {
        self.accepts
            .range((regency, 0)..=(regency, ReplicaId::MAX))
            .filter(|(_, d)| *d == digest)
            .count()
    }

    /// The batch with `digest`, if this slot has seen it.
    pub fn batch_for(&self, digest: &Digest) -> Option<Arc<Batch>> {
        if let Some((_, d, b)) = &self.proposal {
            if d == digest {
                return Some(b.clone());
            }
        }
        match &self.accepted {
            Some((_, d, b)) if d == digest => Some(b.clone()),
            _ => None,
        }
    }

    /// Drops votes from regencies before `regency`: they can no longer form a quorum we act on.
    pub fn prune_before(&mut self, regency: Regency) {
        self.writes = self.writes.split_off(&(regency, 0));
        self.accepts = self.accepts.split_off(&(regency, 0));
    }
}

/// The latest stable checkpoint: its certificate and the state snapshot at it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stable {
    pub cert: CheckpointCert,
    pub snapshot: Arc<Vec<u8>>,
}

/// What a replica keeps across a crash: its regency, the stable checkpoint and
/// the log above it (votes it sent, accepted values, write-sets, decisions). The host must
/// persist it before transmitting a step's outputs; the simulator models that
/// by taking it at the crash. Pending requests, timers, vote collections for
/// leader change and the executed App state are volatile (the App state is
/// rebuilt from the checkpoint and the decided log).
#[derive(Clone, Debug)]
pub struct Durable {
    pub regency: Regency,
    /// The last regency whose SYNC this replica applied (0: genesis needs none).
    pub synced_regency: Regency,
    /// The last instance that SYNC's plan fixed: in `synced_regency` no
    /// PROPOSE at or below it is taken (a replica that could not adopt the
    /// plan there, being out of window, must not take a leader's other value).
    pub synced_last: Instance,
    /// The highest regency this replica ever asked for with STOP (0: none);
    /// it only grows. Peers report it (with their regency) to a replica
    /// rejoining without its state: 2f+1 replicas asked for every regency
    /// anyone installed, so a rejoiner learns from any 2f peers a floor
    /// above every STOPDATA it may have sent.
    pub stop_floor: Regency,
    /// Restarted without its earlier state and not yet allowed to vote (the
    /// rejoin rule): a second restart in the meantime must not end it.
    pub rejoining: bool,
    /// The highest run (`Incarnation`) known of each replica, its own
    /// included; absent: 0.
    pub incarnations: BTreeMap<ReplicaId, Incarnation>,
    pub stable: Stable,
    pub slots: BTreeMap<Instance, Slot>,
}

/// One client's exactly-once record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientEntry {
    pub seq: u64,
    /// Execution order of `seq`, for deterministic eviction of results.
    pub stamp: u64,
    /// The result, kept while the table's result budget allows.
    pub result: Option<Vec<u8>>,
}

/// Per-client exactly-once records, part of the replicated state (snapshot and
/// digest): the last executed sequence number and, within a byte budget, its
/// result, to answer a retransmission. Results are evicted oldest-executed
/// first; as every replica executes the same order, every replica evicts the
/// same ones, and a snapshot stays bounded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientTable {
    last: BTreeMap<ClientId, ClientEntry>,
    /// stamp → client, for entries still holding a result.
    by_stamp: BTreeMap<u64, ClientId>,
    result_bytes: usize,
    next_stamp: u64,
}

impl ClientTable {
    pub fn last_seq(&self, client: ClientId) -> Option<u64> {
        self.last.get(&client).map(|e| e.seq)
    }

    pub fn len(&self) -> usize {
        self.last.len()
    }

    /// Requests the replicated state has executed since genesis (each one
    /// took a stamp; carried in snapshots, so it survives restarts).
    pub fn executed_total(&self) -> u64 {
        self.next_stamp
    }

    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }

    pub fn contains(&self, client: ClientId) -> bool {
        self.last.contains_key(&client)
    }

    /// The cached result of the client's last request, if still held.
    pub fn result(&self, client: ClientId) -> Option<(u64, &[u8])> {
        let e = self.last.get(&client)?;
        e.result.as_deref().map(|r| (e.seq, r))
    }

    pub fn record(&mut self, client: ClientId, seq: u64, result: Vec<u8>) {
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        self.result_bytes += result.len();
        let entry = ClientEntry {
            seq,
            stamp,
            result: Some(result),
        };
        // A known client's entry is replaced where it is (one search, no rebalancing).
        if let Some(old) = self.last.insert(client, entry) {
            if self.by_stamp.remove(&old.stamp).is_some() {
                self.result_bytes -= old.result.as_ref().map_or(0, Vec::len);
            }
        }
        self.by_stamp.insert(stamp, client);
        while self.result_bytes > CLIENT_RESULTS_BYTES_MAX {
            let Some((_, c)) = self.by_stamp.pop_first() else {
                break;
            };
            if let Some(r) = self.last.get_mut(&c).and_then(|e| e.result.take()) {
                self.result_bytes -= r.len();
            }
        }
    }

    /// The exact size of `encode`'s output.
    pub fn encoded_len(&self) -> usize {
        // Per entry: client, seq, stamp, a flag, and a length-prefixed result if held.
        8 + 4 + 25 * self.last.len() + 4 * self.by_stamp.len() + self.result_bytes
    }

    pub fn encode(&self, w: &mut Writer) {
        w.u64(self.next_stamp);
        w.len(self.last.len());
        for (c, e) in &self.last {
            w.u64(*c);
            w.u64(e.seq);
            w.u64(e.stamp);
            match &e.result {
                None => w.u8(0),
                Some(r) => {
                    w.u8(1);
                    w.bytes(r);
                }
            }
        }
    }

    pub fn decode(r: &mut Reader) -> Result<ClientTable, DecodeError> {
        let mut t = ClientTable {
            next_stamp: r.u64()?,
            ..ClientTable::default()
        };
        let n = r.len("client table", CLIENTS_MAX, 25)?;
        let mut prev = None;
        for _ in 0..n {
            let c = r.u64()?;
            if prev.is_some_and(|p| p >= c) {
                return Err(DecodeError::Invalid("client table out of order"));
            }
            prev = Some(c);
            let (seq, stamp) = (r.u64()?, r.u64()?);
            let result = match r.u8()? {
                0 => None,
                1 => Some(r.bytes("cached result", RESULT_BYTES_MAX)?.to_vec()),
                t => return Err(DecodeError::BadTag(t)),
            };
            if stamp >= t.next_stamp {
                return Err(DecodeError::Invalid("client stamp ahead of the table"));
            }
            if let Some(res) = &result {
                t.result_bytes += res.len();
                if t.by_stamp.insert(stamp, c).is_some() {
                    return Err(DecodeError::Invalid("duplicate client stamp"));
                }
            }
            t.last.insert(c, ClientEntry { seq, stamp, result });
        }
        if t.result_bytes > CLIENT_RESULTS_BYTES_MAX {
            return Err(DecodeError::Invalid("client results over budget"));
        }
        Ok(t)
    }

    pub fn digest(&self) -> Digest {
        let mut w = Writer::with_capacity(self.encoded_len());
        self.encode(&mut w);
        hash(&w.buf)
    }
}

/// Requests received but not yet executed. Every replica keeps them (for its
/// request timer and in case it becomes leader); the leader also keeps the
/// arrival order of those it has not yet proposed.
#[derive(Debug, Default)]
pub struct Pending {
    pub requests: BTreeMap<(ClientId, u64), (Request, ArrivalKey)>,
    pub unproposed: VecDeque<(ClientId, u64)>,
    pub in_flight: BTreeSet<(ClientId, u64)>,
    /// `requests` by arrival, for the request timer (the oldest one's age).
    by_arrival: BTreeSet<ArrivalKey>,
    /// The signed ones among them (a STOP is sent only for one of these).
    signed: BTreeSet<ArrivalKey>,
    /// Arrivals so far: orders requests that came at one instant.
    arrivals: u64,
}

/// A request's place in arrival order: when it came, how many came before
/// it, then its id.
pub type ArrivalKey = (Time, u64, (ClientId, u64));

/// What [`Pending::insert`] did with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insert {
    Added,
    /// Held already (its client sent it again, or it also came in a PROPOSE).
    Known,
    /// A signed copy replaced the held copy authenticated by MACs only.
    Signed,
    /// `PENDING_REQUESTS_MAX` or `PENDING_PER_CLIENT_MAX` reached.
    Full,
}

fn is_signed(req: &Request) -> bool {
    matches!(req.auth, RequestAuth::Signature(_))
}

/// Requests one client may have pending at a replica (a closed-loop client has one).
pub const PENDING_PER_CLIENT_MAX: usize = 8;

impl Pending {
    pub fn len(&self) -> usize {
        self.requests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }

    /// Adds a request unless it is held already or a bound is reached. A
    /// signed copy replaces a copy with MACs only; it keeps its place in
    /// arrival order when its content is the same (a client's signed
    /// retransmission), and goes to the back when it is not (only a
    /// Byzantine client sends two requests under one sequence number).
    pub fn insert(&mut self, req: Request, now: Time) -> Insert {
        let id = req.id();
        let full = self.requests.len() >= PENDING_REQUESTS_MAX || self.client_full(id.0);
        let key = (now, self.arrivals, id);
        match self.requests.entry(id) {
            Entry::Occupied(mut held) => {
                let (old, old_key) = held.get();
                if is_signed(old) || !is_signed(&req) {
                    return Insert::Known;
                }
                let same = old.replier == req.replier && old.op == req.op;
                let key = if same { *old_key } else { key };
                self.by_arrival.remove(old_key);
                self.by_arrival.insert(key);
                self.signed.insert(key);
                held.insert((req, key));
                self.arrivals += 1;
                Insert::Signed
            }
            Entry::Vacant(_) if full => Insert::Full,
            Entry::Vacant(v) => {
                if is_signed(&req) {
                    self.signed.insert(key);
                }
                v.insert((req, key));
                self.by_arrival.insert(key);
                self.arrivals += 1;
                Insert::Added
            }
        }
    }

    /// The client has `PENDING_PER_CLIENT_MAX` requests here already (its
    /// requests are adjacent in the map: one search, at most that many steps).
    fn client_full(&self, client: ClientId) -> bool {
        self.requests
            .range((client, 0)..=(client, u64::MAX))
            .nth(PENDING_PER_CLIENT_MAX - 1)
            .is_some()
    }

    pub fn remove(&mut self, id: (ClientId, u64)) {
        if let Some((_, key)) = self.requests.remove(&id) {
            self.by_arrival.remove(&key);
            self.signed.remove(&key);
        }
        self.in_flight.remove(&id);
    }

    /// Counts `id` as arriving no earlier than `floor`.
    pub fn hold_back(&mut self, id: (ClientId, u64), floor: Time) {
        let Some((_, key)) = self.requests.get_mut(&id) else {
            return;
        };
        if key.0 >= floor {
            return;
        }
        let old = *key;
        *key = (floor, old.1, old.2);
        self.by_arrival.remove(&old);
        self.by_arrival.insert(*key);
        if self.signed.remove(&old) {
            self.signed.insert(*key);
        }
    }

    /// Drops `client`'s requests that carry MACs only (see `Replica::strike`).
    pub fn remove_unsigned_of(&mut self, client: ClientId) {
        let ids: Vec<_> = self
            .requests
            .range((client, 0)..=(client, u64::MAX))
            .filter(|(_, (r, _))| !is_signed(r))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.remove(id);
        }
    }

    /// When the request waiting longest arrived.
    pub fn oldest_arrival(&self) -> Option<Time> {
        self.by_arrival.first().map(|k| k.0)
    }

    /// The place in arrival order of the signed request waiting longest.
    pub fn oldest_signed_key(&self) -> Option<ArrivalKey> {
        self.signed.first().copied()
    }

    /// Requests with MACs only that arrived before `before`, oldest first.
    pub fn unsigned_before(&self, before: Time) -> Vec<(ClientId, u64)> {
        self.by_arrival
            .range(..(before, 0, (0, 0)))
            .filter(|k| !self.signed.contains(k))
            .map(|k| k.2)
            .collect()
    }

    /// Up to `max` requests with their place in arrival order, oldest first.
    pub fn oldest(&self, max: usize) -> Vec<(Request, ArrivalKey)> {
        self.by_arrival
            .iter()
            .take(max)
            .filter_map(|k| self.requests.get(&k.2).map(|(r, _)| (r.clone(), *k)))
            .collect()
    }

    /// The place in arrival order of the request waiting longest.
    pub fn oldest_key(&self) -> Option<ArrivalKey> {
        self.by_arrival.first().copied()
    }

    /// Removes every pending request of `client` up to `seq` (executed or superseded).
    pub fn remove_through(&mut self, client: ClientId, seq: u64) {
        // A closed-loop client has just this one pending: it goes by its id,
        // and one search finds any older ones.
        self.remove((client, seq));
        while let Some((&id, _)) = self.requests.range((client, 0)..(client, seq)).next() {
            self.remove(id);
        }
    }

    /// Rebuilds the proposal queue in arrival order, leaving out `in_flight`.
    pub fn requeue(&mut self) {
        let mut ids: Vec<_> = self
            .requests
            .iter()
            .filter(|(id, _)| !self.in_flight.contains(id))
            .map(|(id, (_, key))| (*key, *id))
            .collect();
        ids.sort();
        self.unproposed = ids.into_iter().map(|(_, id)| id).collect();
    }

    /// Queues a held request for proposal. Ids of requests executed
    /// meanwhile linger until `take_batch` meets them; while no batch is
    /// taken (a leader change) the queue is rebuilt before it outgrows the
    /// requests held.
    pub fn queue(&mut self, id: (ClientId, u64)) {
        if self.unproposed.len() >= 2 * self.requests.len() + 64 {
            self.requeue(); // `id` is held: it is queued again in arrival order
        } else {
            self.unproposed.push_back(id);
        }
        debug_assert!(self.unproposed.len() <= 2 * PENDING_REQUESTS_MAX + 64);
    }

    pub fn oldest_unproposed(&mut self) -> Option<Time> {
        while let Some(id) = self.unproposed.front() {
            match self.requests.get(id) {
                Some((_, key)) if !self.in_flight.contains(id) => return Some(key.0),
                _ => {
                    self.unproposed.pop_front();
                }
            }
        }
        None
    }

    /// Takes up to the limits from the front of the queue, marking them in flight.
    pub fn take_batch(&mut self, max_requests: usize, max_bytes: usize) -> Vec<Request> {
        let mut out = Vec::new();
        let mut bytes = 4;
        while out.len() < max_requests {
            let Some(id) = self.unproposed.front().copied() else {
                break;
            };
            let Some((req, _)) = self.requests.get(&id) else {
                self.unproposed.pop_front();
                continue;
            };
            if self.in_flight.contains(&id) {
                self.unproposed.pop_front();
                continue;
            }
            let len = request_encoded_len(req);
            if !out.is_empty() && bytes + len > max_bytes {
                break;
            }
            bytes += len;
            out.push(req.clone());
            self.in_flight.insert(id);
            self.unproposed.pop_front();
        }
        debug_assert!(self.unproposed.len() <= PENDING_REQUESTS_MAX + 1);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Replier, RequestAuth};

    fn req(client: ClientId, seq: u64) -> Request {
        Request {
            client,
            seq,
            replier: Replier::All,
            op: vec![1],
            auth: RequestAuth::Macs(vec![]),
        }
    }

    fn signed(mut r: Request) -> Request {
        r.auth = RequestAuth::Signature(crate::crypto::Signature([7; 64]));
        r
    }

    /// A client's signed retransmission takes the place of its copy with
    /// MACs only (a STOP is sent only for a signed request), keeping its
    /// age; another request under the same number is younger; requests
    /// that came at one instant keep the order they came in.
    #[test]
    fn a_signed_copy_replaces_one_with_macs_only_and_keeps_its_age_if_it_is_the_same() {
        let mut p = Pending::default();
        assert_eq!(p.insert(req(9, 1), Time(5)), Insert::Added);
        assert_eq!(p.insert(req(1, 1), Time(5)), Insert::Added);
        assert_eq!(p.oldest_key().map(|k| k.2), Some((9, 1)), "arrival order");
        assert_eq!(p.oldest_signed_key(), None);
        assert_eq!(p.unsigned_before(Time(6)), [(9, 1), (1, 1)]);
        assert_eq!(p.insert(signed(req(9, 1)), Time(50)), Insert::Signed);
        assert_eq!(
            p.oldest_signed_key().map(|k| (k.0, k.2)),
            Some((Time(5), (9, 1)))
        );
        assert_eq!(p.unsigned_before(Time(6)), [(1, 1)]);
        assert_eq!(p.insert(req(9, 1), Time(60)), Insert::Known, "no way back");
        assert_eq!(p.insert(signed(req(9, 1)), Time(60)), Insert::Known);
        let mut other = signed(req(1, 1));
        other.op = vec![2];
        assert_eq!(p.insert(other, Time(70)), Insert::Signed);
        assert_eq!(p.oldest_signed_key().map(|k| k.0), Some(Time(5)));
        p.remove((9, 1));
        assert_eq!(
            p.oldest_signed_key().map(|k| (k.0, k.2)),
            Some((Time(70), (1, 1)))
        );
        p.remove_unsigned_of(1);
        assert_eq!(
            p.len(),
            1,
            "signed requests stay when their client is struck"
        );
        assert_eq!(p.insert(req(1, 2), Time(80)), Insert::Added);
        p.remove_unsigned_of(1);
        assert_eq!(p.len(), 1);
    }

    /// Found in review: while a leader synchronised (no batch taken), the
    /// ids of requests executed meanwhile piled up in the proposal queue.
    #[test]
    fn the_proposal_queue_stays_bounded_while_nothing_is_proposed() {
        let mut p = Pending::default();
        for k in 0..3 * PENDING_REQUESTS_MAX as u64 {
            assert_eq!(p.insert(req(k as ClientId, 1), Time(k)), Insert::Added);
            p.queue((k as ClientId, 1));
            p.remove((k as ClientId, 1)); // executed through another path
        }
        assert!(
            p.unproposed.len() <= PENDING_REQUESTS_MAX,
            "{}",
            p.unproposed.len()
        );
    }

    #[test]
    fn remove_through_takes_a_clients_requests_up_to_seq_and_nothing_else() {
        let mut p = Pending::default();
        for (c, s) in [(1, 3), (1, 5), (1, 6), (2, 4), (2, 5)] {
            assert_eq!(p.insert(req(c, s), Time(0)), Insert::Added);
            p.in_flight.insert((c, s));
        }
        p.remove_through(1, 5);
        let left: Vec<_> = p.requests.keys().copied().collect();
        assert_eq!(left, [(1, 6), (2, 4), (2, 5)]);
        assert_eq!(p.in_flight.iter().copied().collect::<Vec<_>>(), left);
        // A seq the replica never held still removes the older ones.
        p.remove_through(2, 9);
        p.remove_through(1, 6);
        assert!(p.is_empty() && p.in_flight.is_empty());
        // The per-client bound counts again from zero.
        for s in 1..=PENDING_PER_CLIENT_MAX as u64 {
            assert_eq!(p.insert(req(1, s), Time(0)), Insert::Added);
        }
        assert_eq!(p.insert(req(1, 99), Time(0)), Insert::Full);
        assert_eq!(p.insert(req(1, 1), Time(0)), Insert::Known);
    }
}
