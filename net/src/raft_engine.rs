//! The Raft baseline: tikv's raft-rs driven by our event loop and transport,
//! with the same App, client protocol and exactly-once table as the BFT replica.
//!
//! - Every operation, reads included, goes through the log (linearizable).
//! - Clients send to every replica; the leader proposes, every replica applies
//!   committed entries, and the leader replies (n = 3 gives f = 0 in the client:
//!   one reply is enough, as Raft trusts its replicas).
//! - Time: one raft tick per `TICK` (etcd's defaults: heartbeat 100 ms,
//!   election 1 s). Election timeouts are fixed per replica (10 + id ticks)
//!   rather than drawn from raft-rs's unseeded RNG, so runs stay reproducible.
//! - Storage is raft-rs's `MemStorage`: like the BFT replica on the network,
//!   nothing is persisted across a restart.

use crate::replica_loop::Engine;
use bft_core::app::App;
use bft_core::crypto::{Crypto, Peer};
use bft_core::message::{Message, ReplicaId, Reply, Request, RequestAuth};
use bft_core::replica::{ClientTable, Stats};
use bft_core::time::{Span, Time};
use bft_core::wire;
use protobuf::Message as _;
use raft::prelude::{Config, Entry, EntryType, Message as RaftMessage};
use raft::storage::MemStorage;
use raft::{RawNode, StateRole};
use std::collections::VecDeque;

/// One raft tick.
pub const TICK: Span = Span::from_millis(100);

pub struct RaftEngine {
    me: ReplicaId,
    n: usize,
    node: RawNode<MemStorage>,
    crypto: Box<dyn Crypto + Send>,
    app: Box<dyn App>,
    clients: ClientTable,
    next_tick: Time,
    outputs: VecDeque<(Peer, Vec<u8>)>,
    stats: Stats,
    was_leader: bool,
    authenticated_client: Option<bft_core::message::ClientId>,
}

#[derive(Debug, thiserror::Error)]
#[error("raft: {0}")]
pub struct RaftError(#[from] raft::Error);

impl RaftEngine {
    pub fn new(
        me: ReplicaId,
        n: usize,
        crypto: Box<dyn Crypto + Send>,
        app: Box<dyn App>,
    ) -> Result<RaftEngine, RaftError> {
        let id = me as u64 + 1; // raft ids start at 1
        let election = 10 + me as usize;
        let cfg = Config {
            id,
            election_tick: election,
            heartbeat_tick: 1,
            min_election_tick: election,
            max_election_tick: election + 1,
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            ..Default::default()
        };
        let voters: Vec<u64> = (1..=n as u64).collect();
        let storage = MemStorage::new_with_conf_state((voters, vec![]));
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let node = RawNode::new(&cfg, storage, &logger)?;
        Ok(RaftEngine {
            me,
            n,
            node,
            crypto,
            app,
            clients: ClientTable::default(),
            next_tick: Time::ZERO + TICK,
            outputs: VecDeque::new(),
            stats: Stats::default(),
            was_leader: false,
            authenticated_client: None,
        })
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
        let bytes = Request::auth_bytes(req.client, req.seq, &req.op);
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
            if let Ok(bytes) = m.write_to_bytes() {
                self.send(Peer::Replica(to as ReplicaId), &Message::Raft(bytes));
            }
        }
    }

    /// Applies committed entries: new requests, in order, through one `execute_batch`.
    fn apply(&mut self, entries: Vec<Entry>) {
        let mut latest = std::collections::BTreeMap::new();
        let mut run: Vec<Request> = Vec::new();
        for e in entries {
            if e.get_entry_type() != EntryType::EntryNormal || e.data.is_empty() {
                continue;
            }
            let mut r = bft_core::codec::Reader::new(&e.data);
            let Ok(Message::Request(req)) = bft_core::message::decode_message(&mut r) else {
                continue;
            };
            let last = latest
                .get(&req.client)
                .copied()
                .or_else(|| self.clients.last_seq(req.client));
            if last.is_some_and(|s| s >= req.seq) {
                continue; // proposed twice (a retransmission after a leader change)
            }
            latest.insert(req.client, req.seq);
            run.push(req);
        }
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

    /// Handles raft-rs's `Ready`: send, persist (in memory), apply, advance.
    fn on_ready(&mut self) {
        if self.is_leader() != self.was_leader {
            self.was_leader = self.is_leader();
            if self.was_leader {
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
        let committed = ready.take_committed_entries();
        self.apply(committed);
        let store = self.node.raft.raft_log.store.clone();
        if !ready.entries().is_empty() {
            let _ = store.wl().append(ready.entries());
        }
        if let Some(hs) = ready.hs() {
            store.wl().set_hardstate(hs.clone());
        }
        self.send_raft(ready.take_persisted_messages());
        let mut light = self.node.advance(ready);
        if let Some(commit) = light.commit_index() {
            store.wl().mut_hard_state().set_commit(commit);
        }
        self.send_raft(light.take_messages());
        let committed = light.take_committed_entries();
        self.apply(committed);
        self.node.advance_apply();
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
                    Ok(m) => {
                        let _ = self.node.step(m);
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
            self.next_tick = self.next_tick + TICK;
        }
        self.on_ready();
    }

    fn poll_timeout(&self) -> Option<Time> {
        Some(self.next_tick)
    }

    fn poll_send(&mut self) -> Option<(Peer, Vec<u8>)> {
        self.outputs.pop_front()
    }

    fn rejected(&self) -> u64 {
        self.stats.dropped_bad_auth + self.stats.dropped_undecodable
    }

    fn authenticated_client(&self) -> Option<bft_core::message::ClientId> {
        self.authenticated_client
    }
}
