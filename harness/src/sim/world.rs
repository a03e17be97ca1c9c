//! The simulated world: replicas, clients, a seeded network, one event queue.
//! The replicas are BFT or, with `SimOptions::raft`, Raft ([`SimReplica`]):
//! the same network, crashes, clients and checkers serve both.
//!
//! No threads, sockets or clocks: time advances from event to event, every
//! random choice comes from the scenario's seed, and every collection iterated
//! is ordered, so a seed replays byte for byte.

use super::byzantine_client::ByzantineClient;
use super::checker::Checker;
use super::equivocate::equivocate;
use super::mutate::mutate;
use super::node::{Event, Persisted, SimReplica};
use super::scenario::{CryptoKind, Scenario, SimOptions};
use super::slow_leader::SlowLeader;
use bft_core::app::ChainApp;
use bft_core::client::{Client, ClientAuth, ClientOutput};
use bft_core::config::Config;
use bft_core::crypto::{signing_key_from_seed, Crypto, Digest, KeyedCrypto, Peer, SimCrypto};
use bft_core::message::{ClientId, Instance, ReplicaId};
use bft_core::replica::DurableRecord;
use bft_core::replica::{Replica, Stats};
use bft_core::rng::Rng;
use bft_core::time::{Span, Time};
use bft_core::wire;
use bft_net::raft_engine::RaftEngine;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

/// Simulated time after the heal within which every request must complete.
pub const LIVENESS_BOUND: Span = Span::from_millis(60_000);
/// Simulated time the world keeps running after the last request completes.
const SETTLE: Span = Span::from_millis(1_500);
/// Upper bound on processed events: a run past it is reported, not hung.
const EVENTS_MAX: u64 = 20_000_000;
/// Raft's tick in the simulator: elections take 10–20 ticks, 100–200 ms,
/// the scale of the BFT replica's timeouts that the fault schedules assume.
pub const RAFT_TICK: Span = Span::from_millis(10);
/// Client retransmission timeout: half a request timeout, as in the binary
/// (500 ms against 1 s), so an honest client's signed retransmission
/// reaches replicas within a timeout of its first copy (it keeps that
/// copy's age: `Pending::hold_back`) and before they let it go.
const CLIENT_RETRANSMIT: Span = Span::from_millis(50);
/// Client ids start here, so they never collide with replica ids in traces.
pub const CLIENT_ID_BASE: ClientId = 1_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Node {
    Replica(usize),
    Client(usize),
    /// A Byzantine client's turn (it receives nothing).
    ByzantineClient(usize),
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Payload {
    Frame { to: Node, frame: Vec<u8> },
    Crash(ReplicaId),
    Restart(ReplicaId),
}

struct ReplicaSlot {
    id: ReplicaId,
    copy: u8,
    node: Option<SimReplica>,
    /// What survives a crash: Raft's log taken at the crash; for BFT, the
    /// replica's journal applied as it was written (what a disk holds).
    durable: Option<Persisted>,
    timer: Option<Time>,
}

struct ClientSlot {
    client: Client,
    done: u64,
    timer: Option<Time>,
    /// Not started yet: it submits its first request then.
    start_at: Option<Time>,
}

/// One delivered instance, for experiments that look at when things happened.
#[derive(Clone, Copy, Debug)]
pub struct DeliveryRecord {
    pub at: Time,
    pub replica: ReplicaId,
    pub instance: Instance,
}

#[derive(Debug)]
pub struct RunResult {
    pub scenario: Scenario,
    pub violations: Vec<String>,
    pub decided: usize,
    pub completed: u64,
    pub submitted: u64,
    pub events: u64,
    pub end: Time,
    pub last_completion: Time,
    pub trace: u64,
    pub max_regency: u64,
    pub stats: Stats,
    pub deliveries: Vec<DeliveryRecord>,
    /// Final (replica, last executed, state digest) of every live correct replica.
    pub finals: Vec<(ReplicaId, Instance, Digest)>,
    pub latency_sum: Span,
    /// Frames the equivocating leader rewrote.
    pub equivocations: u64,
    /// More than f replicas were faulty at the end (Byzantine, or still
    /// rejoining after losing their state): liveness was not required.
    pub beyond_f: bool,
    /// The longest an honest request submitted after the heal waited.
    pub max_latency_after_heal: Span,
}

impl RunResult {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }
}

