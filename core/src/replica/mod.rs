//! The BFT replica: BFT-SMaRt's Mod-SMaRt, pipelined, as a sans-IO state machine.
//!
//! Method kinds, in the quinn-proto style:
//! - inputs: [`Replica::handle_message`] (a frame from the network),
//!   [`Replica::handle_timeout`] (the host's clock reached [`Replica::poll_timeout`]);
//! - outputs, polled after every input: [`Replica::poll_output`] until `None`,
//!   then [`Replica::poll_timeout`];
//! - getters for observers and tests.
//!
//! Sub-modules hold the protocol phases: `normal` (PROPOSE → WRITE → ACCEPT,
//! batching, in-order execution), `regency` (leader change: STOP, STOPDATA,
//! SYNC), `checkpoint` (checkpoints, state transfer), `verify` (certificates
//! and the leader-change decision rule).

mod checkpoint;
mod incarnation;
pub mod journal;
mod leader_pace;
mod must_sign;
mod normal;
mod regency;
pub mod state;
pub mod verify;

pub use journal::{DurableRecord, JournalError};
pub use leader_pace::PACE_SAMPLES;
pub use state::{ClientTable, Durable, Slot, Stable};

use crate::app::App;
use crate::config::{Config, ConfigError};
use crate::crypto::{Crypto, Digest, Peer};
use crate::message::*;
use crate::rng::Rng;
use crate::time::Time;
use crate::wire;
use state::Pending;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// What the host must do after an input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Transmit a sealed frame.
    Send { to: Peer, frame: Vec<u8> },
    /// A decided batch was executed, in instance order. `executed` lists the
    /// requests that ran (duplicates of earlier requests are skipped).
    Deliver {
        instance: Instance,
        digest: Digest,
        executed: Vec<(ClientId, u64)>,
    },
    /// This replica's state digest after executing `instance` (a checkpoint).
    Checkpoint { instance: Instance, digest: Digest },
}

/// Counters of what was dropped or happened; peer misbehaviour shows here, never as a panic.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    pub dropped_undecodable: u64,
    pub dropped_bad_auth: u64,
    pub dropped_unknown_sender: u64,
    pub dropped_out_of_bounds: u64,
    pub dropped_invalid: u64,
    pub dropped_pending_full: u64,
    pub dropped_rate_limited: u64,
    pub equivocations_seen: u64,
    pub regencies_installed: u64,
    /// A new leader held 2f+1 STOPDATA that did not yet decide every instance
    /// and waited for more.
    pub sync_waits: u64,
    /// A leader's fresh value arrived where we had written another: we did
    /// not write it (only a SYNC plan's value may follow).
    pub fresh_values_declined: u64,
    pub state_transfers_started: u64,
    pub state_transfers_applied: u64,
    pub poisoned_state_rejected: u64,
    /// A SYNC plan contradicted a decision here (never, with at most f faulty).
    pub plan_conflicts: u64,
    /// A stable checkpoint's digest differed from our own state (never, with at most f faulty).
    pub checkpoint_mismatches: u64,
    pub instances_decided: u64,
    pub requests_executed: u64,
    /// A replica that started without its durable state was allowed to vote again.
    pub rejoined: u64,
    /// Requests with MACs only, refused (their client is struck, `must_sign`)
    /// or let go (they waited two timeouts, and only a signed request
    /// justifies a STOP).
    pub dropped_unsigned: u64,
    /// Clients struck: a PROPOSE carried a request of theirs whose MAC for
    /// this replica was bad.
    pub clients_struck: u64,
    /// PROPOSEs not written: they carried a request already executed here,
    /// or one request twice.
    pub stale_proposals_refused: u64,
    /// Leader changes asked for because the leader kept requests too long
    /// before proposing them (`leader_pace`).
    pub slow_leader_stops: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Normal case in `regency`.
    Normal,
    /// `regency` installed, waiting for the new leader's SYNC.
    Syncing,
}

