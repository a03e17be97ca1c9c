//! The load generator: many logical YCSB clients multiplexed over one
//! connection per replica, each a sans-IO BFT client (send to all replicas,
//! accept f+1 matching replies), closed loop, HDR histograms per operation.

use crate::cluster::{Cluster, ClusterError};
use crate::frame::{Fill, FrameReader, FrameWriter};
use bft_core::client::{Client, ClientAuth, ClientOutput};
use bft_core::crypto::Peer;
use bft_core::message::{ClientId, Message};
use bft_core::time::{Span, Time};
use bft_core::wire;
use bft_workloads::Workload;
use ed25519_dalek::SigningKey;
use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Highest latency the histograms record (longer ones saturate here).
const LATENCY_US_MAX: u64 = 60_000_000;
const POLL_MAX: Duration = Duration::from_millis(20);

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("no operation completed for {0:?}: fewer than 2f+1 replicas seem to be up ({1} completed before)")]
    Stalled(Duration, u64),
    #[error("could not connect to replica {0} at {1} within {2:?}")]
    Connect(usize, std::net::SocketAddr, Duration),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Insert the workload's records.
    Load,
    /// Run operations for `duration` after `warmup`.
    Run {
        duration: Duration,
        warmup: Duration,
    },
}

#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub auth: ClientAuth,
    pub retransmit: Duration,
    /// Give up when nothing completes for this long.
    pub stall_timeout: Duration,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            auth: ClientAuth::Macs,
            retransmit: Duration::from_millis(500),
            stall_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug)]
pub struct LoadReport {
    pub elapsed: Duration,
    pub ops: u64,
    pub per_op: BTreeMap<&'static str, Histogram<u64>>,
    pub all: Histogram<u64>,
}