pub struct World {
    sc: Scenario,
    opts: SimOptions,
    rng: Rng,
    now: Time,
    seq: u64,
    queue: BinaryHeap<Reverse<(Time, u64, Payload)>>,
    replicas: Vec<ReplicaSlot>,
    clients: Vec<ClientSlot>,
    byzantine_clients: Vec<ByzantineClient>,
    slow: Option<SlowLeader>,
    /// While the slow leader leads: since when; and its longest term.
    slow_since: Option<Time>,
    longest_slow_term: Span,
    checker: Checker,
    byzantine: Vec<ReplicaId>,
    trace: u64,
    events: u64,
    last_completion: Time,
    latency_sum: Span,
    deliveries: Vec<DeliveryRecord>,
    crashed_stats: Stats,
    equivocations: u64,
    max_latency_after_heal: Span,
    /// Honest requests submitted after the heal that completed.
    completed_after_heal: u64,
    /// The highest regency of a correct replica when the heal came.
    regency_at_heal: Option<u64>,
}

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

fn master_key(seed: u64) -> [u8; 32] {
    bft_core::crypto::hash_parts(&[b"sim-master", &seed.to_le_bytes()])
}

impl World {
    pub fn new(seed: u64, opts: &SimOptions) -> World {
        World::from_scenario(Scenario::derive(seed, opts), opts)
    }

    /// A world for a hand-written scenario (tests pin exact fault schedules).
    pub fn from_scenario(sc: Scenario, opts: &SimOptions) -> World {
        let seed = sc.seed;
        let mut byzantine = sc.byzantine();
        if opts.equivocate && !opts.raft && !byzantine.contains(&0) {
            byzantine.push(0); // regency 0's leader
        }
        let mut w = World {
            rng: Rng::new(seed ^ 0x005E_ED0F_5EED),
            byzantine,
            sc,
            opts: opts.clone(),
            now: Time::ZERO,
            seq: 0,
            queue: BinaryHeap::new(),
            replicas: Vec::new(),
            clients: Vec::new(),
            byzantine_clients: Vec::new(),
            slow: None,
            slow_since: None,
            longest_slow_term: Span::ZERO,
            checker: Checker::default(),
            trace: 0xcbf2_9ce4_8422_2325,
            events: 0,
            last_completion: Time::ZERO,
            latency_sum: Span::ZERO,
            deliveries: Vec::new(),
            crashed_stats: Stats::default(),
            equivocations: 0,
            max_latency_after_heal: Span::ZERO,
            completed_after_heal: 0,
            regency_at_heal: None,
        };
        for id in 0..w.sc.n as ReplicaId {
            let copies = if w.sc.twins.contains(&id) { 2 } else { 1 };
            for copy in 0..copies {
                let (node, durable) = w.make_replica(id, copy, None);
                w.replicas.push(ReplicaSlot {
                    id,
                    copy,
                    node: Some(node),
                    durable,
                    timer: None,
                });
            }
        }
        for c in 0..opts.clients {
            let id = CLIENT_ID_BASE + c as ClientId;
            let auth = if w.sc.signed_clients {
                ClientAuth::Signature
            } else {
                ClientAuth::Macs
            };
            let mut client = Client::new(
                id,
                w.sc.n,
                w.crypto_for(Peer::Client(id)),
                auth,
                CLIENT_RETRANSMIT,
            );
            if opts.raft {
                client = client.trusting_one_reply(); // the Raft leader replies alone
            }
            // With Byzantine clients about, half the honest ones start at
            // the heal, so every run measures requests made under attack
            // on a healed network (the latency bound is about those).
            let late = (opts.byzantine_clients > 0 || opts.slow_leader) && c % 2 == 1;
            w.clients.push(ClientSlot {
                client,
                done: 0,
                timer: None,
                start_at: late.then_some(w.sc.heal),
            });
        }
        w.slow = w.sc.slow_mode.map(|m| SlowLeader::new(m, CLIENT_ID_BASE));
        for k in 0..opts.byzantine_clients {
            let id = CLIENT_ID_BASE + (opts.clients + k) as ClientId;
            let crypto = w.crypto_for(Peer::Client(id));
            let t = w.sc.request_timeout;
            w.byzantine_clients
                .push(ByzantineClient::new(id, w.sc.n, crypto, seed, t));
        }
        for c in w.sc.crashes.clone() {
            w.push(c.at, Payload::Crash(c.replica));
            w.push(c.restart, Payload::Restart(c.replica));
        }
        w
    }

    fn crypto_for(&self, me: Peer) -> Box<dyn Crypto + Send> {
        let master = master_key(self.sc.seed);
        match self.opts.crypto {
            CryptoKind::Sim => Box::new(SimCrypto::new(me, master, self.sc.n)),
            CryptoKind::Ed25519 => {
                let seed = self.sc.seed;
                let replicas = (0..self.sc.n as ReplicaId)
                    .map(|r| signing_key_from_seed(seed, Peer::Replica(r)).verifying_key())
                    .collect();
                let all = self.opts.clients + self.opts.byzantine_clients;
                let clients = (0..all as ClientId)
                    .map(|c| {
                        let id = CLIENT_ID_BASE + c;
                        (
                            id,
                            signing_key_from_seed(seed, Peer::Client(id)).verifying_key(),
                        )
                    })
                    .collect();
                let keys = KeyedCrypto::new(me, signing_key_from_seed(seed, me), replicas, clients);
                Box::new(keys.expect("seeded ed25519 keys are never low-order"))
            }
        }
    }

