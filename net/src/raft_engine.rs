//! The Raft baseline: tikv's raft-rs driven by our event loop and transport,
//! with the same App, client protocol and exactly-once table as the BFT replica.
//!
//! - Every operation, reads included, goes through the log (linearizable).
//! - Clients send to every replica; the leader proposes, every replica applies
//!   committed entries, and the leader replies (n = 3 gives f = 0 in the client:
//!   one reply is enough, as Raft trusts its replicas).
//! - Time: one raft tick per `TICK` (etcd's defaults: heartbeat 100 ms,
//!   election 1–2 s). Election timeouts are random, as Raft needs: fixed ones
//!   can livelock (the simulator found it: with the leader down, the follower
//!   with the shorter timeout but the shorter log keeps calling elections the
//!   other must refuse, each resetting the other's timer). raft-rs draws them
//!   from an unseeded RNG; each draw is replaced by one from a seeded `Rng`,
//!   so simulated runs replay.
//! - Storage is raft-rs's `MemStorage` ([`RaftStore`]), by default in memory
//!   only, like the BFT replica. Every `snapshot_every` entries (the same
//!   indices at every replica) the engine snapshots the App and the client
//!   table and compacts the log behind the previous snapshot, so the log
//!   holds at most two intervals; a follower missing compacted entries gets
//!   the snapshot. Uncommitted entries are bounded by
//!   [`UNCOMMITTED_BYTES_MAX`] (a leader cut off from its quorum refuses
//!   proposals past it). [`RaftEngine::durable`] adds a write-ahead log on disk
//!   ([`RaftWal`]): every `Ready`'s entries and hard state are appended, and
//!   one fdatasync per event-loop turn (group commit, as etcd batches) makes
//!   them durable before any message of that turn leaves: every output goes
//!   through `poll_send`, which syncs first. A restarted replica replays it. The simulator instead keeps a crashed
//!   replica's storage and restarts it with [`RaftEngine::restart`], as if
//!   every `Ready` had been made durable before its messages left.

use crate::raft_store::RaftStore;
use crate::raft_wal::{RaftWal, WalError};
use crate::replica_loop::Engine;
use bft_core::app::App;
use bft_core::crypto::{Crypto, Peer};
use bft_core::message::{Message, ReplicaId, Reply, Request, RequestAuth};
use bft_core::replica::{ClientTable, Stats};
use bft_core::time::{Span, Time};
use bft_core::wire;
use protobuf::Message as _;
use raft::prelude::{Config, Entry, EntryType, Message as RaftMessage, MessageType, Snapshot};
use raft::{RawNode, StateRole};
use std::collections::VecDeque;
use std::path::Path;

/// One raft tick.
pub const TICK: Span = Span::from_millis(100);

/// Election timeouts are drawn from `ELECTION_TICKS` (etcd: [election, 2 × election)).
const ELECTION_TICKS: std::ops::Range<usize> = 10..20;

/// Log entries between two snapshots (etcd's early default snapshot count).
/// With the log compacted behind the previous snapshot, a replica holds at
/// most twice as many.
pub const SNAPSHOT_EVERY: u64 = 10_000;

/// Largest snapshot interval: the log may hold twice as many entries.
pub const SNAPSHOT_EVERY_MAX: u64 = 1_000_000;

/// Bytes of entries a leader holds uncommitted; past it proposals are
/// dropped (clients retry) instead of growing the log without a quorum.
pub const UNCOMMITTED_BYTES_MAX: u64 = 32 << 20;

pub struct RaftEngine {
    me: ReplicaId,
    rng: bft_core::rng::Rng,
    n: usize,
    node: RawNode<RaftStore>,
    crypto: Box<dyn Crypto + Send>,
    app: Box<dyn App>,
    clients: ClientTable,
    tick: Span,
    next_tick: Time,
    outputs: VecDeque<(Peer, Vec<u8>)>,
    stats: Stats,
    was_leader: bool,
    authenticated_client: Option<bft_core::message::ClientId>,
    /// Print leadership changes on stderr (the networked replica's log).
    announce: bool,
    /// Applied entries and snapshots taken (index, state digest), kept
    /// only for the simulator's checkers.
    applied_log: Option<Vec<AppliedEntry>>,
    snapshots_taken: Vec<(u64, bft_core::crypto::Digest)>,
    snapshot_every: u64,
    /// Followers sent a snapshot in this `Ready`, reported to raft-rs after it.
    snapshots_sent: Vec<u64>,
    /// The log on disk, if the replica persists.
    wal: Option<RaftWal>,
}

