//! The replica's event loop (epoll through mio): pumps the sans-IO core.
//!
//! One thread. Every replica dials every other (messages to peer r leave on
//! our outbound connection to r); peers and clients dial our listener.
//! Frames read in one turn are handled together: their signatures are first
//! batch-verified (see `verify_pool`), then the core handles each frame.
//! Frames produced while handling events are queued per connection and
//! flushed once per loop turn, so many frames leave in one `write`.

use crate::cluster::Cluster;
use crate::frame::{Fill, FrameReader, FrameWriter, READ_CHUNK};
use crate::uring::{IoBatch, Op};
use crate::verify_pool::BatchVerifier;
use bft_core::bare::BareServer;
use bft_core::crypto::Peer;
use bft_core::limits::CLIENTS_MAX;
use bft_core::message::{ClientId, ReplicaId};
use bft_core::replica::{Output, Replica};
use bft_core::time::Time;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use std::collections::BTreeMap;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const LISTENER: Token = Token(0);
const PEER_BASE: usize = 1;
const INBOUND_BASE: usize = 1 << 20;
/// Longest sleep in `poll`, so a stop request is noticed quickly.
const POLL_MAX: Duration = Duration::from_millis(50);
const RECONNECT_MIN: Duration = Duration::from_millis(20);
const RECONNECT_MAX: Duration = Duration::from_secs(1);
/// Inbound connections at most (peers and client processes).
pub const INBOUND_MAX: usize = 512; // below the usual 1024-descriptor soft limit
/// Frames buffered in one turn before they are verified and handled.
pub const TURN_FRAMES_MAX: usize = 4096;
/// Reads one connection gets per loop turn (4 × `READ_CHUNK` = 256 KiB). A
/// connection with more to read waits for the next turn, behind every other
/// ready connection: one peer writing as fast as it can cannot starve the rest.
pub const READS_PER_TURN_MAX: usize = 4;

/// A sans-IO protocol engine the loop can pump: the BFT replica or the bare server.
pub trait Engine {
    fn id(&self) -> ReplicaId;
    fn handle_message(&mut self, now: Time, frame: &[u8]);
    fn handle_timeout(&mut self, now: Time);
    fn poll_timeout(&self) -> Option<Time>;
    /// The next frame to send.
    fn poll_send(&mut self) -> Option<(Peer, Vec<u8>)>;
    /// Frames dropped for failing decoding or authentication, so far.
    fn rejected(&self) -> u64;
    /// The client whose *authenticated* request the last frame carried.
    fn authenticated_client(&self) -> Option<ClientId>;
}

impl Engine for Replica {
    fn id(&self) -> ReplicaId {
        Replica::id(self)
    }
    fn handle_message(&mut self, now: Time, frame: &[u8]) {
        Replica::handle_message(self, now, frame)
    }
    fn handle_timeout(&mut self, now: Time) {
        Replica::handle_timeout(self, now)
    }
    fn poll_timeout(&self) -> Option<Time> {
        Replica::poll_timeout(self)
    }
    fn poll_send(&mut self) -> Option<(Peer, Vec<u8>)> {
        while let Some(out) = self.poll_output() {
            if let Output::Send { to, frame } = out {
                return Some((to, frame));
            }
        }
        None
    }
    fn rejected(&self) -> u64 {
        self.stats().dropped_bad_auth + self.stats().dropped_undecodable
    }
    fn authenticated_client(&self) -> Option<ClientId> {
        Replica::authenticated_client(self)
    }
}

impl Engine for BareServer {
    fn id(&self) -> ReplicaId {
        0
    }
    fn handle_message(&mut self, _now: Time, frame: &[u8]) {
        BareServer::handle_message(self, frame)
    }
    fn handle_timeout(&mut self, _now: Time) {}
    fn poll_timeout(&self) -> Option<Time> {
        None
    }
    fn poll_send(&mut self) -> Option<(Peer, Vec<u8>)> {
        self.poll_output()
    }
    fn rejected(&self) -> u64 {
        self.stats().dropped_bad_auth + self.stats().dropped_undecodable
    }
    fn authenticated_client(&self) -> Option<ClientId> {
        BareServer::authenticated_client(self)
    }
}