/// A replica that lost its durable state (restarted from memory) does not
/// know what it voted before. It sends no WRITE, ACCEPT, PROPOSE or STOPDATA
/// until its stable checkpoint reaches `at`, above every instance it can
/// have voted at, and its regency reaches the floor its peers report, above
/// every regency it can have sent STOPDATA for (ARCHITECTURE.md,
/// "Restarts"). Until then it counts as one of the f faulty replicas.
#[derive(Debug, Default)]
struct Rejoin {
    /// The stable checkpoint each peer's state reply proved (certificates verified).
    certs: BTreeMap<ReplicaId, Instance>,
    /// Set once 2f+1 peers answered (so that they know this run: see
    /// `incarnation.rs`): their highest checkpoint plus two log windows.
    at: Option<Instance>,
    /// The lowest STOP floor each peer reported (`StateReply::stop_floor`).
    floors: BTreeMap<ReplicaId, Regency>,
    /// When this replica last sent STOP(floor) while waiting for it.
    stop_sent: Option<Time>,
}

impl Rejoin {
    /// The regency a rejoiner must reach, once 2f peers reported: the 2f-th
    /// lowest floor. Every regency anyone installed was asked for by 2f+1
    /// replicas, f+1 of them correct peers that still report it (floors only
    /// grow); any 2f peers include one, so any 2f reports bound it. The
    /// lowest 2f of more reports keep f Byzantine floors from holding the
    /// rejoiner out.
    fn regency_floor(&self, f: usize) -> Option<Regency> {
        let mut v: Vec<Regency> = self.floors.values().copied().collect();
        if v.len() <= 2 * f {
            return None;
        }
        v.sort_unstable();
        v.get(2 * f - 1).copied()
    }
}

#[derive(Debug)]
struct Transfer {
    nonce: u64,
    /// The try before this one (if it timed out): its replies, still in
    /// flight, count too, so a transfer slower than the timeout completes.
    prior: Option<u64>,
    replies: BTreeMap<ReplicaId, StateReply>,
    deadline: Time,
}

