//! Length-prefixed framing: `[u32 length, little-endian][frame]`.
//!
//! Reading checks the declared length against `FRAME_BYTES_MAX` before it
//! allocates; writing appends frames to one buffer per connection so that many
//! frames leave in one `write`.

use bft_core::limits::FRAME_BYTES_MAX;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes read from a socket per `read` call.
pub const READ_CHUNK: usize = 64 << 10;
/// Pending output per connection; beyond it frames are dropped (the protocol
/// tolerates loss; a peer that does not read must not exhaust our memory).
/// A queue under it still takes one more frame of any size up to
/// `FRAME_BYTES_MAX`, so a state reply of tens of MiB is not dropped behind
/// ordinary traffic (it would be, every try, on a busy link); a queue holds
/// at most `OUTBOUND_BYTES_MAX + FRAME_BYTES_MAX + 4` bytes.
pub const OUTBOUND_BYTES_MAX: usize = 64 << 20;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("declared frame length {0} exceeds the bound")]
    TooLarge(usize),
}

/// What one `fill` left behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fill {
    /// The socket has nothing more (would block): wait for the next event.
    Drained,
    /// The buffer is full: take the frames out, then fill again (edge-triggered
    /// readiness will not announce the bytes still in the socket).
    More,
    /// The peer closed the connection.
    Closed,
}

/// Bytes this process has read from and written to its framed connections
/// (all of them, payload and length prefixes): what `stats` reports per role.
pub static BYTES_READ: AtomicU64 = AtomicU64::new(0);
pub static BYTES_WRITTEN: AtomicU64 = AtomicU64::new(0);

