//! The Raft baseline's write-ahead log: what raft-rs's `Ready` asks to make
//! durable (new entries, the hard state, a snapshot from the leader)
//! appended as records of a [`RecordLog`] (`wal.rs`: checksummed records,
//! one write and one fdatasync per sync, torn tails cut) and synced before
//! any message that depends on it leaves, as etcd does (the engine syncs
//! once per event-loop turn). Restarting replays the file into a
//! [`RaftStore`].
//!
//! When the engine takes a snapshot the file is rewritten, so it stays
//! within one snapshot and the entries after it: the snapshot, the hard
//! state and those entries.

use crate::raft_store::RaftStore;
use crate::wal::RecordLog;
pub use crate::wal::{WalError, PENDING_BYTES_MAX};
use protobuf::Message as _;
use raft::prelude::{Entry, HardState, Snapshot};
use std::path::Path;

/// Entries per record when a rewrite copies the log (records stay small).
const REWRITE_ENTRIES_PER_RECORD: usize = 1024;
/// The checksums' domain (the file format predates the shared record log).
const TAG: &[u8] = b"raft-wal";

const KIND_ENTRIES: u8 = 1;
const KIND_HARD_STATE: u8 = 2;
const KIND_SNAPSHOT: u8 = 3;

pub struct RaftWal {
    log: RecordLog,
}

impl RaftWal {
    /// Opens (or creates) the log at `path` and replays it into `storage`,
    /// which must be fresh. Returns the log, ready to append.
    pub fn open(path: &Path, storage: &RaftStore) -> Result<RaftWal, WalError> {
        let log = RecordLog::open(path, TAG, |kind, payload| replay(kind, payload, storage))?;
        Ok(RaftWal { log })
    }

    pub fn append_entries(&mut self, entries: &[Entry]) -> Result<(), WalError> {
        if entries.is_empty() {
            return Ok(());
        }
        let payload = entries_payload(entries).map_err(|e| self.log.corrupt(e))?;
        self.log.append(KIND_ENTRIES, &payload)
    }

    pub fn set_hard_state(&mut self, hs: &HardState) -> Result<(), WalError> {
        let b = hs
            .write_to_bytes()
            .map_err(|e| self.log.corrupt(e.to_string()))?;
        self.log.append(KIND_HARD_STATE, &b)
    }

    /// Replaces the file with one holding `store`'s snapshot, hard state and
    /// every entry after the snapshot, durably. Records appended but not yet
    /// synced are in `store` already and are dropped.
    pub fn rewrite(&mut self, store: &RaftStore) -> Result<(), WalError> {
        let image = self.image(store)?;
        self.log.rewrite(&image)
    }

    /// The records of a log holding exactly `store`'s state.
    fn image(&self, store: &RaftStore) -> Result<Vec<u8>, WalError> {
        let corrupt = |e: String| self.log.corrupt(e);
        let snap = store.snapshot();
        let mut image = Vec::with_capacity(snap.data.len() + 4096);
        let b = snap.write_to_bytes().map_err(|e| corrupt(e.to_string()))?;
        self.log.push(&mut image, KIND_SNAPSHOT, &b);
        let b = store
            .hard_state()
            .write_to_bytes()
            .map_err(|e| corrupt(e.to_string()))?;
        self.log.push(&mut image, KIND_HARD_STATE, &b);
        // A log missing entries after its snapshot would lose them at a restart.
        let entries = store
            .entries_from(snap.get_metadata().index + 1)
            .map_err(|e| corrupt(e.to_string()))?;
        for chunk in entries.chunks(REWRITE_ENTRIES_PER_RECORD) {
            let payload = entries_payload(chunk).map_err(corrupt)?;
            self.log.push(&mut image, KIND_ENTRIES, &payload);
        }
        Ok(image)
    }

    /// Makes every record appended so far durable: one write, one fdatasync.
    pub fn sync(&mut self) -> Result<(), WalError> {
        self.log.sync()
    }
}

/// Entries as one record's payload: each length-prefixed.
fn entries_payload(entries: &[Entry]) -> Result<Vec<u8>, String> {
    let mut payload = Vec::new();
    for e in entries {
        let b = e.write_to_bytes().map_err(|e| e.to_string())?;
        payload.extend_from_slice(&(b.len() as u32).to_le_bytes());
        payload.extend_from_slice(&b);
    }
    Ok(payload)
}

