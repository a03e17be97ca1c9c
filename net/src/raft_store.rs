//! Raft's storage: raft-rs's in-memory log, compacted behind the App's
//! snapshots, plus the latest snapshot, which a leader sends to a follower
//! whose next entries it no longer holds.
//!
//! The engine snapshots the App at fixed log indices (every
//! `snapshot_every` entries, the same indices at every replica). Taking the
//! snapshot at index S_k drops the entries up to the previous one, S_{k-1}:
//! the log keeps at most two intervals, and a follower lagging by less than
//! an interval still catches up from entries rather than a whole snapshot.

use raft::prelude::{ConfState, Entry, HardState, Snapshot};
use raft::storage::MemStorage;
use raft::{GetEntriesContext, RaftState, Storage, StorageError};
use std::sync::{Arc, Mutex, MutexGuard};

/// The log and hard state (raft-rs's `MemStorage`) and the latest snapshot.
/// Clones share both (the simulator keeps one across a crash).
#[derive(Clone)]
pub struct RaftStore {
    log: MemStorage,
    latest: Arc<Mutex<Snapshot>>,
}

impl RaftStore {
    /// A log with no entries whose configuration has every replica voting.
    pub fn new(n: usize) -> RaftStore {
        let voters: Vec<u64> = (1..=n as u64).collect();
        RaftStore {
            log: MemStorage::new_with_conf_state((voters, vec![])),
            latest: Arc::default(),
        }
    }

    /// raft-rs's log, for appending and the hard state.
    pub fn log(&self) -> &MemStorage {
        &self.log
    }

    fn latest(&self) -> MutexGuard<'_, Snapshot> {
        // A panic elsewhere cannot leave a half-written snapshot: it is replaced whole.
        self.latest.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The latest snapshot (empty data and index 0 before the first).
    pub fn snapshot(&self) -> Snapshot {
        self.latest().clone()
    }

    pub fn commit(&self) -> u64 {
        self.log.rl().hard_state().commit
    }

    pub fn hard_state(&self) -> HardState {
        self.log.rl().hard_state().clone()
    }

    pub fn conf_state(&self) -> ConfState {
        // MemStorage's initial state cannot fail.
        self.log
            .initial_state()
            .map(|s| s.conf_state)
            .unwrap_or_default()
    }

    /// Entries from `from` to the last one (an error if some were compacted).
    pub fn entries_from(&self, from: u64) -> raft::Result<Vec<Entry>> {
        let last = self.log.last_index()?;
        if from > last {
            return Ok(Vec::new());
        }
        self.log
            .entries(from, last + 1, None, GetEntriesContext::empty(false))
    }

    /// Keeps `snap`, taken by this replica at an applied index, as the one to
    /// send, and drops the entries the previous snapshot covers.
    pub fn compact_behind(&self, snap: Snapshot) {
        let previous = std::mem::replace(&mut *self.latest(), snap);
        let through = previous.get_metadata().index;
        if through > 0 {
            // Cannot fail: `through` was applied, so the log reaches it.
            let _ = self.log.wl().compact(through + 1);
        }
    }

    /// Installs a snapshot from the leader (or replayed from disk): the log
    /// restarts after it.
    pub fn install(&self, snap: Snapshot) -> raft::Result<()> {
        self.log.wl().apply_snapshot(snap.clone())?;
        *self.latest() = snap;
        Ok(())
    }
}

impl Storage for RaftStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        self.log.initial_state()
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.log.entries(low, high, max_size, context)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.log.term(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        self.log.first_index()
    }

    fn last_index(&self) -> raft::Result<u64> {
        self.log.last_index()
    }

    /// The latest snapshot: the log holds every entry after it, so a
    /// follower that installs it continues from entries.
    fn snapshot(&self, _request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let snap = self.snapshot();
        if snap.get_metadata().index == 0 {
            // Nothing compacted yet, so raft-rs never needs one; say so rather than send an empty state.
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(snap)
    }
}