pub struct Replica {
    cfg: Config,
    crypto: Box<dyn Crypto + Send>,
    app: Box<dyn App>,
    rng: Rng,
    now: Time,
    // Durable.
    regency: Regency,
    /// The highest run known of each replica (`incarnation.rs`).
    incarnations: BTreeMap<ReplicaId, Incarnation>,
    stable: Stable,
    slots: BTreeMap<Instance, Slot>,
    // Executed state (rebuilt on restart).
    clients: ClientTable,
    last_executed: Instance,
    // Volatile.
    mode: Mode,
    pending: Pending,
    next_propose: Instance,
    batch_deadline: Option<Time>,
    progress_deadline: Option<Time>,
    progress_phase: u8,
    /// When this regency began working: request timers count from here at
    /// the earliest, so a new leader gets a full timeout for old requests.
    timer_base: Time,
    /// The youngest request the last forward to the leader carried.
    forwarded_through: Option<state::ArrivalKey>,
    /// The oldest request a second forward was sent for (one per request).
    reforwarded_for: Option<state::ArrivalKey>,
    /// The oldest request a STOP was put off for, while state was fetched
    /// (one timeout per request).
    postponed_for: Option<state::ArrivalKey>,
    stop_votes: BTreeMap<ReplicaId, Regency>,
    stop_target: Option<Regency>,
    /// Durable: the highest regency ever asked for (`Durable::stop_floor`).
    stop_floor: Regency,
    view_deadline: Option<Time>,
    view_failures: u32,
    synced_regency: Regency,
    synced_last: Instance,
    stop_data: BTreeMap<ReplicaId, (StopData, Vec<Arc<Batch>>)>,
    /// The SYNC this replica applied last, forwarded to laggards in state replies.
    /// With its encoded size, measured once.
    last_sync: Option<(SyncProof, usize)>,
    checkpoint_votes: BTreeMap<Instance, BTreeMap<ReplicaId, (Digest, crate::crypto::Signature)>>,
    own_checkpoints: BTreeMap<Instance, (Digest, Arc<Vec<u8>>)>,
    known_stable: Option<CheckpointCert>,
    /// PROPOSEs that arrived before the SYNC of their regency (bounded).
    early: BTreeMap<(Regency, Instance), Arc<Batch>>,
    /// Highest regency each peer was seen voting in, when above ours.
    ahead: BTreeMap<ReplicaId, Regency>,
    /// Peers seen talking about instances beyond our window (evidence we are behind).
    beyond: std::collections::BTreeSet<ReplicaId>,
    /// When each peer was last answered a state request (replies can be large).
    state_replied: BTreeMap<ReplicaId, Time>,
    transfer: Option<Transfer>,
    /// Tries timed out in a row with no reply: each waits twice as long.
    transfer_failures: u32,
    outputs: VecDeque<Output>,
    to_self: VecDeque<Message>,
    stats: Stats,
    /// The client whose request the last input carried and authenticated, if any.
    authenticated_client: Option<ClientId>,
    /// Changes to the durable state since the host last took them (`with_journal`).
    journal: Option<Vec<DurableRecord>>,
    /// Started without its durable state, and not yet allowed to vote.
    rejoin: Option<Rejoin>,
    /// Requests this replica cannot authenticate (its MAC entry is bad),
    /// by content, with the peers that forwarded them (`FORWARDED_MAX`).
    forwarded: BTreeMap<(ClientId, u64, Digest), std::collections::BTreeSet<ReplicaId>>,
    /// The keys of `forwarded` each peer added, oldest first (its share).
    forwarded_by: BTreeMap<ReplicaId, VecDeque<(ClientId, u64, Digest)>>,
    /// Clients whose requests this replica holds only when signed, for now.
    must_sign: must_sign::MustSign,
    /// How long this regency's leader keeps requests before proposing them.
    pace: leader_pace::LeaderPace,
    /// Leader: each client's highest sequence number ordered in this
    /// regency (proposed, or in the SYNC plan); a lower one is never
    /// proposed (it could not run, and followers refuse it as stale).
    ordered_seq: BTreeMap<ClientId, u64>,
    /// Leader: the followers that could not check a client's requests in
    /// this regency's PROPOSE of an instance (`Message::Unverifiable`).
    /// With the digest of our PROPOSE there.
    unverifiable: BTreeMap<(Instance, ClientId), (Digest, std::collections::BTreeSet<ReplicaId>)>,
    /// Follower: per instance of this regency, the clients whose requests
    /// in its PROPOSE it could not check (at most `pipeline` instances).
    /// With the digest of that PROPOSE.
    deferred_strikes: BTreeMap<Instance, (Digest, Vec<ClientId>)>,
    /// Leader: (instance, follower) pairs an UNVERIFIABLE came for.
    unverifiable_from: std::collections::BTreeSet<(Instance, ReplicaId)>,
}

impl Replica {
    /// A fresh replica at the genesis state of `app`.
    pub fn new(
        cfg: Config,
        crypto: Box<dyn Crypto + Send>,
        app: Box<dyn App>,
        seed: u64,
    ) -> Result<Replica, ConfigError> {
        let genesis = genesis_durable(app.as_ref());
        Replica::recover(cfg, crypto, app, genesis, seed, Time::ZERO)
    }