/// Applies one record to `storage`. A record that checks out but does not
/// decode is an error (not a torn write): the file is not ours or not this
/// version's.
fn replay(kind: u8, payload: &[u8], storage: &RaftStore) -> Result<(), String> {
    match kind {
        KIND_ENTRIES => {
            let entries = decode_entries(payload)?;
            continues(storage, &entries)?;
            let log = storage.log();
            log.wl().append(&entries).map_err(|e| e.to_string())?;
        }
        KIND_HARD_STATE => {
            let hs = HardState::parse_from_bytes(payload).map_err(|e| e.to_string())?;
            storage.log().wl().set_hardstate(hs);
        }
        KIND_SNAPSHOT => {
            // Its state is decoded once, by the engine's restart, which
            // refuses one that does not restore.
            let snap = Snapshot::parse_from_bytes(payload).map_err(|e| e.to_string())?;
            storage.install(snap).map_err(|e| e.to_string())?;
        }
        k => return Err(format!("unknown record kind {k}")),
    }
    Ok(())
}

/// MemStorage panics on entries that leave a gap or reach below its first
/// index; a log of ours never has them, another file might.
fn continues(storage: &RaftStore, entries: &[Entry]) -> Result<(), String> {
    let Some(first) = entries.first() else {
        return Ok(());
    };
    use raft::Storage as _;
    let lo = storage.first_index().map_err(|e| e.to_string())?;
    let hi = storage.last_index().map_err(|e| e.to_string())? + 1;
    let contiguous = entries.windows(2).all(|w| w[1].index == w[0].index + 1);
    if first.index < lo || first.index > hi || !contiguous {
        return Err(format!(
            "entries from index {} do not continue a log of {lo}..{hi}",
            first.index
        ));
    }
    Ok(())
}