    fn config_for(&self, id: ReplicaId) -> Config {
        let mut cfg = Config::new(self.sc.n, id);
        cfg.batch_max_requests = self.sc.batch;
        cfg.pipeline = self.sc.pipeline;
        cfg.checkpoint_interval = self.sc.checkpoint_interval;
        cfg.request_timeout = self.sc.request_timeout;
        cfg.view_change_timeout = self.sc.view_change_timeout;
        cfg.state_transfer_timeout = self.sc.request_timeout;
        cfg.broken_quorum_for_tests = self.opts.broken_quorum;
        cfg.no_strikes_for_tests = self.opts.no_strikes;
        cfg.no_pace_for_tests = self.opts.no_pace;
        cfg
    }

    /// A replica (fresh, or restarted from what survived its crash) and, for
    /// BFT, the durable state its journal starts from.
    fn make_replica(
        &self,
        id: ReplicaId,
        copy: u8,
        durable: Option<Persisted>,
    ) -> (SimReplica, Option<Persisted>) {
        let crypto = self.crypto_for(Peer::Replica(id));
        let app: Box<dyn bft_core::app::App> = match self.opts.app {
            super::SimApp::Chain => Box::new(ChainApp::default()),
            super::SimApp::Kv => Box::new(bft_workloads::kv::KvApp::new()),
        };
        let n = self.sc.n;
        let seed = self.sc.seed.wrapping_mul(31).wrapping_add(copy as u64) ^ self.now.0;
        if self.opts.raft {
            let (engine, replay_through) = match durable {
                Some(Persisted::Raft(storage)) => {
                    let committed = storage.commit();
                    let e = RaftEngine::restart(id, n, crypto, app, storage, seed);
                    (e, committed)
                }
                _ => (RaftEngine::new(id, n, crypto, app, seed), 0),
            };
            let engine = engine.expect("the simulator builds valid Raft nodes");
            let engine = engine
                .ticking(RAFT_TICK, self.now)
                .snapshot_every(self.sc.checkpoint_interval);
            return (SimReplica::raft(engine, replay_through), None);
        }
        let cfg = self.config_for(id);
        let restart = self.now > Time::ZERO;
        let disk = match durable {
            Some(Persisted::Bft(d)) => *d,
            _ => bft_core::replica::genesis_durable(app.as_ref()),
        };
        let amnesiac = restart && self.opts.amnesia && !self.opts.amnesia_without_rule;
        let replica = if !restart {
            Replica::new(cfg, crypto, app, seed)
        } else if amnesiac {
            // Runs numbered by the simulated clock: later restarts, higher runs.
            Replica::amnesiac(cfg, crypto, app, seed, self.now, self.now.0)
        } else {
            Replica::recover(cfg, crypto, app, disk.clone(), seed, self.now)
        };
        let replica = replica
            .expect("the simulator builds valid configurations")
            .with_journal();
        // A new run starts its log with its own state (the binary rewrites
        // the log with it before any frame leaves).
        let disk = if amnesiac { replica.durable() } else { disk };
        let node = SimReplica::Bft(Box::new(replica));
        (node, Some(Persisted::Bft(Box::new(disk))))
    }