    /// A replica restarted from its durable state; `app` is replaced by the
    /// stable snapshot and the decided log is replayed. It then asks its peers
    /// for state, to learn what it missed while down.
    pub fn recover(
        cfg: Config,
        crypto: Box<dyn Crypto + Send>,
        app: Box<dyn App>,
        durable: Durable,
        seed: u64,
        now: Time,
    ) -> Result<Replica, ConfigError> {
        cfg.validate()?;
        let mut r = Replica {
            rng: Rng::new(seed ^ ((cfg.me as u64) << 48)),
            cfg,
            crypto,
            app,
            now,
            regency: durable.regency,
            incarnations: durable.incarnations,
            stable: durable.stable,
            slots: durable.slots,
            clients: ClientTable::default(),
            last_executed: 0,
            mode: Mode::Normal,
            pending: Pending::default(),
            next_propose: 1,
            batch_deadline: None,
            progress_deadline: None,
            progress_phase: 0,
            timer_base: now,
            forwarded_through: None,
            reforwarded_for: None,
            postponed_for: None,
            stop_votes: BTreeMap::new(),
            stop_target: None,
            stop_floor: durable.stop_floor,
            view_deadline: None,
            view_failures: 0,
            synced_regency: durable.synced_regency,
            synced_last: durable.synced_last,
            stop_data: BTreeMap::new(),
            last_sync: None,
            checkpoint_votes: BTreeMap::new(),
            own_checkpoints: BTreeMap::new(),
            known_stable: None,
            early: BTreeMap::new(),
            ahead: BTreeMap::new(),
            beyond: std::collections::BTreeSet::new(),
            state_replied: BTreeMap::new(),
            transfer: None,
            transfer_failures: 0,
            outputs: VecDeque::new(),
            to_self: VecDeque::new(),
            stats: Stats::default(),
            authenticated_client: None,
            journal: None,
            rejoin: durable.rejoining.then(Rejoin::default),
            forwarded: BTreeMap::new(),
            forwarded_by: BTreeMap::new(),
            must_sign: must_sign::MustSign::default(),
            pace: leader_pace::LeaderPace::default(),
            ordered_seq: BTreeMap::new(),
            unverifiable: BTreeMap::new(),
            deferred_strikes: BTreeMap::new(),
            unverifiable_from: std::collections::BTreeSet::new(),
        };
        r.restore_stable_snapshot();
        r.replay_decided();
        if r.synced_regency < r.regency {
            // Crashed during a leader change: resume waiting for its SYNC.
            r.mode = Mode::Syncing;
            r.view_deadline = Some(now + r.cfg.view_change_timeout);
        }
        let knows_nothing = r.stable.cert.instance == 0 && r.slots.is_empty() && r.regency == 0;
        if !knows_nothing || r.rejoin.is_some() {
            r.start_state_transfer();
        }
        Ok(r)
    }

    /// A replica restarted *without* its durable state (kept in memory only):
    /// it starts from genesis as a new run (`incarnation`, above any earlier
    /// run's: a clock reading will do, and one found too low is raised), asks
    /// its peers for state and votes again only under the rejoin rule (see
    /// [`Rejoin`]), so that nothing it sends can contradict what it sent
    /// before it lost its state. `seed` must differ from the earlier run's,
    /// so its state requests are not answered by replies to that run's.
    pub fn amnesiac(
        cfg: Config,
        crypto: Box<dyn Crypto + Send>,
        app: Box<dyn App>,
        seed: u64,
        now: Time,
        incarnation: u64,
    ) -> Result<Replica, ConfigError> {
        let mut genesis = Durable {
            rejoining: true,
            ..genesis_durable(app.as_ref())
        };
        let (me, number) = (cfg.me, incarnation.max(1));
        let run = Incarnation::signed(me, number, seed, crypto.as_ref());
        genesis.incarnations.insert(me, run);
        Replica::recover(cfg, crypto, app, genesis, seed, now)
    }

    /// Records every change to the durable state as a [`DurableRecord`], for
    /// the host to persist (`take_journal`) before it sends the step's frames.
    pub fn with_journal(mut self) -> Replica {
        self.journal = Some(Vec::new());
        self
    }

