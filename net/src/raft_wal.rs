//! The Raft baseline's write-ahead log: what raft-rs's `Ready` asks to make
//! durable (new entries, the hard state, a snapshot from the leader)
//! appended to one file and synced before any message that depends on it
//! leaves, as etcd does (the engine syncs once per event-loop turn).
//! Restarting replays the file into a [`RaftStore`].
//!
//! ```text
//! record: [payload length u32][kind u8][payload][first 8 bytes of SHA-256(kind ‖ payload)]
//! ```
//!
//! When the engine takes a snapshot the file is rewritten, so it stays
//! within one snapshot and the entries after it: the snapshot, the hard
//! state and those entries go to a new file, which is synced and then
//! renamed over the old one (a crash leaves one or the other, whole).
//!
//! A crash can leave the last record half written; it was never fsynced, so
//! no message depended on it. Replay stops at the first record that is
//! incomplete or fails its checksum and cuts the file there.

use crate::raft_store::RaftStore;
use bft_core::crypto::hash_parts;
use protobuf::Message as _;
use raft::prelude::{Entry, HardState, Snapshot};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// One record's payload at most (raft-rs messages are capped at 1 MiB, a
/// `Ready`'s entries come from a few of them; a snapshot holds at most
/// `SNAPSHOT_BYTES_MAX`).
pub const RECORD_BYTES_MAX: usize = 64 << 20;
const _: () = assert!(bft_core::limits::SNAPSHOT_BYTES_MAX + 4096 < RECORD_BYTES_MAX);

/// Entries per record when a rewrite copies the log (records stay small).
const REWRITE_ENTRIES_PER_RECORD: usize = 1024;
const CHECK_BYTES: usize = 8;
const HEADER_BYTES: usize = 4 + 1;

/// Records are gathered and written with one syscall at the sync; a turn
/// that gathers more than this writes them out early (still unsynced).
pub const PENDING_BYTES_MAX: usize = 1 << 20;

const KIND_ENTRIES: u8 = 1;
const KIND_HARD_STATE: u8 = 2;
const KIND_SNAPSHOT: u8 = 3;

pub struct RaftWal {
    file: File,
    path: PathBuf,
    /// Records not yet handed to the kernel.
    pending: Vec<u8>,
    /// Whether records were written since the last sync.
    unsynced: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("raft log {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("raft log {path}: a record does not decode: {what}")]
    Corrupt { path: PathBuf, what: String },
}

fn check(kind: u8, payload: &[u8]) -> [u8; CHECK_BYTES] {
    let h = hash_parts(&[b"raft-wal", &[kind], payload]);
    let mut c = [0u8; CHECK_BYTES];
    c.copy_from_slice(&h[..CHECK_BYTES]);
    c
}

impl RaftWal {
    /// Opens (or creates) the log at `path` and replays it into `storage`,
    /// which must be fresh. Returns the log, ready to append.
    pub fn open(path: &Path, storage: &RaftStore) -> Result<RaftWal, WalError> {
        let io_err = |source| WalError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = open_rw(path, false)?;
        // A rewrite cut short by a crash, never renamed: the log is whole without it.
        let _ = std::fs::remove_file(rewrite_path(path));
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io_err)?;
        let good = replay(&bytes, storage).map_err(|what| WalError::Corrupt {
            path: path.to_path_buf(),
            what,
        })?;
        if good < bytes.len() {
            // A torn tail: never synced, so nothing relied on it.
            file.set_len(good as u64).map_err(io_err)?;
            file.sync_data().map_err(io_err)?;
        }
        file.seek(SeekFrom::Start(good as u64)).map_err(io_err)?;
        Ok(RaftWal {
            file,
            path: path.to_path_buf(),
            pending: Vec::new(),
            unsynced: false,
        })
    }

    pub fn append_entries(&mut self, entries: &[Entry]) -> Result<(), WalError> {
        if entries.is_empty() {
            return Ok(());
        }
        let payload = entries_payload(entries).map_err(|e| self.corrupt(e))?;
        self.append(KIND_ENTRIES, &payload)
    }

    pub fn set_hard_state(&mut self, hs: &HardState) -> Result<(), WalError> {
        let b = hs
            .write_to_bytes()
            .map_err(|e| self.corrupt(e.to_string()))?;
        self.append(KIND_HARD_STATE, &b)
    }