    fn push(&mut self, at: Time, p: Payload) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, p)));
    }

    fn is_correct(&self, id: ReplicaId) -> bool {
        !self.byzantine.contains(&id)
    }

    // ------------------------------------------------------------ network

    fn side(&self, slot: usize) -> Option<bool> {
        let s = &self.replicas[slot];
        if self.now < self.sc.heal && !self.sc.twins.is_empty() {
            if self.sc.twins.contains(&s.id) {
                return Some(s.copy == 1);
            }
            let round = self.now.0 / self.sc.round.0.max(1);
            let h = fnv(fnv(self.sc.seed, &round.to_le_bytes()), &s.id.to_le_bytes());
            return Some(h & 1 == 1);
        }
        None
    }

    fn partitioned(&self, a: usize, b: usize) -> bool {
        if let (Some(x), Some(y)) = (self.side(a), self.side(b)) {
            if x != y {
                return true;
            }
        }
        let (ia, ib) = (self.replicas[a].id, self.replicas[b].id);
        self.sc.partitions.iter().any(|p| {
            p.start <= self.now
                && self.now < p.end
                && p.side_a.contains(&ia) != p.side_a.contains(&ib)
        })
    }

    fn mutating(&mut self, from: usize) -> bool {
        let id = self.replicas[from].id;
        if self.sc.mutated != Some(id) {
            return false;
        }
        let round = self.now.0 / self.sc.round.0.max(1);
        let active = fnv(self.sc.seed ^ 0xB12, &round.to_le_bytes()) % 2 == 0;
        active && self.rng.chance(self.sc.mutate_rate)
    }

    /// The equivocating leader: replica 0 for BFT, the first Raft leader
    /// (marked Byzantine when it is first seen leading, before it lies).
    fn equivocator(&mut self, from: usize) -> Option<&dyn Crypto> {
        if !self.opts.equivocate {
            return None;
        }
        let id = self.replicas[from].id;
        let node = self.replicas[from].node.as_ref()?;
        if self.opts.raft && self.byzantine.is_empty() && node.is_leader() {
            self.byzantine.push(id);
        }
        self.byzantine.contains(&id).then(|| node.crypto())
    }

    fn route_from_replica(&mut self, from: usize, to: Peer, frame: Vec<u8>) {
        let n = self.sc.n;
        let lie = self
            .equivocator(from)
            .and_then(|crypto| equivocate(&frame, to, n, crypto));
        self.equivocations += lie.is_some() as u64;
        let frame = lie.unwrap_or(frame);
        let mut hold = Span::ZERO;
        let frame = match self.slow.as_mut() {
            Some(slow) if self.replicas[from].id == 0 => {
                let Some(node) = &self.replicas[from].node else {
                    return;
                };
                hold = slow.hold(self.sc.request_timeout);
                let ran = |c, s| {
                    node.bft()
                        .is_some_and(|r| r.client_last_seq(c).is_some_and(|l| l >= s))
                };
                match slow.rewrite(&frame, to, n, node.crypto(), &ran) {
                    Some(f) => f,
                    None => return,
                }
            }
            _ => frame,
        };
        let frame = if self.mutating(from) {
            let slot = &self.replicas[from];
            let Some(node) = &slot.node else { return };
            match mutate(&frame, to, self.sc.n, node.crypto(), &mut self.rng) {
                Some(f) => f,
                None => return,
            }
        } else {
            frame
        };
        match to {
            Peer::Replica(id) => {
                let targets: Vec<usize> = (0..self.replicas.len())
                    .filter(|&i| self.replicas[i].id == id && !self.partitioned(from, i))
                    .collect();
                for t in targets {
                    self.transmit_after(hold, Node::Replica(t), frame.clone());
                }
            }
            Peer::Client(c) => {
                if let Some(idx) = c.checked_sub(CLIENT_ID_BASE) {
                    if (idx as usize) < self.clients.len() {
                        self.transmit(Node::Client(idx as usize), frame);
                    }
                }
            }
        }
    }

    fn route_from_client(&mut self, to: ReplicaId, frame: Vec<u8>) {
        let targets: Vec<usize> = (0..self.replicas.len())
            .filter(|&i| self.replicas[i].id == to)
            .collect();
        for t in targets {
            self.transmit(Node::Replica(t), frame.clone());
        }
    }

    fn transmit(&mut self, to: Node, frame: Vec<u8>) {
        self.transmit_after(Span::ZERO, to, frame);
    }

    /// Applies loss, duplication, delay and reordering, then queues the
    /// frame, `hold` later than the network alone would.
    fn transmit_after(&mut self, hold: Span, to: Node, frame: Vec<u8>) {
        let faulty = self.now < self.sc.heal;
        if faulty && self.rng.chance(self.sc.loss) {
            return;
        }
        let copies = if faulty && self.rng.chance(self.sc.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let (lo, hi) = (self.sc.delay_min.0, self.sc.delay_max.0);
            let mut delay = self.rng.range(lo, hi);
            if faulty && self.rng.chance(self.sc.reorder) {
                delay += self.rng.range(0, 5 * hi);
            }
            self.push(
                self.now + hold + Span(delay),
                Payload::Frame {
                    to,
                    frame: frame.clone(),
                },
            );
        }
    }

    // ------------------------------------------------------------ nodes

    fn drain_replica(&mut self, slot: usize) {
        let id = self.replicas[slot].id;
        let correct = self.is_correct(id);
        loop {
            let Some(node) = self.replicas[slot].node.as_mut() else {
                return;
            };
            let Some(out) = node.poll_event() else { break };
            match out {
                Event::Send { to, frame } => self.route_from_replica(slot, to, frame),
                Event::Deliver {
                    instance,
                    digest,
                    executed,
                    replay,
                } => {
                    if correct {
                        self.checker.on_deliver(id, instance, digest, &executed);
                    }
                    if correct && !replay {
                        self.deliveries.push(DeliveryRecord {
                            at: self.now,
                            replica: id,
                            instance,
                        });
                    }
                }
                Event::Checkpoint { instance, digest } => {
                    if correct {
                        self.checker.on_checkpoint(id, instance, digest);
                    }
                }
            }
        }
        self.persist_journal(slot);
        if let Some(node) = self.replicas[slot].node.as_ref().and_then(SimReplica::bft) {
            let window = node.config().log_window();
            self.checker
                .bounds(id, node.log_len(), window, node.pending_len());
        }
        if self.opts.trace {
            if let Some(node) = &self.replicas[slot].node {
                println!(
                    "{:?}   r{}.{} {}",
                    self.now,
                    id,
                    self.replicas[slot].copy,
                    node.summary()
                );
            }
        }
        let timer = self.replicas[slot]
            .node
            .as_ref()
            .and_then(|n| n.poll_timeout());
        self.replicas[slot].timer = timer;
    }

    fn drain_client(&mut self, idx: usize) {
        while let Some(out) = self.clients[idx].client.poll_output() {
            match out {
                ClientOutput::Send { to, frame } => self.route_from_client(to, frame),
                ClientOutput::Complete { latency, .. } => {
                    if self.now.0.saturating_sub(latency.0) >= self.sc.heal.0 {
                        self.max_latency_after_heal = self.max_latency_after_heal.max(latency);
                        self.completed_after_heal += 1;
                    }
                    self.clients[idx].done += 1;
                    self.last_completion = self.now;
                    self.latency_sum = Span(self.latency_sum.0 + latency.0);
                    self.submit_next(idx);
                }
            }
        }
        self.clients[idx].timer = self.clients[idx].client.poll_timeout();
    }

    fn submit_next(&mut self, idx: usize) {
        let c = &mut self.clients[idx];
        if c.done >= self.opts.requests_per_client || !c.client.is_idle() {
            return;
        }
        let op = match self.opts.app {
            super::SimApp::Chain => {
                let mut op = c.client.id().to_le_bytes().to_vec();
                op.extend_from_slice(&self.rng.next_u64().to_le_bytes());
                op
            }
            super::SimApp::Kv => kv_op(&mut self.rng).encode(),
        };
        let seq = c.client.submit(self.now, op);
        let id = c.client.id();
        self.checker.submitted((id, seq));
    }

    fn deliver_frame(&mut self, to: Node, frame: Vec<u8>) {
        self.trace = fnv(fnv(self.trace, &self.now.0.to_le_bytes()), &frame);
        if self.opts.trace {
            let kind =
                wire::peek(&frame, self.sc.n).map(|(from, m)| format!("{from:?} {}", m.kind()));
            println!(
                "{:?} -> {:?}: {}",
                self.now,
                to,
                kind.unwrap_or_else(|e| e.to_string())
            );
        }
        match to {
            Node::Replica(slot) => {
                if let Some(node) = self.replicas[slot].node.as_mut() {
                    node.handle_message(self.now, &frame);
                    self.drain_replica(slot);
                }
            }
            Node::Client(idx) => {
                self.clients[idx].client.handle_message(self.now, &frame);
                self.drain_client(idx);
            }
            Node::ByzantineClient(_) => {} // it ignores what it gets back
        }
    }

    /// Applies a BFT replica's durable changes to its "disk", as the binary's
    /// write-ahead log does before the step's frames leave.
    fn persist_journal(&mut self, slot: usize) {
        let s = &mut self.replicas[slot];
        let Some(node) = s.node.as_mut() else { return };
        let mut records = node.take_journal();
        if self.opts.lossy_journal_for_tests {
            records.retain(|r| !matches!(r, DurableRecord::Accepted { .. }));
        }
        if let Some(Persisted::Bft(disk)) = s.durable.as_mut() {
            for rec in records {
                if let Err(e) = disk.apply(rec) {
                    let id = s.id;
                    self.checker.journal_invalid(id, &e.to_string());
                    return;
                }
            }
        }
    }

    fn crash(&mut self, id: ReplicaId) {
        for i in 0..self.replicas.len() {
            let slot = &mut self.replicas[i];
            if slot.id != id {
                continue;
            }
            let Some(node) = slot.node.take() else {
                continue;
            };
            add_stats(&mut self.crashed_stats, node.stats());
            slot.timer = None;
            if let Some(storage) = node.raft_storage() {
                slot.durable = Some(Persisted::Raft(storage));
            }
            let lost = match (&slot.durable, node.bft()) {
                (Some(Persisted::Bft(disk)), Some(r)) => disk.image() != r.durable().image(),
                _ => false,
            };
            if self.opts.amnesia {
                slot.durable = None;
            }
            if lost {
                self.checker.journal_incomplete(id);
            }
        }
    }

    fn restart(&mut self, id: ReplicaId) {
        for slot in 0..self.replicas.len() {
            if self.replicas[slot].id == id && self.replicas[slot].node.is_none() {
                let durable = self.replicas[slot].durable.take();
                let copy = self.replicas[slot].copy;
                let (node, durable) = self.make_replica(id, copy, durable);
                self.replicas[slot].node = Some(node);
                self.replicas[slot].durable = durable;
                if self.opts.raft || self.opts.amnesia {
                    // Raft rebuilds the App by applying its log again from the
                    // first entry; an amnesiac BFT replica from genesis.
                    self.checker.forget_executions(id);
                }
                self.drain_replica(slot);
            }
        }
    }

    fn all_done(&self) -> bool {
        self.clients
            .iter()
            .all(|c| c.done >= self.opts.requests_per_client)
    }

    /// The earliest timer, ties broken by node order.
    fn next_timer(&self) -> Option<(Time, Node)> {
        let r = self
            .replicas
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.timer.map(|t| (t, Node::Replica(i))));
        let c = self
            .clients
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.start_at.or(s.timer).map(|t| (t, Node::Client(i))));
        let b = self
            .byzantine_clients
            .iter()
            .enumerate()
            .map(|(i, b)| (b.due(), Node::ByzantineClient(i)));
        r.chain(c).chain(b).min()
    }

    pub fn run(mut self) -> RunResult {
        for idx in 0..self.clients.len() {
            if self.clients[idx].start_at.is_none() {
                self.submit_next(idx);
                self.drain_client(idx);
            }
        }
        let deadline = self.sc.heal + LIVENESS_BOUND;
        let mut settle_until: Option<Time> = None;
        while self.events < EVENTS_MAX {
            if settle_until.is_none() && self.all_done() {
                settle_until = Some(self.now.max(self.sc.heal) + SETTLE);
            }
            let next_event = self.queue.peek().map(|Reverse((t, _, _))| *t);
            let timer = self.next_timer();
            let at = match (next_event, timer) {
                (None, None) => break,
                (Some(e), None) => e,
                (None, Some((t, _))) => t,
                (Some(e), Some((t, _))) => e.min(t),
            };
            if at > settle_until.unwrap_or(deadline).min(deadline) {
                break;
            }
            self.events += 1;
            self.now = self.now.max(at);
            if self.regency_at_heal.is_none() && self.now >= self.sc.heal {
                self.regency_at_heal = Some(self.correct_regency());
            }
            if self.slow.is_some() {
                self.note_slow_term();
            }
            match timer {
                Some((t, node)) if next_event.is_none_or(|e| t <= e) => self.fire_timer(node),
                _ => {
                    let Some(Reverse((_, _, payload))) = self.queue.pop() else {
                        break;
                    };
                    match payload {
                        Payload::Frame { to, frame } => self.deliver_frame(to, frame),
                        Payload::Crash(id) => self.crash(id),
                        Payload::Restart(id) => self.restart(id),
                    }
                }
            }
        }
        self.finish()
    }

    fn fire_timer(&mut self, node: Node) {
        match node {
            Node::Replica(slot) => {
                if let Some(n) = self.replicas[slot].node.as_mut() {
                    n.handle_timeout(self.now);
                }
                self.drain_replica(slot);
            }
            Node::Client(idx) => {
                if self.clients[idx].start_at.take().is_some() {
                    self.submit_next(idx);
                } else {
                    self.clients[idx].client.handle_timeout(self.now);
                }
                self.drain_client(idx);
            }
            Node::ByzantineClient(idx) => {
                let leader = self.current_leader();
                let b = &mut self.byzantine_clients[idx];
                let id = b.id;
                let turn = b.turn(self.now, leader);
                for seq in turn.made {
                    self.checker.submitted((id, seq));
                }
                for (to, frame) in turn.sends {
                    self.route_from_client(to, frame);
                }
            }
        }
    }

    /// The highest regency a correct replica is in.
    fn correct_regency(&self) -> u64 {
        self.replicas
            .iter()
            .filter(|s| self.is_correct(s.id))
            .filter_map(|s| s.node.as_ref().map(|n| n.epoch()))
            .max()
            .unwrap_or(0)
    }

    /// Times the slow leader's terms (from when the correct replicas' highest
    /// regency is one it leads to when they move on).
    fn note_slow_term(&mut self) {
        let leading = self.current_leader() == 0;
        match (leading, self.slow_since) {
            (true, None) => self.slow_since = Some(self.now.max(self.sc.heal)),
            (false, Some(since)) => {
                let term = Span(self.now.0.saturating_sub(since.0));
                self.longest_slow_term = self.longest_slow_term.max(term);
                self.slow_since = None;
            }
            _ => {}
        }
    }

    /// The longest a slow leader may lead once the heal came: replicas time
    /// its pace over `PACE_SAMPLES` PROPOSEs, each held back at most `hold`;
    /// one that censors or proposes nothing useful is replaced by the
    /// request timers (a signed retransmission, then two timeouts); then
    /// the leader change itself, up to three view-change timeouts, one more
    /// request timeout (its regency may have begun before the heal), and
    /// the back-off carried over the heal (`backoff_carried`).
    fn slow_term_bound(&self) -> Span {
        let hold = self
            .slow
            .as_ref()
            .map_or(Span::ZERO, |s| s.hold(self.sc.request_timeout));
        let samples = bft_core::replica::PACE_SAMPLES as u64;
        Span(
            samples * hold.0
                + CLIENT_RETRANSMIT.0
                + 3 * self.sc.request_timeout.0
                + 3 * self.sc.view_change_timeout.0
                + self.backoff_carried().0,
        )
    }

    /// The leader of that regency.
    fn current_leader(&self) -> ReplicaId {
        (self.correct_regency() % self.sc.n as u64) as ReplicaId
    }

    /// With Byzantine clients about, the longest an honest request submitted
    /// after the heal may wait: each Byzantine client, and each of the f
    /// Byzantine replicas, costs at most one leader change while it is
    /// struck or deposed, and each change costs at most a signed
    /// retransmission, two request timeouts and two view-change timeouts.
    fn honest_latency_bound(&self) -> Span {
        let changes = (self.opts.byzantine_clients + self.sc.f() + 1) as u64;
        let one =
            CLIENT_RETRANSMIT.0 + 2 * self.sc.request_timeout.0 + 2 * self.sc.view_change_timeout.0;
        Span(changes * one + self.backoff_carried().0)
    }

    /// A view-change timeout as backed off by the leader changes before the
    /// heal (each failed one doubles it until something executes): the first
    /// change after the heal may wait that long.
    fn backoff_carried(&self) -> Span {
        let before = self.regency_at_heal.unwrap_or(0);
        let exp = before.min(bft_core::limits::BACKOFF_EXP_MAX as u64) as u32;
        self.sc.view_change_timeout.backoff(exp)
    }

    /// With Byzantine clients about, the most leader changes after the heal:
    /// each Byzantine client stalls at most one regency per replica that
    /// leads (that leader and its followers then strike it, for longer
    /// than a run), the f Byzantine replicas one each, and a change may
    /// take two regencies when the first new leader's sync times out.
    fn leader_change_bound(&self) -> u64 {
        let k = self.opts.byzantine_clients as u64;
        2 * (k * self.sc.n as u64 + self.sc.f() as u64 + 1)
    }

    fn finish(mut self) -> RunResult {
        let submitted = self.opts.clients as u64 * self.opts.requests_per_client;
        let completed: u64 = self.clients.iter().map(|c| c.done).sum();
        if self.events >= EVENTS_MAX {
            self.checker.liveness(1, 1);
        }
        // A replica still rejoining after losing its state counts as one of
        // the f (it votes in nothing), beside the Byzantine identities.
        let rejoining = self
            .replicas
            .iter()
            .filter(|s| !self.byzantine.contains(&s.id))
            .filter(|s| {
                s.node
                    .as_ref()
                    .and_then(SimReplica::bft)
                    .is_some_and(|r| r.is_rejoining())
            })
            .count();
        let within_f = self.byzantine.len() + rejoining <= self.sc.f();
        if within_f {
            self.checker
                .liveness((submitted - completed) as usize, submitted as usize);
        }
        if within_f && self.slow.is_some() {
            if let Some(since) = self.slow_since {
                let term = Span(self.now.0.saturating_sub(since.0));
                self.longest_slow_term = self.longest_slow_term.max(term);
            }
            let bound = self.honest_latency_bound();
            self.checker.latency(
                self.max_latency_after_heal,
                bound,
                self.completed_after_heal,
            );
            // With one request per batch every batch is full, and a full
            // batch is load, not slowness: the pace is not timed, and only
            // the request timers (and the latency bound) hold such a leader.
            if self.sc.batch > 1 {
                self.checker
                    .slow_leader(self.longest_slow_term, self.slow_term_bound());
            }
        }
        if within_f && self.opts.byzantine_clients > 0 {
            let bound = self.honest_latency_bound();
            self.checker.latency(
                self.max_latency_after_heal,
                bound,
                self.completed_after_heal,
            );
            let changes = self.correct_regency() - self.regency_at_heal.unwrap_or(0);
            self.checker
                .leader_changes(changes, self.leader_change_bound());
        }
        let mut finals = Vec::new();
        let mut stats = self.crashed_stats.clone();
        let mut max_regency = 0;
        for s in &self.replicas {
            if let Some(node) = &s.node {
                add_stats(&mut stats, node.stats());
                max_regency = max_regency.max(node.epoch());
                if self.is_correct(s.id) {
                    finals.push((s.id, node.executed_through(), node.state_digest()));
                }
            }
        }
        self.checker.final_states(&finals);
        RunResult {
            violations: self.checker.violations().to_vec(),
            decided: self.checker.decided_instances(),
            scenario: self.sc,
            completed,
            submitted,
            events: self.events,
            end: self.now,
            last_completion: self.last_completion,
            trace: self.trace,
            max_regency,
            stats,
            deliveries: self.deliveries,
            finals,
            latency_sum: self.latency_sum,
            equivocations: self.equivocations,
            beyond_f: !within_f,
            max_latency_after_heal: self.max_latency_after_heal,
        }
    }
}

