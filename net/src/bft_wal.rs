//! The BFT replica on disk (`--storage disk`): every change to its durable
//! state (`bft_core::replica::DurableRecord`: regency, own votes, accepted
//! values with their batches, decisions, the stable checkpoint with its
//! snapshot) is appended to `replica-<id>.wal` and fdatasynced before any
//! frame of the event-loop turn leaves (group commit: `poll_send` syncs
//! first, so one sync covers the turn), as BFT-SMaRt's durability layer and
//! Raft's WAL. At each new stable checkpoint the file is rewritten as the
//! replica's durable state ([`Durable::image`]), so it holds one checkpoint
//! and the log window above it. A restart replays the file into
//! `Replica::recover`; a torn tail (never synced) is cut; a record that
//! checks out but does not decode or apply refuses to start. A write that
//! fails stops the replica (fail-stop): answering on without its votes on
//! disk could let a restart contradict them.

use crate::replica_loop::Engine;
use crate::wal::{RecordLog, WalError};
use bft_core::app::App;
use bft_core::codec::{Reader, Writer};
use bft_core::config::{Config, ConfigError};
use bft_core::crypto::{Crypto, Peer};
use bft_core::message::ClientId;
use bft_core::replica::{genesis_durable, Durable, DurableRecord, Replica};
use bft_core::time::Time;
use std::path::Path;

const TAG: &[u8] = b"bft-wal";
const KIND_RECORD: u8 = 1;

/// A BFT replica whose durable state lives in a write-ahead log.
pub struct DurableReplica {
    replica: Replica,
    log: RecordLog,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error("replica configuration: {0}")]
    Config(#[from] ConfigError),
}

/// How a replica whose log is empty starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmptyLog {
    /// The cluster's first launch: at genesis, voting at once.
    Genesis,
    /// The replica ran before and its log was lost: it rejoins without
    /// state (`Replica::amnesiac`) as run `incarnation`, and the log
    /// records that it does.
    Rejoin { incarnation: u64 },
}

impl DurableReplica {
    /// Opens (or creates) the log at `path`. A log with records rebuilds
    /// the durable state the replica restarts from; an empty one starts it
    /// as `empty` says.
    pub fn open(
        cfg: Config,
        crypto: Box<dyn Crypto + Send>,
        app: Box<dyn App>,
        seed: u64,
        path: &Path,
        empty: EmptyLog,
    ) -> Result<DurableReplica, OpenError> {
        let mut durable = genesis_durable(app.as_ref());
        let mut fresh = true;
        let log = RecordLog::open(path, TAG, |kind, payload| {
            fresh = false;
            replay(kind, payload, &mut durable)
        })?;
        let replica = match (fresh, empty) {
            (true, EmptyLog::Genesis) => Replica::new(cfg, crypto, app, seed)?,
            (true, EmptyLog::Rejoin { incarnation }) => {
                Replica::amnesiac(cfg, crypto, app, seed, Time::ZERO, incarnation)?
            }
            (false, _) => Replica::recover(cfg, crypto, app, durable, seed, Time::ZERO)?,
        };
        let mut d = DurableReplica {
            replica: replica.with_journal(),
            log,
        };
        if fresh && matches!(empty, EmptyLog::Rejoin { .. }) {
            // Before any frame leaves: a crash while rejoining must not
            // come back as a replica that may vote.
            d.rewrite()?;
        }
        Ok(d)
    }

    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// Queues the step's changes; a new stable checkpoint rewrites the file
    /// as the whole durable state instead (which includes them).
    fn persist(&mut self) {
        let journal = self.replica.take_journal();
        if journal.is_empty() {
            return;
        }
        let result = if journal
            .iter()
            .any(|r| matches!(r, DurableRecord::Stable(_)))
        {
            self.rewrite()
        } else {
            journal
                .iter()
                .try_for_each(|rec| self.log.append(KIND_RECORD, &encode(rec)))
        };
        if let Err(e) = result {
            panic!("{e}: the replica stops, it cannot keep what it voted");
        }
    }

    fn rewrite(&mut self) -> Result<(), WalError> {
        let mut bytes = Vec::new();
        for rec in &self.replica.durable().image() {
            self.log.push(&mut bytes, KIND_RECORD, &encode(rec));
        }
        self.log.rewrite(&bytes)
    }
}

fn encode(rec: &DurableRecord) -> Vec<u8> {
    let mut w = Writer::new();
    rec.encode(&mut w);
    w.finish()
}

fn replay(kind: u8, payload: &[u8], durable: &mut Durable) -> Result<(), String> {
    if kind != KIND_RECORD {
        return Err(format!("unknown record kind {kind}"));
    }
    let mut r = Reader::new(payload);
    let rec = DurableRecord::decode(&mut r).map_err(|e| e.to_string())?;
    r.finish().map_err(|e| e.to_string())?;
    durable.apply(rec).map_err(|e| e.to_string())
}

impl Engine for DurableReplica {
    fn id(&self) -> bft_core::message::ReplicaId {
        self.replica.id()
    }
    fn handle_message(&mut self, now: Time, frame: &[u8]) {
        self.replica.handle_message(now, frame);
        self.persist();
    }
    fn handle_timeout(&mut self, now: Time) {
        self.replica.handle_timeout(now);
        self.persist();
    }
    fn poll_timeout(&self) -> Option<Time> {
        self.replica.poll_timeout()
    }
    fn poll_send(&mut self) -> Option<(Peer, Vec<u8>)> {
        // Group commit: one sync covers every change of the turn so far.
        if let Err(e) = self.log.sync() {
            panic!("{e}: the replica stops, it cannot keep what it voted");
        }
        Engine::poll_send(&mut self.replica)
    }
    fn rejected(&self) -> u64 {
        Engine::rejected(&self.replica)
    }
    fn authenticated_client(&self) -> Option<ClientId> {
        self.replica.authenticated_client()
    }
}