/// What the network layer saw, beside the core's own `Stats`.
#[derive(Debug, Default, Clone)]
pub struct NetStats {
    pub frames_in: u64,
    pub frames_out: u64,
    pub writes: u64,
    pub oversized_frames: u64,
    pub connections_closed: u64,
    pub dropped_outbound: u64,
    pub unroutable_replies: u64,
    pub accept_errors: u64,
    /// `--io uring`: io_uring submissions, and the reads and writes they carried.
    pub uring_submissions: u64,
    pub uring_ops: u64,
    /// A connection still had data after its `READS_PER_TURN_MAX` reads and
    /// was left for the next turn.
    pub reads_deferred: u64,
}

struct PeerLink {
    addr: std::net::SocketAddr,
    stream: Option<TcpStream>,
    /// A non-blocking connect completes with the first writable event.
    connected: bool,
    out: FrameWriter,
    retry_at: Instant,
    backoff: Duration,
}

struct Inbound {
    stream: TcpStream,
    reader: FrameReader,
    out: FrameWriter,
    warned: bool,
}

pub struct ReplicaNode<E: Engine> {
    replica: E,
    me: ReplicaId,
    poll: Poll,
    listener: TcpListener,
    peers: Vec<Option<PeerLink>>,
    inbound: Vec<Option<Inbound>>,
    clients: BTreeMap<ClientId, usize>,
    epoch: Instant,
    accept_pending: bool,
    /// Frames read this turn, with the inbound connection each came on.
    turn: Vec<(usize, Vec<u8>)>,
    verifier: Option<BatchVerifier>,
    /// `--io uring`: reads and writes go through this in batches.
    uring: Option<IoBatch>,
    /// Inbound connections epoll found readable this turn (uring only), and
    /// whether the event also said the peer closed or failed.
    readable: Vec<(usize, bool)>,
    /// Inbound connections (epoll) left with data after their reads this turn.
    unfinished: Vec<usize>,
    pub net: NetStats,
}

/// Which connection an operation of an io_uring batch belongs to.
#[derive(Clone, Copy)]
enum Conn {
    Peer(usize),
    Inbound(usize),
}

fn nodelay(s: &TcpStream) {
    let _ = s.set_nodelay(true); // small frames must not wait for Nagle
}

impl<E: Engine> ReplicaNode<E> {
    pub fn bind(cluster: &Cluster, replica: E) -> io::Result<ReplicaNode<E>> {
        let me = replica.id();
        let poll = Poll::new()?;
        let mut listener = TcpListener::bind(cluster.addrs[me as usize])?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let now = Instant::now();
        let peers = cluster
            .addrs
            .iter()
            .enumerate()
            .map(|(r, addr)| {
                (r != me as usize).then(|| PeerLink {
                    addr: *addr,
                    stream: None,
                    connected: false,
                    out: FrameWriter::default(),
                    retry_at: now,
                    backoff: RECONNECT_MIN,
                })
            })
            .collect();
        Ok(ReplicaNode {
            replica,
            me,
            poll,
            listener,
            peers,
            inbound: Vec::new(),
            clients: BTreeMap::new(),
            epoch: now,
            accept_pending: false,
            turn: Vec::new(),
            verifier: None,
            uring: None,
            readable: Vec::new(),
            unfinished: Vec::new(),
            net: NetStats::default(),
        })
    }

    /// Reads and writes each turn's sockets in one io_uring submission each
    /// (fails where io_uring is unavailable).
    pub fn with_uring(mut self) -> io::Result<Self> {
        self.uring = Some(IoBatch::new()?);
        Ok(self)
    }

    /// Batch-verifies each turn's signatures before the core handles its frames.
    pub fn with_batch_verifier(mut self, v: BatchVerifier) -> Self {
        self.verifier = Some(v);
        self
    }