/// One applied log entry: what the simulator's agreement and exactly-once
/// checkers look at.
#[derive(Clone, Debug)]
pub struct AppliedEntry {
    pub index: u64,
    /// Of the entry's term, type and data: equal entries, equal digests.
    pub digest: bft_core::crypto::Digest,
    /// The request it executed, if it carried one new for its client.
    pub executed: Vec<(bft_core::message::ClientId, u64)>,
}

#[derive(Debug, thiserror::Error)]
pub enum RaftError {
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error("raft: the snapshot at index {index} does not restore: {what}")]
    Snapshot { index: u64, what: String },
}

impl RaftEngine {
    /// `seed` draws the election timeouts.
    pub fn new(
        me: ReplicaId,
        n: usize,
        crypto: Box<dyn Crypto + Send>,
        app: Box<dyn App>,
        seed: u64,
    ) -> Result<RaftEngine, RaftError> {
        RaftEngine::restart(me, n, crypto, app, RaftStore::new(n), seed)
    }

    /// A replica that persists to the write-ahead log at `wal`, replaying
    /// what an earlier run of it wrote there.
    pub fn durable(
        me: ReplicaId,
        n: usize,
        crypto: Box<dyn Crypto + Send>,
        app: Box<dyn App>,
        seed: u64,
        wal: &Path,
    ) -> Result<RaftEngine, RaftError> {
        let storage = RaftStore::new(n);
        let wal = RaftWal::open(wal, &storage)?;
        let mut engine = RaftEngine::restart(me, n, crypto, app, storage, seed)?;
        engine.wal = Some(wal);
        Ok(engine)
    }

    /// A replica over an existing log and hard state. The App and client
    /// table start from the latest snapshot (or empty): raft-rs hands every
    /// committed entry after it to the App again.
    pub fn restart(
        me: ReplicaId,
        n: usize,
        crypto: Box<dyn Crypto + Send>,
        mut app: Box<dyn App>,
        storage: RaftStore,
        seed: u64,
    ) -> Result<RaftEngine, RaftError> {
        let snap = storage.snapshot();
        let applied = snap.get_metadata().index;
        let clients = if applied > 0 {
            restore(app.as_mut(), &snap).map_err(|what| RaftError::Snapshot {
                index: applied,
                what,
            })?
        } else {
            ClientTable::default()
        };
        let id = me as u64 + 1; // raft ids start at 1
        let cfg = Config {
            id,
            election_tick: ELECTION_TICKS.start,
            heartbeat_tick: 1,
            min_election_tick: ELECTION_TICKS.start,
            max_election_tick: ELECTION_TICKS.end,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            max_uncommitted_size: UNCOMMITTED_BYTES_MAX,
            applied,
            ..Default::default()
        };
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let node = RawNode::new(&cfg, storage, &logger)?;
        let mut engine = RaftEngine {
            me,
            rng: bft_core::rng::Rng::new(seed ^ me as u64),
            n,
            node,
            crypto,
            app,
            clients,
            tick: TICK,
            next_tick: Time::ZERO + TICK,
            outputs: VecDeque::new(),
            stats: Stats::default(),
            was_leader: false,
            authenticated_client: None,
            applied_log: None,
            snapshots_taken: Vec::new(),
            snapshot_every: SNAPSHOT_EVERY,
            snapshots_sent: Vec::new(),
            announce: true,
            wal: None,
        };
        engine.redraw_election_timeout();
        Ok(engine)
    }

    /// Replaces raft-rs's own draw of the election timeout with a seeded one.
    /// raft-rs draws when its elapsed count restarts at 0 (a new term, a vote,
    /// a message from the leader); drawing then too keeps the timeout random
    /// after every reset and the run reproducible.
    fn redraw_election_timeout(&mut self) {
        let raft = &mut self.node.raft;
        if raft.election_elapsed == 0 {
            let t = self
                .rng
                .range(ELECTION_TICKS.start as u64, ELECTION_TICKS.end as u64 - 1);
            raft.set_randomized_election_timeout(t as usize);
        }
    }

    /// Ticks every `tick` from `now` on (the simulator shortens the tick so
    /// elections take as long as the BFT replica's request timeout).
    pub fn ticking(mut self, tick: Span, now: Time) -> RaftEngine {
        self.tick = tick;
        self.next_tick = now + tick;
        self
    }