fn add_stats(acc: &mut Stats, s: &Stats) {
    acc.dropped_undecodable += s.dropped_undecodable;
    acc.dropped_bad_auth += s.dropped_bad_auth;
    acc.dropped_unknown_sender += s.dropped_unknown_sender;
    acc.dropped_out_of_bounds += s.dropped_out_of_bounds;
    acc.dropped_invalid += s.dropped_invalid;
    acc.dropped_pending_full += s.dropped_pending_full;
    acc.equivocations_seen += s.equivocations_seen;
    acc.regencies_installed += s.regencies_installed;
    acc.sync_waits += s.sync_waits;
    acc.fresh_values_declined += s.fresh_values_declined;
    acc.state_transfers_started += s.state_transfers_started;
    acc.state_transfers_applied += s.state_transfers_applied;
    acc.poisoned_state_rejected += s.poisoned_state_rejected;
    acc.plan_conflicts += s.plan_conflicts;
    acc.checkpoint_mismatches += s.checkpoint_mismatches;
    acc.instances_decided += s.instances_decided;
    acc.requests_executed += s.requests_executed;
    acc.rejoined += s.rejoined;
    acc.dropped_unsigned += s.dropped_unsigned;
    acc.clients_struck += s.clients_struck;
    acc.stale_proposals_refused += s.stale_proposals_refused;
    acc.slow_leader_stops += s.slow_leader_stops;
}