    pub fn verifier(&self) -> Option<&BatchVerifier> {
        self.verifier.as_ref()
    }

    pub fn engine(&self) -> &E {
        &self.replica
    }

    fn now(&self) -> Time {
        Time(self.epoch.elapsed().as_nanos() as u64)
    }

    /// Runs until `stop` is set.
    pub fn run(&mut self, stop: &AtomicBool) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        while !stop.load(Ordering::Relaxed) {
            self.reconnect_due();
            // Connections left with data last turn raise no new edge: poll
            // without waiting, and read them after this turn's events.
            let unfinished = std::mem::take(&mut self.unfinished);
            let waiting = !unfinished.is_empty() || !self.readable.is_empty();
            let timeout = if waiting {
                Duration::ZERO
            } else {
                self.poll_timeout()
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept_pending = true,
                    Token(t) if (PEER_BASE..INBOUND_BASE).contains(&t) => {
                        let closed = ev.is_readable() || ev.is_read_closed() || ev.is_error();
                        self.peer_event(t - PEER_BASE, closed, ev.is_writable())
                    }
                    Token(t) if self.uring.is_some() => {
                        let ending = ev.is_read_closed() || ev.is_error();
                        if ev.is_readable() || ending {
                            self.readable.push((t - INBOUND_BASE, ending));
                        }
                    }
                    Token(t) => self.inbound_event(t - INBOUND_BASE),
                }
            }
            for idx in unfinished {
                self.inbound_event(idx);
            }
            if self.uring.is_some() {
                self.read_batched();
            }
            self.handle_turn();
            if self.accept_pending {
                self.accept_pending = !self.accept();
            }
            let now = self.now();
            if self.replica.poll_timeout().is_some_and(|t| t <= now) {
                self.replica.handle_timeout(now);
            }
            self.route_outputs();
            self.flush_all();
        }
        Ok(())
    }

    fn poll_timeout(&self) -> Duration {
        let now = self.now();
        let core = self.replica.poll_timeout().map_or(POLL_MAX, |t| {
            Duration::from_nanos(t.0.saturating_sub(now.0))
        });
        core.min(POLL_MAX)
    }

    /// Accepts queued connections; true once the queue is empty. An error
    /// (out of descriptors, say) is counted and retried on the next turn.
    fn accept(&mut self) -> bool {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    let Some(idx) = self.free_inbound_slot() else {
                        self.net.connections_closed += 1;
                        continue; // full: the connection is dropped
                    };
                    nodelay(&stream);
                    let token = Token(INBOUND_BASE + idx);
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    if self
                        .poll
                        .registry()
                        .register(&mut stream, token, interest)
                        .is_err()
                    {
                        self.net.accept_errors += 1;
                        continue;
                    }
                    self.inbound[idx] = Some(Inbound {
                        stream,
                        reader: FrameReader::default(),
                        out: FrameWriter::default(),
                        warned: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.net.accept_errors += 1;
                    return false;
                }
            }
        }
    }

    fn free_inbound_slot(&mut self) -> Option<usize> {
        if let Some(i) = self.inbound.iter().position(Option::is_none) {
            return Some(i);
        }
        if self.inbound.len() >= INBOUND_MAX {
            return None;
        }
        self.inbound.push(None);
        Some(self.inbound.len() - 1)
    }

    /// Reads connection `idx` until it is drained, closed or has had its
    /// `READS_PER_TURN_MAX` reads (then it is read again next turn).
    fn inbound_event(&mut self, idx: usize) {
        let mut reads = 0;
        let (fill, oversized) = loop {
            let Some(conn) = self.inbound.get_mut(idx).and_then(Option::as_mut) else {
                return;
            };
            let fill = conn.reader.fill(&mut conn.stream).unwrap_or(Fill::Closed);
            reads += 1;
            let oversized = !self.take_frames(idx);
            if fill != Fill::More || oversized {
                break (fill, oversized);
            }
            if reads == READS_PER_TURN_MAX {
                self.net.reads_deferred += 1;
                if !self.unfinished.contains(&idx) {
                    self.unfinished.push(idx);
                }
                assert!(self.unfinished.len() <= INBOUND_MAX);
                return;
            }
        };
        self.after_read(idx, fill, oversized);
    }

    /// Moves the complete frames buffered on connection `idx` into the turn
    /// (handling the turn when it is full). False if one declared an oversized length.
    fn take_frames(&mut self, idx: usize) -> bool {
        let Some(conn) = self.inbound.get_mut(idx).and_then(Option::as_mut) else {
            return true;
        };
        let mut ok = true;
        loop {
            match conn.reader.next_frame() {
                Ok(Some(f)) => self.turn.push((idx, f.to_vec())),
                Ok(None) => break,
                Err(_) => {
                    ok = false;
                    break;
                }
            }
        }
        if self.turn.len() >= TURN_FRAMES_MAX {
            self.handle_turn();
        }
        ok
    }

    /// Closes connection `idx` if it ended or broke the frame bound.
    fn after_read(&mut self, idx: usize, fill: Fill, oversized: bool) {
        if oversized {
            self.net.oversized_frames += 1;
            self.warn_once(idx, "declared an oversized frame; closing the connection");
        }
        if fill == Fill::Closed || oversized {
            self.close_inbound(idx);
        }
    }

    /// `--io uring`: reads every readable connection in one submission, again
    /// for those that filled their buffer, until all are drained. A read
    /// shorter than the buffer drained the socket: new data raises a new edge.
    /// A connection whose event said the peer closed is read until it reports
    /// the end (data and FIN can come in one edge, and no edge follows).
    fn read_batched(&mut self) {
        let mut events = std::mem::take(&mut self.readable);
        events.sort_unstable();
        let ending: Vec<usize> = events.iter().filter(|e| e.1).map(|e| e.0).collect();
        let mut ready: Vec<usize> = events.into_iter().map(|e| e.0).collect();
        ready.dedup();
        for _ in 0..READS_PER_TURN_MAX {
            if ready.is_empty() {
                return;
            }
            let Some(uring) = self.uring.as_mut() else {
                return;
            };
            let mut ops = Vec::with_capacity(ready.len());
            let mut which = Vec::with_capacity(ready.len());
            for (idx, conn) in self.inbound.iter_mut().enumerate() {
                if let (Some(conn), Ok(_)) = (conn, ready.binary_search(&idx)) {
                    let buf = conn.reader.spare();
                    ops.push(Op::Recv {
                        fd: conn.stream.as_raw_fd(),
                        buf,
                    });
                    which.push(idx);
                }
            }
            let results = uring.run(&mut ops);
            drop(ops);
            self.net.uring_submissions = uring.submissions;
            self.net.uring_ops = uring.ops;
            ready.clear();
            for (idx, res) in which.into_iter().zip(results) {
                let fill = match res {
                    Ok(0) => Fill::Closed,
                    Ok(n) => {
                        let full = self.inbound[idx]
                            .as_mut()
                            .is_some_and(|c| c.reader.commit(n));
                        if full || n == READ_CHUNK || ending.contains(&idx) {
                            Fill::More
                        } else {
                            Fill::Drained
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Fill::Drained,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => Fill::More,
                    Err(_) => Fill::Closed,
                };
                let oversized = !self.take_frames(idx);
                if fill == Fill::More && !oversized {
                    ready.push(idx);
                }
                self.after_read(idx, fill, oversized);
            }
        }
        // Still more to read: next turn, behind the others.
        self.net.reads_deferred += ready.len() as u64;
        for idx in ready {
            self.readable.push((idx, ending.contains(&idx)));
        }
    }

    /// `--io uring`: writes every connection's queued frames in one submission.
    fn flush_batched(&mut self) {
        let Some(uring) = self.uring.as_mut() else {
            return;
        };
        let mut ops = Vec::new();
        let mut which = Vec::new();
        for (r, link) in self.peers.iter_mut().enumerate() {
            if let Some(PeerLink {
                stream: Some(s),
                connected: true,
                out,
                ..
            }) = link
            {
                if !out.is_empty() {
                    ops.push(Op::Send {
                        fd: s.as_raw_fd(),
                        buf: out.pending(),
                    });
                    which.push(Conn::Peer(r));
                }
            }
        }
        for (i, conn) in self.inbound.iter().enumerate() {
            if let Some(conn) = conn.as_ref().filter(|c| !c.out.is_empty()) {
                ops.push(Op::Send {
                    fd: conn.stream.as_raw_fd(),
                    buf: conn.out.pending(),
                });
                which.push(Conn::Inbound(i));
            }
        }
        if ops.is_empty() {
            return;
        }
        let results = uring.run(&mut ops);
        drop(ops);
        self.net.writes += results.len() as u64;
        self.net.uring_submissions = uring.submissions;
        self.net.uring_ops = uring.ops;
        for (conn, res) in which.into_iter().zip(results) {
            let out = match conn {
                Conn::Peer(r) => self.peers[r].as_mut().map(|l| &mut l.out),
                Conn::Inbound(i) => self.inbound[i].as_mut().map(|c| &mut c.out),
            };
            let ok = match (res, out) {
                (Ok(0), _) | (_, None) => false,
                (Ok(n), Some(out)) => {
                    out.consumed(n);
                    true
                }
                (Err(e), _) => matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ),
            };
            match (ok, conn) {
                (true, _) => {}
                (false, Conn::Peer(r)) => self.drop_peer(r),
                (false, Conn::Inbound(i)) => self.close_inbound(i),
            }
        }
    }

    fn warn_once(&mut self, idx: usize, what: &str) {
        if let Some(conn) = self.inbound.get_mut(idx).and_then(Option::as_mut) {
            if !conn.warned {
                conn.warned = true;
                let peer = conn
                    .stream
                    .peer_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                eprintln!("replica {}: connection from {peer} {what}", self.me);
            }
        }
    }

    /// Verifies the turn's signatures in one batch, then handles its frames in order.
    fn handle_turn(&mut self) {
        if self.turn.is_empty() {
            return;
        }
        if let Some(v) = self.verifier.as_mut() {
            v.precheck(self.turn.iter().map(|(_, f)| f.as_slice()));
        }
        let turn = std::mem::take(&mut self.turn);
        for (idx, f) in &turn {
            self.handle_frame(*idx, f);
        }
        if let Some(v) = &self.verifier {
            v.end_turn();
        }
        self.turn = turn;
        self.turn.clear(); // keeps the allocation
    }

    fn handle_frame(&mut self, idx: usize, frame: &[u8]) {
        self.net.frames_in += 1;
        let before = self.replica.rejected();
        self.replica.handle_message(self.now(), frame);
        let after = self.replica.rejected();
        // Route replies only to a connection that carried the client's own
        // authenticated request (a claimed id alone proves nothing).
        let open = self.inbound.get(idx).is_some_and(Option::is_some);
        if let Some(client) = self.replica.authenticated_client().filter(|_| open) {
            if let Some(i) = self.clients.get_mut(&client) {
                *i = idx;
            } else if self.clients.len() < CLIENTS_MAX {
                self.clients.insert(client, idx);
            }
        }
        if after > before {
            self.warn_once(
                idx,
                "sent a frame that failed decoding or authentication (counted and dropped)",
            );
        }
    }

    fn close_inbound(&mut self, idx: usize) {
        if let Some(mut conn) = self.inbound[idx].take() {
            let _ = self.poll.registry().deregister(&mut conn.stream);
            self.net.connections_closed += 1;
        }
        self.clients.retain(|_, i| *i != idx);
    }

    fn peer_event(&mut self, r: usize, readable: bool, writable: bool) {
        let Some(Some(link)) = self.peers.get_mut(r) else {
            return;
        };
        let Some(stream) = link.stream.as_mut() else {
            return;
        };
        if writable && !link.connected {
            match (stream.take_error(), stream.peer_addr()) {
                (Ok(None), Ok(_)) => {
                    link.connected = true;
                    link.backoff = RECONNECT_MIN;
                }
                _ => return self.drop_peer(r),
            }
        }
        if readable {
            // Peers never send on our outbound link: readable means closed or failed.
            let mut buf = [0u8; 256];
            match io::Read::read(stream, &mut buf) {
                Ok(0) => self.drop_peer(r),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => self.drop_peer(r),
            }
        }
    }

    fn drop_peer(&mut self, r: usize) {
        if let Some(Some(link)) = self.peers.get_mut(r) {
            if let Some(mut s) = link.stream.take() {
                let _ = self.poll.registry().deregister(&mut s);
            }
            link.out.clear();
            link.connected = false;
            link.retry_at = Instant::now() + link.backoff;
            link.backoff = (link.backoff * 2).min(RECONNECT_MAX);
        }
    }

    fn reconnect_due(&mut self) {
        let now = Instant::now();
        for r in 0..self.peers.len() {
            let Some(Some(link)) = self.peers.get_mut(r) else {
                continue;
            };
            if link.stream.is_some() || link.retry_at > now {
                continue;
            }
            match TcpStream::connect(link.addr) {
                Ok(mut s) => {
                    nodelay(&s);
                    let token = Token(PEER_BASE + r);
                    if self
                        .poll
                        .registry()
                        .register(&mut s, token, Interest::READABLE | Interest::WRITABLE)
                        .is_ok()
                    {
                        link.stream = Some(s);
                    }
                }
                Err(_) => {
                    link.retry_at = now + link.backoff;
                    link.backoff = (link.backoff * 2).min(RECONNECT_MAX);
                }
            }
        }
    }

    fn route_outputs(&mut self) {
        while let Some((to, frame)) = self.replica.poll_send() {
            self.net.frames_out += 1;
            let queued = match to {
                Peer::Replica(r) => match self.peers.get_mut(r as usize) {
                    Some(Some(link)) if link.stream.is_some() => link.out.push(&frame),
                    _ => false, // not connected: the protocol recovers lost messages
                },
                Peer::Client(c) => {
                    match self.clients.get(&c).and_then(|i| self.inbound[*i].as_mut()) {
                        Some(conn) => conn.out.push(&frame),
                        None => {
                            self.net.unroutable_replies += 1;
                            true
                        }
                    }
                }
            };
            if !queued {
                self.net.dropped_outbound += 1;
            }
        }
    }

    fn flush_all(&mut self) {
        if self.uring.is_some() {
            return self.flush_batched();
        }
        let mut failed_peers = Vec::new();
        for (r, link) in self.peers.iter_mut().enumerate() {
            let Some(link) = link else { continue };
            if !link.connected {
                continue;
            }
            if let (Some(s), false) = (link.stream.as_mut(), link.out.is_empty()) {
                self.net.writes += 1;
                if link.out.flush(s).is_err() {
                    failed_peers.push(r);
                }
            }
        }
        for r in failed_peers {
            self.drop_peer(r);
        }
        let mut failed = Vec::new();
        for (i, conn) in self.inbound.iter_mut().enumerate() {
            let Some(conn) = conn else { continue };
            if !conn.out.is_empty() {
                self.net.writes += 1;
                if conn.out.flush(&mut conn.stream).is_err() {
                    failed.push(i);
                }
            }
        }
        for i in failed {
            self.close_inbound(i);
        }
    }
}

/// Runs an engine until `stop` is set (a convenience for the CLI and tests).
pub fn serve<E: Engine>(
    cluster: &Cluster,
    replica: E,
    stop: Arc<AtomicBool>,
) -> io::Result<NetStats> {
    let mut node = ReplicaNode::bind(cluster, replica)?;
    node.run(&stop)?;
    Ok(node.net)
}