    /// Snapshots every `entries` log entries instead of [`SNAPSHOT_EVERY`]
    /// (the simulator's short runs snapshot often).
    pub fn snapshot_every(mut self, entries: u64) -> RaftEngine {
        assert!(
            (1..=SNAPSHOT_EVERY_MAX).contains(&entries),
            "a snapshot interval of 1 to SNAPSHOT_EVERY_MAX entries"
        );
        self.snapshot_every = entries;
        self
    }

    /// Keeps every applied entry for [`take_applied`](Self::take_applied), and
    /// prints nothing (the simulator).
    pub fn recording_applied(mut self) -> RaftEngine {
        self.applied_log = Some(Vec::new());
        self.announce = false;
        self
    }

    pub fn take_applied(&mut self) -> Vec<AppliedEntry> {
        self.applied_log
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// The snapshots taken since the last call: (index, state digest), for
    /// the simulator's checker (replicas must agree at equal indices).
    pub fn take_snapshots(&mut self) -> Vec<(u64, bft_core::crypto::Digest)> {
        std::mem::take(&mut self.snapshots_taken)
    }

    /// The log, hard state and latest snapshot (shared: a clone sees later writes).
    pub fn storage(&self) -> RaftStore {
        self.node.raft.raft_log.store.clone()
    }

    /// This replica's keys (the simulator's Byzantine leader re-MACs with them).
    pub fn crypto(&self) -> &dyn Crypto {
        self.crypto.as_ref()
    }

    pub fn term(&self) -> u64 {
        self.node.raft.term
    }

    pub fn is_leader(&self) -> bool {
        self.node.raft.state == StateRole::Leader
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn applied(&self) -> u64 {
        self.node.raft.raft_log.applied
    }

    pub fn state_digest(&self) -> bft_core::crypto::Digest {
        bft_core::replica::state_digest(&self.app.digest(), &self.clients)
    }

    fn authentic(&self, req: &Request) -> bool {
        let bytes = req.signed_bytes();
        match &req.auth {
            RequestAuth::Macs(m) => {
                m.len() == self.n
                    && self.crypto.verify_mac(
                        Peer::Client(req.client),
                        &bytes,
                        &m[self.me as usize],
                    )
            }
            RequestAuth::Signature(s) => self.crypto.verify_client(req.client, &bytes, s),
        }
    }

    fn on_request(&mut self, req: Request) {
        if !self.authentic(&req) {
            self.stats.dropped_bad_auth += 1;
            return;
        }
        self.authenticated_client = Some(req.client);
        if let Some(last) = self.clients.last_seq(req.client) {
            if req.seq < last {
                return;
            }
            if req.seq == last {
                if let (true, Some((seq, r))) = (self.is_leader(), self.clients.result(req.client))
                {
                    let reply = Reply {
                        client: req.client,
                        seq,
                        result: r.to_vec(),
                    };
                    self.send(Peer::Client(req.client), &Message::Reply(reply));
                }
                return;
            }
        }
        if self.is_leader() {
            let mut w = bft_core::codec::Writer::new();
            bft_core::message::encode_message(&mut w, &Message::Request(req));
            let _ = self.node.propose(vec![], w.finish()); // dropped if leadership just moved
        }
    }

    fn send(&mut self, to: Peer, msg: &Message) {
        let frame = wire::encode_frame(Peer::Replica(self.me), to, msg, self.crypto.as_ref());
        self.outputs.push_back((to, frame));
    }

    fn send_raft(&mut self, msgs: Vec<RaftMessage>) {
        for m in msgs {
            let Some(to) = (m.to as usize).checked_sub(1).filter(|t| *t < self.n) else {
                continue;
            };
            if m.get_msg_type() == MessageType::MsgSnapshot {
                self.snapshots_sent.push(m.to);
            }
            if let Ok(bytes) = m.write_to_bytes() {
                self.send(Peer::Replica(to as ReplicaId), &Message::Raft(bytes));
            }
        }
    }

    /// Applies committed entries: new requests, in order, through one
    /// `execute_batch` per stretch between snapshot indices.
    fn apply(&mut self, entries: Vec<Entry>) {
        let mut latest = std::collections::BTreeMap::new();
        let mut run: Vec<Request> = Vec::new();
        for e in entries {
            let fresh = self.fresh_request(&e, &mut latest);
            if let Some(log) = self.applied_log.as_mut() {
                let kind = [e.get_entry_type() as u8];
                log.push(AppliedEntry {
                    index: e.index,
                    digest: bft_core::crypto::hash_parts(&[&e.term.to_le_bytes(), &kind, &e.data]),
                    executed: fresh.iter().map(|r| (r.client, r.seq)).collect(),
                });
            }
            run.extend(fresh);
            if e.index % self.snapshot_every == 0 {
                self.execute(std::mem::take(&mut run));
                self.take_snapshot(e.index, e.term);
            }
        }
        self.execute(run);
    }

    fn execute(&mut self, run: Vec<Request>) {
        if run.is_empty() {
            return;
        }
        let ops: Vec<&[u8]> = run.iter().map(|r| r.op.as_slice()).collect();
        let results = self.app.execute_batch(&ops);
        let leader = self.is_leader();
        for (req, result) in run.into_iter().zip(results) {
            self.stats.requests_executed += 1;
            self.clients.record(req.client, req.seq, result.clone());
            if leader {
                let reply = Reply {
                    client: req.client,
                    seq: req.seq,
                    result,
                };
                self.send(Peer::Client(req.client), &Message::Reply(reply));
            }
        }
    }

    /// Snapshots the App and client table as of entry `index`, compacts the
    /// log behind the previous snapshot and, on disk, rewrites the log.
    fn take_snapshot(&mut self, index: u64, term: u64) {
        let store = self.node.raft.raft_log.store.clone();
        let mut snap = Snapshot {
            data: bft_core::replica::encode_snapshot(self.app.as_ref(), &self.clients).into(),
            ..Default::default()
        };
        let meta = snap.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(store.conf_state());
        store.compact_behind(snap);
        self.persist(|w| w.rewrite(&store));
        if self.applied_log.is_some() {
            self.snapshots_taken.push((index, self.state_digest()));
        }
        use raft::Storage as _;
        let first = store.first_index().unwrap_or(1);
        assert!(
            index + 1 - first.min(index + 1) <= 2 * self.snapshot_every,
            "the log holds entries from {first}: more than two snapshot intervals behind {index}"
        );
    }

    /// Installs a snapshot the leader sent: the App, the client table and
    /// the log restart from it. Raft trusts its authenticated peers (crash
    /// faults only) and the message was checked to decode before it was
    /// stepped, so a snapshot that does not restore is a bug: fail-stop.
    fn install(&mut self, snap: Snapshot) {
        let index = snap.get_metadata().index;
        self.clients = restore(self.app.as_mut(), &snap)
            .unwrap_or_else(|e| panic!("raft: the leader's snapshot at {index}: {e}"));
        let store = self.node.raft.raft_log.store.clone();
        if let Err(e) = store.install(snap) {
            panic!("raft: installing the snapshot at {index}: {e}");
        }
        self.persist(|w| w.rewrite(&store));
        self.stats.state_transfers_applied += 1;
    }

    /// Applies `write` to the write-ahead log, if there is one. A replica
    /// that cannot persist stops (fail-stop, as etcd): answering on without
    /// its promises on disk could let a restart vote twice in one term.
    fn persist(&mut self, write: impl FnOnce(&mut RaftWal) -> Result<(), WalError>) {
        if let Some(wal) = self.wal.as_mut() {
            if let Err(e) = write(wal) {
                panic!("{e}: the replica stops, it cannot keep what it promised");
            }
        }
    }

    /// The request in entry `e`, if it is one and new for its client.
    fn fresh_request(
        &self,
        e: &Entry,
        latest: &mut std::collections::BTreeMap<bft_core::message::ClientId, u64>,
    ) -> Option<Request> {
        if e.get_entry_type() != EntryType::EntryNormal || e.data.is_empty() {
            return None;
        }
        let mut r = bft_core::codec::Reader::new(&e.data);
        let Ok(Message::Request(req)) = bft_core::message::decode_message(&mut r) else {
            return None;
        };
        let last = latest
            .get(&req.client)
            .copied()
            .or_else(|| self.clients.last_seq(req.client));
        if last.is_some_and(|s| s >= req.seq) {
            return None; // proposed twice (a retransmission after a leader change)
        }
        latest.insert(req.client, req.seq);
        Some(req)
    }

    /// Handles raft-rs's `Ready`: send, persist (in memory), apply, advance.
    fn on_ready(&mut self) {
        if self.is_leader() != self.was_leader {
            self.was_leader = self.is_leader();
            if self.was_leader && self.announce {
                eprintln!(
                    "raft replica {}: became leader (term {})",
                    self.me, self.node.raft.term
                );
            }
        }
        if !self.node.has_ready() {
            return;
        }
        let mut ready = self.node.ready();
        self.send_raft(ready.take_messages());
        if !ready.snapshot().is_empty() {
            self.install(ready.snapshot().clone());
        }
        let committed = ready.take_committed_entries();
        self.apply(committed);
        let store = self.node.raft.raft_log.store.log().clone();
        if !ready.entries().is_empty() {
            self.persist(|w| w.append_entries(ready.entries()));
            let _ = store.wl().append(ready.entries());
        }
        if let Some(hs) = ready.hs() {
            self.persist(|w| w.set_hard_state(hs));
            store.wl().set_hardstate(hs.clone());
        }
        // Votes and acknowledgements leave only once what they promise is
        // on disk: `poll_send` syncs before handing out any frame.
        self.send_raft(ready.take_persisted_messages());
        let mut light = self.node.advance(ready);
        if let Some(commit) = light.commit_index() {
            store.wl().mut_hard_state().set_commit(commit);
            // A commit index lost in a crash is relearnt from the leader.
            let hs = store.rl().hard_state().clone();
            self.persist(|w| w.set_hard_state(&hs));
        }
        self.send_raft(light.take_messages());
        let committed = light.take_committed_entries();
        self.apply(committed);
        self.node.advance_apply();
        // raft-rs holds a follower sent a snapshot until told how it went;
        // the transport cannot know (the frame may be lost with its
        // connection). Reporting it sent makes the leader probe after it: a
        // follower that never got it rejects the probe and is sent it again.
        for to in std::mem::take(&mut self.snapshots_sent) {
            self.node.report_snapshot(to, raft::SnapshotStatus::Finish);
        }
    }
}

impl Engine for RaftEngine {
    fn id(&self) -> ReplicaId {
        self.me
    }

    fn handle_message(&mut self, _now: Time, frame: &[u8]) {
        self.authenticated_client = None;
        match wire::open(frame, self.n, self.crypto.as_ref()) {
            Ok((Peer::Client(_), Message::Request(req))) => self.on_request(req),
            Ok((Peer::Replica(_), Message::Raft(bytes))) => {
                match RaftMessage::parse_from_bytes(&bytes) {
                    Ok(m) if !snapshot_decodes(&m) => self.stats.dropped_undecodable += 1,
                    Ok(m) => {
                        let _ = self.node.step(m);
                        self.redraw_election_timeout();
                    }
                    Err(_) => self.stats.dropped_undecodable += 1,
                }
            }
            Ok(_) => self.stats.dropped_invalid += 1,
            Err(wire::FrameError::BadMac) => self.stats.dropped_bad_auth += 1,
            Err(wire::FrameError::UnknownSender) => self.stats.dropped_unknown_sender += 1,
            Err(_) => self.stats.dropped_undecodable += 1,
        }
        self.on_ready();
    }

    fn handle_timeout(&mut self, now: Time) {
        while self.next_tick <= now {
            self.node.tick();
            self.redraw_election_timeout();
            self.next_tick = self.next_tick + self.tick;
        }
        self.on_ready();
    }

    fn poll_timeout(&self) -> Option<Time> {
        Some(self.next_tick)
    }

    fn poll_send(&mut self) -> Option<(Peer, Vec<u8>)> {
        // Group commit: one sync covers every Ready of the turn so far.
        self.persist(RaftWal::sync);
        self.outputs.pop_front()
    }

    fn rejected(&self) -> u64 {
        self.stats.dropped_bad_auth + self.stats.dropped_undecodable
    }

    fn authenticated_client(&self) -> Option<bft_core::message::ClientId> {
        self.authenticated_client
    }
}

/// A snapshot message's state decodes (other messages carry none).
fn snapshot_decodes(m: &RaftMessage) -> bool {
    m.get_msg_type() != MessageType::MsgSnapshot
        || bft_core::replica::split_snapshot(&m.get_snapshot().data).is_some()
}

/// Restores the App from a snapshot's state; returns its client table.
fn restore(app: &mut dyn App, snap: &Snapshot) -> Result<ClientTable, String> {
    let (state, clients) = bft_core::replica::split_snapshot(&snap.data)
        .ok_or_else(|| "its state does not decode".to_string())?;
    app.restore(state).map_err(|e| e.to_string())?;
    Ok(clients)
}