    /// The durable changes recorded since the last call, in order.
    pub fn take_journal(&mut self) -> Vec<DurableRecord> {
        self.journal
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    fn record(&mut self, rec: impl FnOnce(&Replica) -> DurableRecord) {
        if self.journal.is_some() {
            let rec = rec(self);
            if let Some(j) = self.journal.as_mut() {
                assert!(
                    j.len() < journal::JOURNAL_RECORDS_MAX,
                    "the host takes the journal after every input"
                );
                j.push(rec);
            }
        }
    }

    fn record_regency(&mut self) {
        self.record(|r| DurableRecord::Regency {
            regency: r.regency,
            synced_regency: r.synced_regency,
            synced_last: r.synced_last,
            stop_floor: r.stop_floor,
        });
    }

    /// Whether this replica may send votes (WRITE, ACCEPT, PROPOSE, STOPDATA).
    pub(super) fn may_vote(&self) -> bool {
        self.rejoin.is_none()
    }

    /// A verified state reply from `s` proved its stable checkpoint `c` and
    /// reported the STOP floor `floor`.
    pub(super) fn note_rejoin_evidence(&mut self, s: ReplicaId, c: Instance, floor: Regency) {
        let (f, window) = (self.cfg.f(), self.cfg.log_window());
        let Some(rj) = self.rejoin.as_mut() else {
            return;
        };
        let e = rj.certs.entry(s).or_insert(c);
        *e = (*e).max(c);
        let e = rj.floors.entry(s).or_insert(floor);
        *e = (*e).min(floor);
        if rj.at.is_none() && rj.certs.len() > 2 * f {
            let high = rj.certs.values().copied().max().unwrap_or(0);
            rj.at = Some(high.saturating_add(2 * window));
        }
    }

    fn check_rejoin(&mut self) {
        let (f, now, every) = (self.cfg.f(), self.now, self.cfg.view_change_timeout);
        let Some(rj) = self.rejoin.as_mut() else {
            return;
        };
        let (Some(at), Some(floor)) = (rj.at, rj.regency_floor(f)) else {
            return;
        };
        if self.stable.cert.instance < at {
            return;
        }
        if self.regency >= floor {
            self.rejoin = None;
            self.record(|_| DurableRecord::Rejoining(false));
            self.stats.rejoined += 1;
        } else if rj.stop_sent.is_none_or(|t| now >= t + every) {
            // Only the regency is missing. Peers that asked for it alone
            // (their STOPs lost before the network settled) get one more
            // vote, again now and then: with ours they may be enough.
            rj.stop_sent = Some(now);
            self.start_stop(floor);
        }
    }

    fn restore_stable_snapshot(&mut self) {
        let snapshot = self.stable.snapshot.clone();
        match split_snapshot(&snapshot) {
            Some((app, clients)) if self.app.restore(app).is_ok() => {
                self.clients = clients;
                self.last_executed = self.stable.cert.instance;
            }
            _ => panic!("own durable snapshot is unreadable: the host's storage is corrupt"),
        }
    }

    /// Re-executes decided slots above the checkpoint, silently (they were delivered before the crash).
    fn replay_decided(&mut self) {
        while let Some(batch) = self
            .slots
            .get(&(self.last_executed + 1))
            .and_then(|s| s.decided.as_ref().map(|(_, b)| b.clone()))
        {
            self.last_executed += 1;
            self.execute_batch(&batch, false);
            if self.last_executed % self.cfg.checkpoint_interval == 0 {
                self.take_checkpoint(self.last_executed);
            }
        }
        self.next_propose = self.last_executed + 1;
    }

    // ------------------------------------------------------------ inputs

    /// A frame from the network. Frames that fail bounds, decoding or
    /// authentication are counted and dropped before touching any state.
    pub fn handle_message(&mut self, now: Time, frame: &[u8]) {
        self.now = self.now.max(now);
        self.authenticated_client = None;
        match wire::open(frame, self.cfg.n, self.crypto.as_ref()) {
            Ok((from, msg)) => self.dispatch(from, msg),
            Err(wire::FrameError::UnknownSender) => self.stats.dropped_unknown_sender += 1,
            Err(wire::FrameError::BadMac) => self.stats.dropped_bad_auth += 1,
            Err(_) => self.stats.dropped_undecodable += 1,
        }
        self.drain_self();
        self.after_step();
    }

    /// The host's clock reached the instant from `poll_timeout`.
    pub fn handle_timeout(&mut self, now: Time) {
        self.now = self.now.max(now);
        if self.batch_deadline.is_some_and(|t| t <= now) {
            self.batch_deadline = None;
        }
        if self.progress_deadline.is_some_and(|t| t <= now) {
            self.on_progress_timeout();
        }
        if self.view_deadline.is_some_and(|t| t <= now) {
            self.on_view_timeout();
        }
        if self.transfer.as_ref().is_some_and(|t| t.deadline <= now) {
            self.on_transfer_timeout();
        }
        self.drain_self();
        self.after_step();
    }

    fn dispatch(&mut self, from: Peer, msg: Message) {
        match (from, msg) {
            (Peer::Client(_), Message::Request(req)) => self.on_request(req, None),
            (Peer::Client(_), _) => self.stats.dropped_invalid += 1,
            (Peer::Replica(s), msg) => self.on_replica_message(s, msg),
        }
    }

    fn on_replica_message(&mut self, s: ReplicaId, msg: Message) {
        match msg {
            Message::Request(req) => self.on_request(req, Some(s)),
            Message::Propose {
                regency,
                instance,
                batch,
            } => self.on_propose(s, regency, instance, batch),
            Message::Write {
                regency,
                instance,
                digest,
            } => self.on_write(s, regency, instance, digest),
            Message::Accept {
                regency,
                instance,
                digest,
            } => self.on_accept(s, regency, instance, digest),
            Message::Stop { regency } => self.on_stop(s, regency),
            Message::Unverifiable {
                regency,
                instance,
                clients,
            } => self.on_unverifiable(s, regency, instance, clients),
            Message::StopData { data, batches } => self.on_stop_data(s, data, batches),
            Message::Sync(sync) => self.on_sync(s, sync),
            Message::Checkpoint {
                instance,
                digest,
                sig,
            } => self.on_checkpoint(s, instance, digest, sig),
            Message::StateRequest {
                nonce,
                from,
                incarnation,
            } => self.on_state_request(s, nonce, from, incarnation),
            Message::StateReply(reply) => self.on_state_reply(s, reply),
            Message::Reply(_) | Message::ReplyDigest(_) | Message::Raft(_) => {
                self.stats.dropped_invalid += 1
            }
        }
    }

    /// Messages a replica sends itself are handled after the current one, in order.
    fn drain_self(&mut self) {
        let mut budget = 1_000_000u32;
        while let Some(msg) = self.to_self.pop_front() {
            budget -= 1;
            assert!(budget > 0, "self-message loop did not settle");
            self.on_replica_message(self.cfg.me, msg);
        }
    }

    /// Work that follows any input: propose if leader, re-arm timers.
    fn after_step(&mut self) {
        self.check_rejoin();
        self.try_propose();
        self.drain_self();
        if self.pending.is_empty() {
            self.progress_deadline = None;
            self.progress_phase = 0;
        } else if self.progress_deadline.is_none() && self.mode == Mode::Normal {
            self.rearm_request_timer();
        }
    }

    // ------------------------------------------------------------ outputs

    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// The earliest instant at which the replica wants `handle_timeout`.
    pub fn poll_timeout(&self) -> Option<Time> {
        [
            self.batch_deadline,
            self.progress_deadline,
            self.view_deadline,
            self.transfer.as_ref().map(|t| t.deadline),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn send(&mut self, to: Peer, msg: &Message) {
        let frame = wire::encode_frame(Peer::Replica(self.cfg.me), to, msg, self.crypto.as_ref());
        self.outputs.push_back(Output::Send { to, frame });
    }

    fn send_replica(&mut self, to: ReplicaId, msg: Message) {
        if to == self.cfg.me {
            self.to_self.push_back(msg);
        } else {
            self.send(Peer::Replica(to), &msg);
        }
    }

    /// Sends to every other replica (body encoded once) and to itself.
    fn broadcast(&mut self, msg: Message) {
        let body = wire::encode_body(Peer::Replica(self.cfg.me), &msg);
        let input = wire::mac_input(&body, &msg);
        for r in 0..self.cfg.n as ReplicaId {
            if r != self.cfg.me {
                let frame = wire::seal(&body, &input, Peer::Replica(r), self.crypto.as_ref());
                self.outputs.push_back(Output::Send {
                    to: Peer::Replica(r),
                    frame,
                });
            }
        }
        self.to_self.push_back(msg);
    }

    // ------------------------------------------------------------ getters

    pub fn id(&self) -> ReplicaId {
        self.cfg.me
    }
    pub fn config(&self) -> &Config {
        &self.cfg
    }
    pub fn regency(&self) -> Regency {
        self.regency
    }
    pub fn leader(&self) -> ReplicaId {
        self.cfg.leader_of(self.regency)
    }
    pub fn is_synchronising(&self) -> bool {
        self.mode == Mode::Syncing
    }
    pub fn last_executed(&self) -> Instance {
        self.last_executed
    }
    pub fn stable_checkpoint(&self) -> Instance {
        self.stable.cert.instance
    }
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
    /// Started without its durable state and not yet voting again.
    pub fn is_rejoining(&self) -> bool {
        self.rejoin.is_some()
    }
    /// The stable checkpoint a rejoining replica waits for, once known.
    pub fn rejoin_at(&self) -> Option<Instance> {
        self.rejoin.as_ref().and_then(|r| r.at)
    }

    /// The regency a rejoining replica waits for, once known.
    pub fn rejoin_regency(&self) -> Option<Regency> {
        let f = self.cfg.f();
        self.rejoin.as_ref().and_then(|r| r.regency_floor(f))
    }
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }
    pub fn decided_digest(&self, instance: Instance) -> Option<Digest> {
        self.slots
            .get(&instance)
            .and_then(|s| s.decided.as_ref().map(|(d, _)| *d))
    }
    /// Requests the executed state holds, since genesis (`ClientTable::executed_total`).
    pub fn executed_total(&self) -> u64 {
        self.clients.executed_total()
    }
    pub fn client_last_seq(&self, client: ClientId) -> Option<u64> {
        self.clients.last_seq(client)
    }
    /// Digest of the executed state (App and client table) at `last_executed`.
    pub fn state_digest(&self) -> Digest {
        state_digest(&self.app.digest(), &self.clients)
    }
    /// Log slots held (bounded by the watermark window).
    pub fn log_len(&self) -> usize {
        self.slots.len()
    }
    /// A one-line summary of the protocol state, for traces.
    pub fn summary(&self) -> String {
        format!(
            "reg={} {} synced={} stop={:?} exec={} stable={} pending={} transfer={} rejoin={:?}",
            self.regency,
            if self.mode == Mode::Syncing {
                "SYNCING"
            } else {
                "normal"
            },
            self.synced_regency,
            self.stop_target,
            self.last_executed,
            self.stable.cert.instance,
            self.pending.len(),
            self.transfer.is_some(),
            self.rejoin
                .as_ref()
                .map(|r| (r.at, r.regency_floor(self.cfg.f())))
        )
    }

    /// A copy of what survives a crash.
    pub fn durable(&self) -> Durable {
        Durable {
            regency: self.regency,
            synced_regency: self.synced_regency,
            synced_last: self.synced_last,
            stop_floor: self.stop_floor,
            rejoining: self.rejoin.is_some(),
            incarnations: self.incarnations.clone(),
            stable: self.stable.clone(),
            slots: self.slots.clone(),
        }
    }
    /// The client whose authenticated request the last `handle_message` carried:
    /// the host may route that client's replies to the connection it came from.
    pub fn authenticated_client(&self) -> Option<ClientId> {
        self.authenticated_client
    }

    pub fn crypto(&self) -> &dyn Crypto {
        self.crypto.as_ref()
    }
}

/// State digest: the App's digest bound to the exactly-once table.
pub fn state_digest(app_digest: &Digest, clients: &ClientTable) -> Digest {
    crate::crypto::hash_parts(&[b"state", app_digest, &clients.digest()])
}

/// Snapshot = App snapshot ‖ client table.
pub fn encode_snapshot(app: &dyn App, clients: &ClientTable) -> Vec<u8> {
    let app = app.snapshot();
    // Sized up front: growing a megabyte buffer by doubling copies it again.
    let mut w = crate::codec::Writer::with_capacity(4 + app.len() + clients.encoded_len());
    w.bytes(&app);
    clients.encode(&mut w);
    w.finish()
}

pub fn split_snapshot(bytes: &[u8]) -> Option<(&[u8], ClientTable)> {
    let mut r = crate::codec::Reader::new(bytes);
    let app = r
        .bytes("app snapshot", crate::limits::SNAPSHOT_BYTES_MAX)
        .ok()?;
    let clients = ClientTable::decode(&mut r).ok()?;
    r.finish().ok()?;
    Some((app, clients))
}

pub fn genesis_durable(app: &dyn App) -> Durable {
    let clients = ClientTable::default();
    Durable {
        regency: 0,
        synced_regency: 0,
        synced_last: 0,
        stop_floor: 0,
        rejoining: false,
        incarnations: BTreeMap::new(),
        stable: Stable {
            cert: CheckpointCert {
                instance: 0,
                digest: state_digest(&app.digest(), &clients),
                sigs: Vec::new(),
            },
            snapshot: Arc::new(encode_snapshot(app, &clients)),
        },
        slots: BTreeMap::new(),
    }
}
