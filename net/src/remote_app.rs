//! Separated execution (BFT-DEP): the App runs in its own process (`bftbench
//! kv-server`) and the replica reaches it over a socket on the same host.
//!
//! Requests and replies are length-prefixed frames on one blocking connection:
//! `[1][op]` execute → result; `[2]` digest → 32 bytes; `[3]` snapshot → bytes;
//! `[4][snapshot]` restore → `[0]` or `[1][message]`.
//! An App must answer; if the execution server fails, the replica stops (a
//! crash fault) rather than diverge.

use crate::frame::{BYTES_READ, BYTES_WRITTEN};
use bft_core::app::{App, RestoreError};
use bft_core::crypto::Digest;
use bft_core::limits::FRAME_BYTES_MAX;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const EXECUTE: u8 = 1;
const DIGEST: u8 = 2;
const SNAPSHOT: u8 = 3;
const RESTORE: u8 = 4;
const EXECUTE_BATCH: u8 = 5;

fn encode_list(items: &[&[u8]], tag: Option<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + items.iter().map(|i| i.len() + 4).sum::<usize>());
    out.extend(tag);
    out.extend_from_slice(&(items.len() as u32).to_le_bytes());
    for i in items {
        out.extend_from_slice(&(i.len() as u32).to_le_bytes());
        out.extend_from_slice(i);
    }
    out
}

fn decode_list(bytes: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut r = bft_core::codec::Reader::new(bytes);
    let n = r
        .len("list", bft_core::limits::BATCH_REQUESTS_MAX, 4)
        .ok()?;
    let items = (0..n)
        .map(|_| r.bytes("item", FRAME_BYTES_MAX).map(<[u8]>::to_vec))
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    r.finish().ok()?;
    Some(items)
}

fn write_frame(s: &mut TcpStream, body: &[u8]) -> io::Result<()> {
    let mut buf = Vec::with_capacity(body.len() + 4);
    buf.extend_from_slice(&(body.len() as u32).to_le_bytes());
    buf.extend_from_slice(body);
    s.write_all(&buf)?;
    BYTES_WRITTEN.fetch_add(buf.len() as u64, Ordering::Relaxed);
    Ok(())
}

/// One frame from a blocking stream: exactly the declared length, bounded.
fn read_frame(s: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > FRAME_BYTES_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes"),
        ));
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    BYTES_READ.fetch_add(4 + len as u64, Ordering::Relaxed);
    Ok(body)
}

/// The replica's side: an `App` whose state lives in another process.
pub struct RemoteApp {
    addr: SocketAddr,
    stream: TcpStream,
}