    /// Replaces the file with one holding `store`'s snapshot, hard state and
    /// every entry after the snapshot, durably: written and synced under a
    /// temporary name, renamed over the log, and the folder synced. Records
    /// appended but not yet synced are in `store` already and are dropped.
    pub fn rewrite(&mut self, store: &RaftStore) -> Result<(), WalError> {
        let image = self.image(store)?;
        let tmp = rewrite_path(&self.path);
        let io_err = |source| WalError::Io {
            path: tmp.clone(),
            source,
        };
        let mut file = open_rw(&tmp, true)?;
        file.write_all(&image).map_err(io_err)?;
        file.sync_data().map_err(io_err)?;
        std::fs::rename(&tmp, &self.path).map_err(|e| self.io(e))?;
        if let Some(dir) = self.path.parent() {
            // The rename itself must survive a crash.
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| self.io(e))?;
        }
        self.file = file;
        self.pending.clear();
        self.unsynced = false;
        Ok(())
    }

    /// The records of a log holding exactly `store`'s state.
    fn image(&self, store: &RaftStore) -> Result<Vec<u8>, WalError> {
        let snap = store.snapshot();
        let mut image = Vec::with_capacity(snap.data.len() + 4096);
        let b = snap
            .write_to_bytes()
            .map_err(|e| self.corrupt(e.to_string()))?;
        push_record(&mut image, KIND_SNAPSHOT, &b);
        let b = store
            .hard_state()
            .write_to_bytes()
            .map_err(|e| self.corrupt(e.to_string()))?;
        push_record(&mut image, KIND_HARD_STATE, &b);
        // A log missing entries after its snapshot would lose them at a restart.
        let entries = store
            .entries_from(snap.get_metadata().index + 1)
            .map_err(|e| self.corrupt(e.to_string()))?;
        for chunk in entries.chunks(REWRITE_ENTRIES_PER_RECORD) {
            let payload = entries_payload(chunk).map_err(|e| self.corrupt(e))?;
            push_record(&mut image, KIND_ENTRIES, &payload);
        }
        Ok(image)
    }

    /// Makes every record appended so far durable: one write, one fdatasync.
    pub fn sync(&mut self) -> Result<(), WalError> {
        self.write_pending()?;
        if !self.unsynced {
            return Ok(());
        }
        self.file.sync_data().map_err(|e| self.io(e))?;
        self.unsynced = false;
        Ok(())
    }

    fn write_pending(&mut self) -> Result<(), WalError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.file.write_all(&self.pending).map_err(|e| self.io(e))?;
        self.pending.clear();
        self.unsynced = true;
        Ok(())
    }

    fn append(&mut self, kind: u8, payload: &[u8]) -> Result<(), WalError> {
        push_record(&mut self.pending, kind, payload);
        if self.pending.len() > PENDING_BYTES_MAX {
            self.write_pending()?;
        }
        Ok(())
    }

    fn io(&self, source: io::Error) -> WalError {
        WalError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn corrupt(&self, what: String) -> WalError {
        WalError::Corrupt {
            path: self.path.clone(),
            what,
        }
    }
}

/// Where a rewrite is made before it is renamed over the log.
fn rewrite_path(path: &Path) -> PathBuf {
    path.with_extension("wal.new")
}

/// Opens `path` for reading and writing, creating it (and emptying it if `truncate`).
fn open_rw(path: &Path, truncate: bool) -> Result<File, WalError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(truncate)
        .open(path)
        .map_err(|source| WalError::Io {
            path: path.to_path_buf(),
            source,
        })
}

fn push_record(buf: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    assert!(
        payload.len() <= RECORD_BYTES_MAX,
        "a Ready's records and a snapshot stay under RECORD_BYTES_MAX"
    );
    buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buf.push(kind);
    buf.extend_from_slice(payload);
    buf.extend_from_slice(&check(kind, payload));
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

/// Applies every complete record to `storage`; returns the bytes they span.
/// A record that is complete and checks out but does not decode is an error
/// (not a torn write): the file is not ours or not this version's.
fn replay(bytes: &[u8], storage: &RaftStore) -> Result<usize, String> {
    let mut at = 0;
    while let Some((kind, payload, next)) = record_at(bytes, at) {
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
        at = next;
    }
    Ok(at)
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

/// The record at `at`, if it is complete and its checksum holds.
fn record_at(bytes: &[u8], at: usize) -> Option<(u8, &[u8], usize)> {
    let header = bytes.get(at..at + HEADER_BYTES)?;
    let len = u32::from_le_bytes(header[..4].try_into().ok()?) as usize;
    if len > RECORD_BYTES_MAX {
        return None;
    }
    let kind = header[4];
    let start = at + HEADER_BYTES;
    let payload = bytes.get(start..start + len)?;
    let stored = bytes.get(start + len..start + len + CHECK_BYTES)?;
    (stored == check(kind, payload)).then_some((kind, payload, start + len + CHECK_BYTES))
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
        assert!(wal.pending.is_empty());
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
        std::fs::write(rewrite_path(&path), b"junk").expect("junk");
        let s = fresh();
        RaftWal::open(&path, &s).expect("reopen");
        assert!(!rewrite_path(&path).exists());
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
        let mut rec = (payload.len() as u32).to_le_bytes().to_vec();
        rec.push(9);
        rec.extend_from_slice(payload);
        rec.extend_from_slice(&check(9, payload));
        std::fs::write(&path, &rec).expect("write");
        let err = RaftWal::open(&path, &fresh()).err().expect("refused");
        assert!(err.to_string().contains("unknown record kind 9"), "{err}");
        done(&path);
    }
}
