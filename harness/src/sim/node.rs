//! The replicas the simulated world runs: our BFT `Replica`, or a Raft replica
//! (tikv's raft-rs through `RaftEngine`), behind one face, so the same seeded
//! network, crashes, clients and checkers serve both.

use bft_core::crypto::{Crypto, Digest, Peer};
use bft_core::message::{ClientId, Instance};
use bft_core::replica::{Durable, DurableRecord, Output, Replica, Stats};
use bft_core::time::Time;
use bft_net::raft_engine::{AppliedEntry, RaftEngine};
use bft_net::raft_store::RaftStore;
use bft_net::replica_loop::Engine;
use std::collections::VecDeque;

pub enum SimReplica {
    Bft(Box<Replica>),
    Raft {
        engine: Box<RaftEngine>,
        applied: VecDeque<AppliedEntry>,
        /// Snapshots taken: (index, state digest).
        snapshots: VecDeque<(u64, Digest)>,
        /// Entries up to here were applied before a crash: their replay is
        /// checked again but is not new progress.
        replay_through: u64,
    },
}

/// What survives a crash: the BFT replica's durable state, or Raft's log and hard state.
pub enum Persisted {
    Bft(Box<Durable>),
    Raft(RaftStore),
}

/// What a replica produced, for the world to route or check.
pub enum Event {
    Send {
        to: Peer,
        frame: Vec<u8>,
    },
    Deliver {
        instance: Instance,
        digest: Digest,
        executed: Vec<(ClientId, u64)>,
        /// A restarted Raft replica applying its log again.
        replay: bool,
    },
    Checkpoint {
        instance: Instance,
        digest: Digest,
    },
}

impl SimReplica {
    /// A Raft replica; `replay_through` is the commit index its kept log
    /// held at the crash (0 for a fresh one).
    pub fn raft(engine: RaftEngine, replay_through: u64) -> SimReplica {
        SimReplica::Raft {
            engine: Box::new(engine.recording_applied()),
            applied: VecDeque::new(),
            snapshots: VecDeque::new(),
            replay_through,
        }
    }

    pub fn handle_message(&mut self, now: Time, frame: &[u8]) {
        match self {
            SimReplica::Bft(r) => r.handle_message(now, frame),
            SimReplica::Raft { engine, .. } => engine.handle_message(now, frame),
        }
    }

    pub fn handle_timeout(&mut self, now: Time) {
        match self {
            SimReplica::Bft(r) => r.handle_timeout(now),
            SimReplica::Raft { engine, .. } => engine.handle_timeout(now),
        }
    }

    pub fn poll_timeout(&self) -> Option<Time> {
        match self {
            SimReplica::Bft(r) => r.poll_timeout(),
            SimReplica::Raft { engine, .. } => engine.poll_timeout(),
        }
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        match self {
            SimReplica::Bft(r) => r.poll_output().map(|o| match o {
                Output::Send { to, frame } => Event::Send { to, frame },
                Output::Deliver {
                    instance,
                    digest,
                    executed,
                } => Event::Deliver {
                    instance,
                    digest,
                    executed,
                    replay: false,
                },
                Output::Checkpoint { instance, digest } => Event::Checkpoint { instance, digest },
            }),
            SimReplica::Raft {
                engine,
                applied,
                snapshots,
                replay_through,
            } => {
                if let Some((to, frame)) = engine.poll_send() {
                    return Some(Event::Send { to, frame });
                }
                snapshots.extend(engine.take_snapshots());
                if let Some((instance, digest)) = snapshots.pop_front() {
                    return Some(Event::Checkpoint { instance, digest });
                }
                applied.extend(engine.take_applied());
                applied.pop_front().map(|e| Event::Deliver {
                    instance: e.index,
                    digest: e.digest,
                    executed: e.executed,
                    replay: e.index <= *replay_through,
                })
            }
        }
    }

    /// The BFT replica, for what only it has (bounds, keys for mutations).
    pub fn bft(&self) -> Option<&Replica> {
        match self {
            SimReplica::Bft(r) => Some(r),
            SimReplica::Raft { .. } => None,
        }
    }

    pub fn crypto(&self) -> &dyn Crypto {
        match self {
            SimReplica::Bft(r) => r.crypto(),
            SimReplica::Raft { engine, .. } => engine.crypto(),
        }
    }

    /// Leads its current regency or term.
    pub fn is_leader(&self) -> bool {
        match self {
            SimReplica::Bft(r) => r.leader() == r.id(),
            SimReplica::Raft { engine, .. } => engine.is_leader(),
        }
    }

    pub fn summary(&self) -> String {
        match self {
            SimReplica::Bft(r) => r.summary(),
            SimReplica::Raft { engine, .. } => format!(
                "raft term={} leader={} applied={}",
                engine.term(),
                engine.is_leader(),
                engine.applied()
            ),
        }
    }

    /// Raft's kept log (the BFT replica's durable state is its journal, which
    /// the world applies as it goes: see `take_journal`).
    pub fn raft_storage(&self) -> Option<RaftStore> {
        match self {
            SimReplica::Bft(_) => None,
            SimReplica::Raft { engine, .. } => Some(engine.storage()),
        }
    }

    /// The BFT replica's durable changes since the last call.
    pub fn take_journal(&mut self) -> Vec<DurableRecord> {
        match self {
            SimReplica::Bft(r) => r.take_journal(),
            SimReplica::Raft { .. } => Vec::new(),
        }
    }

    pub fn stats(&self) -> &Stats {
        match self {
            SimReplica::Bft(r) => r.stats(),
            SimReplica::Raft { engine, .. } => engine.stats(),
        }
    }

    /// The BFT regency, or the Raft term.
    pub fn epoch(&self) -> u64 {
        match self {
            SimReplica::Bft(r) => r.regency(),
            SimReplica::Raft { engine, .. } => engine.term(),
        }
    }

    /// The last executed instance, or the last applied Raft index.
    pub fn executed_through(&self) -> Instance {
        match self {
            SimReplica::Bft(r) => r.last_executed(),
            SimReplica::Raft { engine, .. } => engine.applied(),
        }
    }

    pub fn state_digest(&self) -> Digest {
        match self {
            SimReplica::Bft(r) => r.state_digest(),
            SimReplica::Raft { engine, .. } => engine.state_digest(),
        }
    }
}