impl RemoteApp {
    /// Connects, waiting up to `wait` for the server to come up.
    pub fn connect(addr: SocketAddr, wait: Duration) -> io::Result<RemoteApp> {
        let deadline = Instant::now() + wait;
        let stream = loop {
            match TcpStream::connect(addr) {
                Ok(s) => break s,
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        stream.set_nodelay(true)?;
        Ok(RemoteApp { addr, stream })
    }

    fn call(&mut self, body: &[u8]) -> Vec<u8> {
        let r = write_frame(&mut self.stream, body).and_then(|_| read_frame(&mut self.stream));
        match r {
            Ok(reply) => reply,
            // Without its App a replica cannot go on: stop as a crash fault.
            Err(e) => panic!("execution server at {} failed: {e}", self.addr),
        }
    }
}

impl App for RemoteApp {
    fn execute(&mut self, op: &[u8]) -> Vec<u8> {
        let mut body = Vec::with_capacity(op.len() + 1);
        body.push(EXECUTE);
        body.extend_from_slice(op);
        self.call(&body)
    }

    fn execute_batch(&mut self, ops: &[&[u8]]) -> Vec<Vec<u8>> {
        if ops.is_empty() {
            return Vec::new();
        }
        let reply = self.call(&encode_list(ops, Some(EXECUTE_BATCH)));
        match decode_list(&reply).filter(|r| r.len() == ops.len()) {
            Some(results) => results,
            None => panic!(
                "execution server at {} answered a batch of {} badly",
                self.addr,
                ops.len()
            ),
        }
    }

    fn digest(&self) -> Digest {
        // `digest` takes &self; the connection needs &mut: use a cloned handle.
        let mut s = self
            .stream
            .try_clone()
            .expect("cloning the execution connection");
        let reply = write_frame(&mut s, &[DIGEST]).and_then(|_| read_frame(&mut s));
        match reply
            .ok()
            .and_then(|d| <[u8; 32]>::try_from(d.as_slice()).ok())
        {
            Some(d) => d,
            None => panic!(
                "execution server at {} failed to report its digest",
                self.addr
            ),
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        let mut s = self
            .stream
            .try_clone()
            .expect("cloning the execution connection");
        match write_frame(&mut s, &[SNAPSHOT]).and_then(|_| read_frame(&mut s)) {
            Ok(b) => b,
            Err(e) => panic!("execution server at {} failed to snapshot: {e}", self.addr),
        }
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        let mut body = Vec::with_capacity(snapshot.len() + 1);
        body.push(RESTORE);
        body.extend_from_slice(snapshot);
        let reply = self.call(&body);
        match reply.split_first() {
            Some((0, _)) => Ok(()),
            Some((_, msg)) => Err(RestoreError(String::from_utf8_lossy(msg).into_owned())),
            None => Err(RestoreError("empty reply from the execution server".into())),
        }
    }
}

/// The execution server: serves one replica connection at a time, holding `app`.
pub fn serve_app(
    listener: TcpListener,
    app: &mut dyn App,
    stop: &std::sync::atomic::AtomicBool,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let (mut s, _) = match listener.accept() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            Err(e) => return Err(e),
        };
        s.set_nonblocking(false)?;
        s.set_nodelay(true)?;
        while let Ok(req) = read_frame(&mut s) {
            let reply = match req.split_first() {
                Some((&EXECUTE, op)) => app.execute(op),
                Some((&EXECUTE_BATCH, list)) => match decode_list(list) {
                    Some(ops) => {
                        let refs: Vec<&[u8]> = ops.iter().map(Vec::as_slice).collect();
                        let results = app.execute_batch(&refs);
                        let refs: Vec<&[u8]> = results.iter().map(Vec::as_slice).collect();
                        encode_list(&refs, None)
                    }
                    None => break,
                },
                Some((&DIGEST, _)) => app.digest().to_vec(),
                Some((&SNAPSHOT, _)) => app.snapshot(),
                Some((&RESTORE, snap)) => match app.restore(snap) {
                    Ok(()) => vec![0],
                    Err(e) => [&[1u8][..], e.0.as_bytes()].concat(),
                },
                _ => break, // a confused peer: drop the connection
            };
            if write_frame(&mut s, &reply).is_err() {
                break;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bft_core::app::ChainApp;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    #[test]
    fn a_remote_app_behaves_like_the_local_one() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let server = std::thread::spawn(move || serve_app(listener, &mut ChainApp::default(), &s2));
        let mut remote = RemoteApp::connect(addr, Duration::from_secs(5)).unwrap();
        let mut local = ChainApp::default();
        for op in [&b"a"[..], b"bb", b""] {
            assert_eq!(remote.execute(op), local.execute(op));
        }
        let batch: [&[u8]; 3] = [b"x", b"", b"yz"];
        assert_eq!(remote.execute_batch(&batch), local.execute_batch(&batch));
        assert_eq!(remote.digest(), local.digest());
        let snap = remote.snapshot();
        assert_eq!(snap, local.snapshot());
        remote.execute(b"more");
        remote.restore(&snap).unwrap();
        assert_eq!(remote.digest(), local.digest());
        assert!(remote.restore(b"bad").is_err());
        drop(remote);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        server.join().unwrap().unwrap();
    }
}
