//! A write-ahead log file of checksummed records, shared by the Raft
//! baseline's log (`raft_wal.rs`) and the BFT replica's (`bft_wal.rs`).
//!
//! ```text
//! record: [payload length u32][kind u8][payload][first 8 bytes of SHA-256(tag ‖ kind ‖ payload)]
//! ```
//!
//! Records are gathered in memory and written with one syscall at `sync`,
//! which then fdatasyncs: a host syncs once per event-loop turn, before any
//! of the turn's frames leave (group commit). `rewrite` replaces the file
//! with a shorter image durably: written and synced under a temporary name,
//! renamed over the log, and the folder synced (a crash leaves one or the
//! other, whole).
//!
//! A crash can leave the last record half written; it was never synced, so
//! no frame depended on it. Opening stops at the first record that is
//! incomplete or fails its checksum and cuts the file there.

use bft_core::crypto::hash_parts;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// One record's payload at most (a snapshot holds at most `SNAPSHOT_BYTES_MAX`).
pub const RECORD_BYTES_MAX: usize = 64 << 20;
const _: () = assert!(bft_core::limits::SNAPSHOT_BYTES_MAX + 4096 < RECORD_BYTES_MAX);

const CHECK_BYTES: usize = 8;
const HEADER_BYTES: usize = 4 + 1;

/// Records are gathered and written with one syscall at the sync; a turn
/// that gathers more than this writes them out early (still unsynced).
pub const PENDING_BYTES_MAX: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("write-ahead log {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("write-ahead log {path}: a record does not decode: {what}")]
    Corrupt { path: PathBuf, what: String },
}

pub struct RecordLog {
    file: File,
    path: PathBuf,
    /// Domain separation of the checksums: one log's records never check out in another's.
    tag: &'static [u8],
    /// Records not yet handed to the kernel.
    pending: Vec<u8>,
    /// Whether records were written since the last sync.
    unsynced: bool,
}

impl RecordLog {
    /// Opens (or creates) the log at `path`, hands every whole record to
    /// `apply` in order, cuts a torn tail, and returns the log ready to
    /// append. An `apply` error (a record that checks out but does not
    /// decode: the file is not ours or not this version's) refuses the file.
    pub fn open(
        path: &Path,
        tag: &'static [u8],
        mut apply: impl FnMut(u8, &[u8]) -> Result<(), String>,
    ) -> Result<RecordLog, WalError> {
        let io_err = |source| WalError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = open_rw(path, false)?;
        // A rewrite cut short by a crash, never renamed: the log is whole without it.
        let _ = std::fs::remove_file(rewrite_path(path));
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io_err)?;
        let mut at = 0;
        while let Some((kind, payload, next)) = record_at(tag, &bytes, at) {
            apply(kind, payload).map_err(|what| WalError::Corrupt {
                path: path.to_path_buf(),
                what,
            })?;
            at = next;
        }
        if at < bytes.len() {
            // A torn tail: never synced, so nothing relied on it.
            file.set_len(at as u64).map_err(io_err)?;
            file.sync_data().map_err(io_err)?;
        }
        file.seek(SeekFrom::Start(at as u64)).map_err(io_err)?;
        Ok(RecordLog {
            file,
            path: path.to_path_buf(),
            tag,
            pending: Vec::new(),
            unsynced: false,
        })
    }

    /// Queues a record for the next sync.
    pub fn append(&mut self, kind: u8, payload: &[u8]) -> Result<(), WalError> {
        push_record(self.tag, &mut self.pending, kind, payload);
        if self.pending.len() > PENDING_BYTES_MAX {
            self.write_pending()?;
        }
        Ok(())
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

    /// Replaces the file with `image` (records built with [`RecordLog::push`]),
    /// durably. Records appended but not yet synced must be in the image:
    /// they are dropped.
    pub fn rewrite(&mut self, image: &[u8]) -> Result<(), WalError> {
        let tmp = rewrite_path(&self.path);
        let io_err = |source| WalError::Io {
            path: tmp.clone(),
            source,
        };
        let mut file = open_rw(&tmp, true)?;
        file.write_all(image).map_err(io_err)?;
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

    /// Appends one record in this log's format to `buf` (for an image).
    pub fn push(&self, buf: &mut Vec<u8>, kind: u8, payload: &[u8]) {
        push_record(self.tag, buf, kind, payload);
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

    fn io(&self, source: io::Error) -> WalError {
        WalError::Io {
            path: self.path.clone(),
            source,
        }
    }

    pub fn corrupt(&self, what: String) -> WalError {
        WalError::Corrupt {
            path: self.path.clone(),
            what,
        }
    }
}

fn check(tag: &[u8], kind: u8, payload: &[u8]) -> [u8; CHECK_BYTES] {
    let h = hash_parts(&[tag, &[kind], payload]);
    let mut c = [0u8; CHECK_BYTES];
    c.copy_from_slice(&h[..CHECK_BYTES]);
    c
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

fn push_record(tag: &[u8], buf: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    assert!(
        payload.len() <= RECORD_BYTES_MAX,
        "a turn's records and a snapshot stay under RECORD_BYTES_MAX"
    );
    buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buf.push(kind);
    buf.extend_from_slice(payload);
    buf.extend_from_slice(&check(tag, kind, payload));
}

/// The record at `at`, if it is complete and its checksum holds.
fn record_at<'a>(tag: &[u8], bytes: &'a [u8], at: usize) -> Option<(u8, &'a [u8], usize)> {
    let header = bytes.get(at..at + HEADER_BYTES)?;
    let len = u32::from_le_bytes(header[..4].try_into().ok()?) as usize;
    if len > RECORD_BYTES_MAX {
        return None;
    }
    let kind = header[4];
    let start = at + HEADER_BYTES;
    let payload = bytes.get(start..start + len)?;
    let stored = bytes.get(start + len..start + len + CHECK_BYTES)?;
    (stored == check(tag, kind, payload)).then_some((kind, payload, start + len + CHECK_BYTES))
}