/// Runs one seed.
pub fn run(seed: u64, opts: &SimOptions) -> RunResult {
    World::new(seed, opts).run()
}

/// For reports: ordered map of stat names to values.
pub fn stats_map(s: &Stats) -> BTreeMap<&'static str, u64> {
    BTreeMap::from([
        ("regencies", s.regencies_installed),
        ("rejoined", s.rejoined),
        ("sync_waits", s.sync_waits),
        ("fresh_declined", s.fresh_values_declined),
        ("state_transfers", s.state_transfers_applied),
        ("equivocations_seen", s.equivocations_seen),
        ("dropped_bad_auth", s.dropped_bad_auth),
        ("plan_conflicts", s.plan_conflicts),
        ("checkpoint_mismatches", s.checkpoint_mismatches),
        ("poisoned_rejected", s.poisoned_state_rejected),
        ("dropped_unsigned", s.dropped_unsigned),
        ("clients_struck", s.clients_struck),
        ("stale_refused", s.stale_proposals_refused),
        ("slow_leader_stops", s.slow_leader_stops),
    ])
}

/// A YCSB operation on one of 16 keys (so records are written over and
/// over, and conflicting writes meet): inserts, updates of one or several
/// fields, reads of all or some fields, scans and deletes.
fn kv_op(rng: &mut bft_core::rng::Rng) -> bft_workloads::op::Op {
    use bft_workloads::op::Op;
    let key = format!("user{:02}", rng.below(16));
    let field = |rng: &mut bft_core::rng::Rng| {
        let v = vec![rng.below(256) as u8; 1 + rng.below(24) as usize];
        (format!("field{}", rng.below(4)), v)
    };
    match rng.below(10) {
        0..=2 => Op::Insert {
            key,
            values: (0..1 + rng.below(3)).map(|_| field(rng)).collect(),
        },
        3..=5 => Op::Update {
            key,
            values: (0..1 + rng.below(2)).map(|_| field(rng)).collect(),
        },
        6 | 7 => Op::Read {
            key,
            fields: rng
                .chance(0.5)
                .then(|| vec!["field0".into(), "field2".into()]),
        },
        8 => Op::Scan {
            start: key,
            count: 1 + rng.below(5) as u32,
            fields: None,
        },
        _ => Op::Delete { key },
    }
}
