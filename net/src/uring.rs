//! `--io uring`: a turn's socket reads (and, separately, its writes) go to the
//! kernel as one io_uring submission instead of one syscall each.
//!
//! [`IoBatch::run`] is synchronous: it submits every operation, then waits
//! until the kernel has completed every one of them before it returns. The
//! operations are `recv`/`send` with `MSG_DONTWAIT` on non-blocking sockets,
//! so each completes at once (with data, or `-EAGAIN`); none can park in the
//! kernel waiting for a peer. Readiness (which sockets to read) still comes
//! from epoll, and accepting and connecting stay on mio: they are rare.
//!
//! This is the one module of the workspace that uses `unsafe`: pushing an
//! entry whose buffer pointer the kernel will use. The safety argument is that
//! every buffer is borrowed for the whole of `run`, and `run` does not return
//! while the kernel may still touch one (it aborts the process instead, if the
//! ring fails in a way that leaves operations in flight).
#![allow(unsafe_code)]

use io_uring::{opcode, types, IoUring};
use std::io;
use std::os::fd::RawFd;

/// Submission-queue entries; larger batches go in rounds of this many.
pub const RING_ENTRIES: u32 = 256;

/// One socket operation of a batch, and where its result lands.
#[derive(Debug)]
pub enum Op<'a> {
    Recv { fd: RawFd, buf: &'a mut [u8] },
    Send { fd: RawFd, buf: &'a [u8] },
}

/// What an operation returned: bytes moved, or the error.
pub type OpResult = io::Result<usize>;

pub struct IoBatch {
    ring: IoUring,
    /// Submissions (io_uring_enter calls) made, for the replica's report.
    pub submissions: u64,
    /// Operations completed.
    pub ops: u64,
}

impl std::fmt::Debug for IoBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoBatch")
            .field("submissions", &self.submissions)
            .field("ops", &self.ops)
            .finish()
    }
}

impl IoBatch {
    /// Fails where io_uring is unavailable (an old kernel,
    /// `kernel.io_uring_disabled`, or a seccomp profile such as Docker's default).
    pub fn new() -> io::Result<IoBatch> {
        let ring = IoUring::new(RING_ENTRIES).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("io_uring is unavailable here ({e}); use --io epoll"),
            )
        })?;
        Ok(IoBatch {
            ring,
            submissions: 0,
            ops: 0,
        })
    }

    /// Runs every operation to completion and returns their results in order.
    pub fn run(&mut self, ops: &mut [Op<'_>]) -> Vec<OpResult> {
        let mut results: Vec<OpResult> = Vec::with_capacity(ops.len());
        for chunk in ops.chunks_mut(RING_ENTRIES as usize) {
            let base = results.len();
            results.extend(chunk.iter().map(|_| Ok(0)));
            self.run_chunk(chunk, &mut results[base..]);
        }
        self.ops += ops.len() as u64;
        results
    }

    /// At most `RING_ENTRIES` operations: all fit the submission queue.
    fn run_chunk(&mut self, chunk: &mut [Op<'_>], results: &mut [OpResult]) {
        debug_assert!(chunk.len() <= RING_ENTRIES as usize);
        let dontwait = libc::MSG_DONTWAIT;
        {
            let mut sq = self.ring.submission();
            for (i, op) in chunk.iter_mut().enumerate() {
                let entry = match op {
                    Op::Recv { fd, buf } => {
                        opcode::Recv::new(types::Fd(*fd), buf.as_mut_ptr(), io_len(buf.len()))
                            .flags(dontwait)
                            .build()
                    }
                    Op::Send { fd, buf } => {
                        opcode::Send::new(types::Fd(*fd), buf.as_ptr(), io_len(buf.len()))
                            .flags(dontwait | libc::MSG_NOSIGNAL)
                            .build()
                    }
                }
                .user_data(i as u64);
                // SAFETY: the buffer `entry` points into is borrowed by `chunk`
                // until this function returns, and it returns only once the
                // kernel has completed this entry (the loop below), so the
                // pointer stays valid for as long as the kernel may use it.
                // The queue has room: the chunk holds at most RING_ENTRIES
                // and the previous chunk's entries were all consumed.
                let pushed = unsafe { sq.push(&entry) };
                assert!(pushed.is_ok(), "a chunk fits the submission queue");
            }
        }
        let mut done = 0;
        while done < chunk.len() {
            let want = chunk.len() - done;
            match self.ring.submit_and_wait(want) {
                Ok(_) => self.submissions += 1,
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                // Completions to reap first, or no room to submit now: nothing
                // new was submitted, so reaping and retrying is safe.
                Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY | libc::EAGAIN)) => {}
                Err(e) => abort_in_flight(&format!("io_uring_enter failed ({e})")),
            }
            for cqe in self.ring.completion() {
                let i = cqe.user_data() as usize;
                if i >= results.len() {
                    abort_in_flight("a completion for no operation of this batch");
                }
                let res = cqe.result();
                results[i] = if res >= 0 {
                    Ok(res as usize)
                } else {
                    Err(io::Error::from_raw_os_error(-res))
                };
                done += 1;
            }
        }
    }
}