impl LoadReport {
    fn new() -> LoadReport {
        LoadReport {
            elapsed: Duration::ZERO,
            ops: 0,
            per_op: BTreeMap::new(),
            all: histogram(),
        }
    }
    pub fn throughput(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid histogram bounds")
}

struct Conn {
    stream: TcpStream,
    reader: FrameReader,
    out: FrameWriter,
    /// The replica went away; the others carry on (up to f may fail) and we
    /// try to reconnect now and then.
    dead: bool,
    addr: std::net::SocketAddr,
}

/// How often a lost replica connection is retried.
const RECONNECT_EVERY: Duration = Duration::from_millis(300);

struct Logical {
    client: Client,
    op: Option<(&'static str, Option<u64>)>,
}

pub struct LoadGenerator {
    poll: Poll,
    conns: Vec<Conn>,
    clients: Vec<Logical>,
    first_id: ClientId,
    n: usize,
    epoch: Instant,
}

fn connect(addr: std::net::SocketAddr, deadline: Instant) -> io::Result<std::net::TcpStream> {
    loop {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

impl LoadGenerator {
    /// Connects to every replica (waiting up to `connect_wait`) with one logical client per secret.
    pub fn connect(
        cluster: &Cluster,
        secrets: &[(ClientId, SigningKey)],
        opts: &LoadOptions,
        connect_wait: Duration,
    ) -> Result<LoadGenerator, LoadError> {
        let poll = Poll::new()?;
        let deadline = Instant::now() + connect_wait;
        let mut conns = Vec::new();
        for (r, addr) in cluster.addrs.iter().enumerate() {
            let s =
                connect(*addr, deadline).map_err(|_| LoadError::Connect(r, *addr, connect_wait))?;
            s.set_nodelay(true)?;
            s.set_nonblocking(true)?;
            let mut stream = TcpStream::from_std(s);
            poll.registry().register(
                &mut stream,
                Token(r),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            conns.push(Conn {
                stream,
                reader: FrameReader::default(),
                out: FrameWriter::default(),
                dead: false,
                addr: *addr,
            });
        }
        let retransmit = Span(opts.retransmit.as_nanos() as u64);
        // Sequence numbers above any an earlier process under these ids used.
        let seq_base = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let mut clients = Vec::new();
        for (id, sk) in secrets {
            let crypto = cluster.crypto(Peer::Client(*id), sk.clone())?;
            let client = Client::new(*id, cluster.n(), Box::new(crypto), opts.auth, retransmit);
            clients.push(Logical {
                client: client.with_last_seq(seq_base),
                op: None,
            });
        }
        Ok(LoadGenerator {
            poll,
            conns,
            first_id: secrets.first().map_or(0, |(id, _)| *id),
            clients,
            n: cluster.n(),
            epoch: Instant::now(),
        })
    }

    fn now(&self) -> Time {
        Time(self.epoch.elapsed().as_nanos() as u64)
    }

    /// Drives `phase` to its end; the histograms hold latencies in microseconds.
    pub fn run(
        &mut self,
        workload: &mut Workload,
        phase: Phase,
        opts: &LoadOptions,
        stop: &AtomicBool,
    ) -> Result<LoadReport, LoadError> {
        let started = Instant::now();
        let (measure_from, end) = match phase {
            Phase::Load => (started, None),
            Phase::Run { duration, warmup } => {
                (started + warmup, Some(started + warmup + duration))
            }
        };
        let mut report = LoadReport::new();
        let mut last_progress = Instant::now();
        let mut done = 0u64;
        let mut exhausted = false;
        let mut events = Events::with_capacity(256);
        let mut last_reconnect = Instant::now();
        for i in 0..self.clients.len() {
            // A request left in flight by an earlier phase still completes here.
            if self.clients[i].op.is_none() && !exhausted {
                exhausted |= !self.submit(i, workload, phase);
            }
        }
        loop {
            let now_i = Instant::now();
            let running = end.is_none_or(|e| now_i < e) && !stop.load(Ordering::Relaxed);
            let idle = self.clients.iter().all(|c| c.op.is_none());
            if !running && (end.is_some() || idle) || (exhausted && idle) {
                break;
            }
            if now_i - last_progress > opts.stall_timeout {
                return Err(LoadError::Stalled(opts.stall_timeout, done));
            }
            self.flush()?;
            self.poll.poll(&mut events, Some(POLL_MAX))?;
            let ready: Vec<usize> = events
                .iter()
                .filter(|e| e.is_readable())
                .map(|e| e.token().0)
                .collect();
            for r in ready {
                for (i, name, ins, latency) in self.read_replies(r)? {
                    last_progress = Instant::now();
                    done += 1;
                    if let Some(k) = ins {
                        let _ = workload.ack_insert(k);
                    }
                    if last_progress >= measure_from && end.is_none_or(|e| last_progress < e) {
                        let us = (latency.0 / 1000).clamp(1, LATENCY_US_MAX);
                        report
                            .per_op
                            .entry(name)
                            .or_insert_with(histogram)
                            .saturating_record(us);
                        report.all.saturating_record(us);
                        report.ops += 1;
                    }
                    if running && !exhausted {
                        exhausted |= !self.submit(i, workload, phase);
                    }
                }
            }
            self.fire_timers();
            if last_reconnect.elapsed() >= RECONNECT_EVERY {
                last_reconnect = Instant::now();
                self.reconnect_dead();
            }
        }
        let measured_end = end.map_or(Instant::now(), |e| e.min(Instant::now()));
        report.elapsed = measured_end.saturating_duration_since(measure_from);
        Ok(report)
    }

    /// Starts the next operation on logical client `i`; false when the phase has no more.
    fn submit(&mut self, i: usize, workload: &mut Workload, phase: Phase) -> bool {
        let (op, insert) = match phase {
            Phase::Load => match workload.load_op() {
                Some(op) => (op, None),
                None => return false,
            },
            Phase::Run { .. } => workload.run_op(),
        };
        let now = self.now();
        let c = &mut self.clients[i];
        c.client.submit(now, op.encode());
        c.op = Some((op.name(), insert));
        self.collect(i);
        true
    }

    fn collect(&mut self, i: usize) -> Vec<(&'static str, Option<u64>, Span)> {
        let mut completed = Vec::new();
        while let Some(out) = self.clients[i].client.poll_output() {
            match out {
                ClientOutput::Send { to, frame } => {
                    let c = &mut self.conns[to as usize];
                    if !c.dead {
                        c.out.push(&frame);
                    }
                }
                ClientOutput::Complete { latency, .. } => {
                    if let Some((name, ins)) = self.clients[i].op.take() {
                        completed.push((name, ins, latency));
                    }
                }
            }
        }
        completed
    }

    #[allow(clippy::type_complexity)]
    fn read_replies(
        &mut self,
        r: usize,
    ) -> io::Result<Vec<(usize, &'static str, Option<u64>, Span)>> {
        let conn = &mut self.conns[r];
        let mut frames = Vec::new();
        loop {
            let fill = conn.reader.fill(&mut conn.stream).unwrap_or(Fill::Closed);
            while let Ok(Some(f)) = conn.reader.next_frame() {
                frames.push(f.to_vec());
            }
            match fill {
                Fill::More => continue,
                Fill::Drained => break,
                Fill::Closed => {
                    conn.dead = true;
                    break;
                }
            }
        }
        let now = self.now();
        let mut out = Vec::new();
        for f in frames {
            let Ok((_, Message::Reply(rep))) = wire::peek(&f, self.n) else {
                continue;
            };
            let Some(i) = rep.client.checked_sub(self.first_id).map(|i| i as usize) else {
                continue;
            };
            if i >= self.clients.len() {
                continue;
            }
            self.clients[i].client.handle_message(now, &f);
            for (name, ins, lat) in self.collect(i) {
                out.push((i, name, ins, lat));
            }
        }
        Ok(out)
    }

    fn fire_timers(&mut self) {
        let now = self.now();
        for i in 0..self.clients.len() {
            if self.clients[i]
                .client
                .poll_timeout()
                .is_some_and(|t| t <= now)
            {
                self.clients[i].client.handle_timeout(now);
                self.collect(i);
            }
        }
    }

    fn reconnect_dead(&mut self) {
        for (r, c) in self.conns.iter_mut().enumerate() {
            if !c.dead {
                continue;
            }
            let Ok(s) = std::net::TcpStream::connect_timeout(&c.addr, Duration::from_millis(50))
            else {
                continue;
            };
            if s.set_nodelay(true).is_err() || s.set_nonblocking(true).is_err() {
                continue;
            }
            let _ = self.poll.registry().deregister(&mut c.stream);
            let mut stream = TcpStream::from_std(s);
            if self
                .poll
                .registry()
                .register(
                    &mut stream,
                    Token(r),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .is_ok()
            {
                c.stream = stream;
                c.reader = FrameReader::default();
                c.out.clear();
                c.dead = false;
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        for c in self.conns.iter_mut().filter(|c| !c.dead) {
            if !c.out.is_empty() && c.out.flush(&mut c.stream).is_err() {
                c.dead = true;
                c.out.clear();
            }
        }
        Ok(())
    }
}