/// Accumulates bytes from a stream and yields whole frames.
///
/// The buffer is zeroed only when it grows; `end` marks what was read, so a
/// read does not pay to clear `READ_CHUNK` bytes first.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl FrameReader {
    /// Reads what the socket has, up to a buffer bound.
    pub fn fill(&mut self, r: &mut impl Read) -> io::Result<Fill> {
        loop {
            match r.read(self.spare()) {
                Ok(0) => return Ok(Fill::Closed),
                Ok(n) => {
                    if self.commit(n) {
                        return Ok(Fill::More);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Fill::Drained),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Room for the next read (`READ_CHUNK` bytes), for a caller that reads
    /// itself (the io_uring back end); then [`commit`](Self::commit) what came.
    pub fn spare(&mut self) -> &mut [u8] {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.buf.len() < self.end + READ_CHUNK {
            self.buf.resize(self.end + READ_CHUNK, 0);
        }
        &mut self.buf[self.end..self.end + READ_CHUNK]
    }

    /// Takes `n` bytes just read into [`spare`](Self::spare). True when the
    /// buffer bound is reached: drain frames before reading more.
    pub fn commit(&mut self, n: usize) -> bool {
        assert!(
            self.end + n <= self.buf.len(),
            "committed more than was spare"
        );
        self.end += n;
        BYTES_READ.fetch_add(n as u64, Ordering::Relaxed);
        self.end - self.start > 4 * READ_CHUNK
    }

    /// The next whole frame, if buffered.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, FrameError> {
        let avail = &self.buf[self.start..self.end];
        if avail.len() < 4 {
            self.compact();
            return Ok(None);
        }
        let len = u32::from_le_bytes([avail[0], avail[1], avail[2], avail[3]]) as usize;
        if len > FRAME_BYTES_MAX {
            return Err(FrameError::TooLarge(len));
        }
        if avail.len() < 4 + len {
            self.compact();
            return Ok(None);
        }
        let at = self.start + 4;
        self.start = at + len;
        Ok(Some(&self.buf[at..at + len]))
    }

    /// Moves a partial frame to the front, so the buffer stays within a
    /// frame plus a few read chunks.
    fn compact(&mut self) {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }
}

/// Frames waiting to be written to one connection.
#[derive(Debug, Default)]
pub struct FrameWriter {
    buf: Vec<u8>,
    sent: usize,
    pub dropped: u64,
}

impl FrameWriter {
    /// Queues a frame; false (and counted) if the connection is too far behind.
    pub fn push(&mut self, frame: &[u8]) -> bool {
        let pending = self.buf.len() - self.sent;
        if pending >= OUTBOUND_BYTES_MAX || frame.len() > FRAME_BYTES_MAX {
            self.dropped += 1;
            return false;
        }
        if self.sent > self.buf.len() / 2 {
            // Under sustained backpressure: drop what was already written.
            self.buf.drain(..self.sent);
            self.sent = 0;
        }
        self.buf
            .extend_from_slice(&(frame.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(frame);
        debug_assert!(self.buf.len() - self.sent <= OUTBOUND_BYTES_MAX + FRAME_BYTES_MAX + 4);
        true
    }

    pub fn is_empty(&self) -> bool {
        self.sent == self.buf.len()
    }

    /// Writes as much as the socket takes. Ok(true) when everything is out.
    pub fn flush(&mut self, w: &mut impl Write) -> io::Result<bool> {
        while !self.is_empty() {
            match w.write(self.pending()) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.consumed(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Bytes queued and not yet written, for a caller that writes itself.
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.sent..]
    }

    /// Marks `n` bytes of [`pending`](Self::pending) as written.
    pub fn consumed(&mut self, n: usize) {
        assert!(
            self.sent + n <= self.buf.len(),
            "consumed more than pending"
        );
        self.sent += n;
        BYTES_WRITTEN.fetch_add(n as u64, Ordering::Relaxed);
        if self.sent == self.buf.len() {
            self.buf.clear();
            self.sent = 0;
        }
    }

    pub fn clear(&mut self) {
        self.buf.clear();
        self.sent = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found in review: a state reply of up to 63 MiB met a 64 MiB queue,
    /// and behind any other traffic it was dropped at every try. A queue
    /// under its bound takes one more frame of any size; a full one none.
    #[test]
    fn a_large_frame_is_queued_behind_traffic_and_a_full_queue_takes_nothing() {
        let mut w = FrameWriter::default();
        assert!(w.push(&vec![1u8; 2 << 20]), "ordinary traffic");
        let big = vec![2u8; FRAME_BYTES_MAX - 1024];
        assert!(w.push(&big), "a reply near the frame bound, behind it");
        assert!(!w.push(b"more"), "the queue is past its bound now");
        assert_eq!(w.dropped, 1);
        let mut sink = Vec::new();
        assert!(w.flush(&mut sink).unwrap());
        assert!(w.push(b"after the drain"));
        assert!(
            !w.push(&vec![0u8; FRAME_BYTES_MAX + 1]),
            "never past a frame's bound"
        );
    }

    #[test]
    fn frames_round_trip_across_partial_reads() {
        let mut w = FrameWriter::default();
        assert!(w.push(b"hello"));
        assert!(w.push(b""));
        assert!(w.push(&[7u8; 1000]));
        let mut wire = Vec::new();
        assert!(w.flush(&mut wire).unwrap());
        let mut r = FrameReader::default();
        // Feed one byte at a time.
        let mut got = Vec::new();
        for b in wire.chunks(1) {
            assert_ne!(r.fill(&mut &b[..]).unwrap(), Fill::More);
            while let Some(f) = r.next_frame().unwrap() {
                got.push(f.to_vec());
            }
        }
        assert_eq!(got, vec![b"hello".to_vec(), vec![], vec![7u8; 1000]]);
    }

    #[test]
    fn an_oversized_length_is_refused_before_allocation() {
        let mut r = FrameReader::default();
        let bytes = u32::MAX.to_le_bytes();
        r.fill(&mut &bytes[..]).unwrap();
        assert_eq!(r.next_frame(), Err(FrameError::TooLarge(u32::MAX as usize)));
    }

    #[test]
    fn a_slow_reader_cannot_grow_the_output_without_bound() {
        let mut w = FrameWriter::default();
        let big = vec![0u8; 1 << 20];
        let accepted = (0..100).filter(|_| w.push(&big)).count();
        assert!(accepted <= 64 && w.dropped > 0, "{accepted}");
    }
}