/// Operations may be in flight with borrowed buffers: returning or unwinding
/// now could let the kernel write into freed memory, so the process stops.
/// (Not `eprintln!`, which panics if stderr fails.)
fn abort_in_flight(why: &str) -> ! {
    use std::io::Write;
    let _ = writeln!(io::stderr(), "{why} with operations in flight; aborting");
    std::process::abort();
}

/// Buffers are bounded far below 4 GiB (READ_CHUNK, OUTBOUND_BYTES_MAX).
fn io_len(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    /// None (and a loud SKIPPED) where io_uring is unavailable, except under CI.
    fn ring() -> Option<IoBatch> {
        match IoBatch::new() {
            Ok(io) => Some(io),
            Err(e) if std::env::var_os("CI").is_none() => {
                eprintln!("SKIPPED: {e}");
                None
            }
            Err(e) => panic!("{e}"),
        }
    }

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        a.set_nonblocking(true).unwrap();
        b.set_nonblocking(true).unwrap();
        (a, b)
    }

    #[test]
    fn sends_and_receives_complete_in_one_batch() {
        let Some(mut io) = ring() else { return };
        let (a, mut b) = pair();
        let (c, mut d) = pair();
        let mut ops = [
            Op::Send {
                fd: a.as_raw_fd(),
                buf: b"hello",
            },
            Op::Send {
                fd: c.as_raw_fd(),
                buf: b"world!",
            },
        ];
        let r = io.run(&mut ops);
        assert_eq!(
            r.iter().map(|r| *r.as_ref().unwrap()).collect::<Vec<_>>(),
            [5, 6]
        );
        assert_eq!(io.submissions, 1, "both sends in one submission");
        std::thread::sleep(std::time::Duration::from_millis(20));
        let (mut x, mut y) = ([0u8; 16], [0u8; 16]);
        let mut ops = [
            Op::Recv {
                fd: b.as_raw_fd(),
                buf: &mut x,
            },
            Op::Recv {
                fd: d.as_raw_fd(),
                buf: &mut y,
            },
        ];
        let r = io.run(&mut ops);
        assert_eq!(*r[0].as_ref().unwrap(), 5);
        assert_eq!(*r[1].as_ref().unwrap(), 6);
        assert_eq!(&x[..5], b"hello");
        assert_eq!(&y[..6], b"world!");
        // Nothing more to read: the batch returns at once with WouldBlock.
        let mut ops = [Op::Recv {
            fd: b.as_raw_fd(),
            buf: &mut x,
        }];
        let r = io.run(&mut ops);
        assert_eq!(r[0].as_ref().unwrap_err().kind(), io::ErrorKind::WouldBlock);
        // A closed peer reads as 0 bytes.
        drop(a);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut ops = [Op::Recv {
            fd: b.as_raw_fd(),
            buf: &mut x,
        }];
        assert_eq!(*io.run(&mut ops)[0].as_ref().unwrap(), 0);
        let _ = (b.read(&mut x), d.write(b""));
    }

    #[test]
    fn batches_larger_than_the_ring_run_in_rounds() {
        let Some(mut io) = ring() else { return };
        let (a, mut b) = pair();
        let n = RING_ENTRIES as usize * 2 + 3;
        let mut ops: Vec<Op> = (0..n)
            .map(|_| Op::Send {
                fd: a.as_raw_fd(),
                buf: b"x",
            })
            .collect();
        let r = io.run(&mut ops);
        assert!(r.iter().all(|r| *r.as_ref().unwrap() == 1));
        assert_eq!(io.ops, n as u64);
        b.set_nonblocking(false).unwrap();
        b.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut got = vec![0u8; n];
        b.read_exact(&mut got).unwrap();
        assert!(got.iter().all(|&c| c == b'x'));
    }

    #[test]
    fn a_bad_descriptor_fails_its_own_operation_only() {
        let Some(mut io) = ring() else { return };
        let (a, _b) = pair();
        let mut ops = [
            Op::Send { fd: -1, buf: b"x" },
            Op::Send {
                fd: a.as_raw_fd(),
                buf: b"y",
            },
        ];
        let r = io.run(&mut ops);
        assert!(r[0].is_err());
        assert_eq!(*r[1].as_ref().unwrap(), 1);
    }
}