fn decode_entries(mut payload: &[u8]) -> Result<Vec<Entry>, String> {
    let mut entries = Vec::new();
    while !payload.is_empty() {
        let (len, rest) = payload
            .split_first_chunk::<4>()
            .ok_or("entry length cut short")?;
        let len = u32::from_le_bytes(*len) as usize;
        let body = rest.get(..len).ok_or("entry cut short")?;
        entries.push(Entry::parse_from_bytes(body).map_err(|e| e.to_string())?);
        payload = &rest[len..];
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::Storage as _;
    use std::path::PathBuf;

    /// A record's header: its payload length and kind.
    const HEADER_BYTES: usize = 5;

    fn entry(index: u64, term: u64, data: &[u8]) -> Entry {
        Entry {
            index,
            term,
            data: data.to_vec().into(),
            ..Default::default()
        }
    }

    fn fresh() -> RaftStore {
        RaftStore::new(3)
    }

    /// A fresh file in a folder of its own, removed with `done`.
    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("bftbench-wal-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        dir.join(name)
    }

    fn done(path: &Path) {
        if let Some(dir) = path.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    fn terms(s: &RaftStore) -> Vec<(u64, u64)> {
        let (first, last) = (
            s.first_index().expect("first"),
            s.last_index().expect("last"),
        );
        if last < first {
            return Vec::new();
        }
        s.entries(first, last + 1, None, raft::GetEntriesContext::empty(false))
            .expect("entries")
            .iter()
            .map(|e| (e.index, e.term))
            .collect()
    }

    fn written(path: &Path) {
        let mut wal = RaftWal::open(path, &fresh()).expect("open");
        wal.append_entries(&[entry(1, 1, b"a"), entry(2, 1, b"b"), entry(3, 1, b"c")])
            .expect("append");
        let hs = HardState {
            term: 2,
            vote: 3,
            commit: 1,
            ..Default::default()
        };
        wal.set_hard_state(&hs).expect("hs");
        // A new leader overwrites the uncommitted suffix from index 2.
        wal.append_entries(&[entry(2, 2, b"x")]).expect("append");
        wal.sync().expect("sync");
    }

    #[test]
    fn a_replayed_log_has_the_entries_and_hard_state_written() {
        let path = temp("replay.wal");
        written(&path);
        let s = fresh();
        RaftWal::open(&path, &s).expect("reopen");
        assert_eq!(terms(&s), vec![(1, 1), (2, 2)], "the suffix was replaced");
        let hs = s.initial_state().expect("state").hard_state;
        assert_eq!((hs.term, hs.vote, hs.commit), (2, 3, 1));
        done(&path);
    }

    #[test]
    fn a_torn_or_corrupted_tail_is_cut_and_the_rest_kept() {
        let path = temp("torn.wal");
        written(&path);
        let full = std::fs::read(&path).expect("read");
        // Control: the whole file replays to the last record.
        let s = fresh();
        RaftWal::open(&path, &s).expect("open");
        assert_eq!(terms(&s), vec![(1, 1), (2, 2)]);
        // The last record half written: replay stops before it and cuts it.
        std::fs::write(&path, &full[..full.len() - 3]).expect("write");
        let s = fresh();
        let mut wal = RaftWal::open(&path, &s).expect("open");
        assert_eq!(terms(&s), vec![(1, 1), (2, 1), (3, 1)]);
        // Appending after the cut gives a log that replays whole.
        wal.append_entries(&[entry(4, 1, b"d")]).expect("append");
        wal.sync().expect("sync");
        let s = fresh();
        RaftWal::open(&path, &s).expect("open");
        assert_eq!(terms(&s), vec![(1, 1), (2, 1), (3, 1), (4, 1)]);
        // A flipped byte in the first record: nothing after it is trusted.
        let mut bad = full.clone();
        bad[HEADER_BYTES + 2] ^= 1;
        std::fs::write(&path, &bad).expect("write");
        let s = fresh();
        RaftWal::open(&path, &s).expect("open");
        assert_eq!(terms(&s), vec![]);
        assert_eq!(std::fs::metadata(&path).expect("meta").len(), 0);
        done(&path);
    }

    #[test]
    fn records_wait_for_the_sync_unless_a_turn_gathers_more_than_the_bound() {
        let path = temp("pending.wal");
        let mut wal = RaftWal::open(&path, &fresh()).expect("open");
        wal.append_entries(&[entry(1, 1, b"a")]).expect("append");
        let len = || std::fs::metadata(&path).expect("meta").len();
        assert_eq!(len(), 0, "one write at the sync, not one per record");
        let big = vec![7u8; PENDING_BYTES_MAX];
        wal.append_entries(&[entry(2, 1, &big)]).expect("append");
        assert!(
            len() > PENDING_BYTES_MAX as u64,
            "written early, past the bound"
        );
        wal.append_entries(&[entry(3, 1, b"c")]).expect("append");
        wal.sync().expect("sync");
        let s = fresh();
        RaftWal::open(&path, &s).expect("reopen");
        assert_eq!(terms(&s), vec![(1, 1), (2, 1), (3, 1)]);
        done(&path);
    }

    /// A snapshot of an empty App and client table.
    fn snapshot_at(index: u64, term: u64) -> Snapshot {
        let app = bft_core::app::ChainApp::default();
        let clients = bft_core::replica::ClientTable::default();
        let mut snap = Snapshot {
            data: bft_core::replica::encode_snapshot(&app, &clients).into(),
            ..Default::default()
        };
        snap.mut_metadata().index = index;
        snap.mut_metadata().term = term;
        snap
    }

    #[test]
    fn a_rewrite_keeps_the_snapshot_and_the_entries_after_it() {
        let path = temp("rewrite.wal");
        let store = fresh();
        let mut wal = RaftWal::open(&path, &store).expect("open");
        let entries: Vec<Entry> = (1..=6).map(|i| entry(i, 1, b"e")).collect();
        wal.append_entries(&entries).expect("append");
        store.log().wl().append(&entries).expect("store");
        let hs = HardState {
            term: 1,
            commit: 5,
            ..Default::default()
        };
        store.log().wl().set_hardstate(hs.clone());
        wal.set_hard_state(&hs).expect("hs");
        wal.sync().expect("sync");
        // Snapshot at 4; the log in memory keeps everything (no earlier snapshot).
        store.compact_behind(snapshot_at(4, 1));
        wal.rewrite(&store).expect("rewrite");
        wal.append_entries(&[entry(7, 2, b"g")]).expect("append");
        wal.sync().expect("sync");
        // A leftover half-made rewrite is ignored and removed.
        let leftover = path.with_extension("wal.new");
        std::fs::write(&leftover, b"junk").expect("junk");
        let s = fresh();
        RaftWal::open(&path, &s).expect("reopen");
        assert!(!leftover.exists());
        assert_eq!(s.snapshot().get_metadata().index, 4);
        assert_eq!(
            terms(&s),
            vec![(5, 1), (6, 1), (7, 2)],
            "entries after the snapshot"
        );
        assert_eq!(s.commit(), 5);
        assert_eq!(s.term(4).expect("snapshot term"), 1);
        // Control: entries the snapshot covers are gone from the file.
        assert!(s.term(3).is_err());
        done(&path);
    }

    #[test]
    fn a_file_that_is_not_a_raft_log_is_refused_not_replayed() {
        let path = temp("foreign.wal");
        let payload = b"not an entry list";
        let mut log = RecordLog::open(&path, TAG, |_, _| Ok(())).expect("open");
        log.append(9, payload).expect("append");
        log.sync().expect("sync");
        let err = RaftWal::open(&path, &fresh()).err().expect("refused");
        assert!(err.to_string().contains("unknown record kind 9"), "{err}");
        done(&path);
    }
}
