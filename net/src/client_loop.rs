//! The load generator: many logical YCSB clients multiplexed over one
//! connection per replica, each a sans-IO BFT client (send to all replicas,
//! accept f+1 matching replies), closed loop, HDR histograms per operation.

use crate::cluster::{Cluster, ClusterError};
use crate::frame::{Fill, FrameReader, FrameWriter};
use bft_core::client::{Client, ClientAuth, ClientOutput};
use bft_core::crypto::Peer;
use bft_core::message::ClientId;
use bft_core::time::{Span, Time};
use bft_core::wire;
use bft_workloads::Workload;
use ed25519_dalek::SigningKey;
use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::collections::{BTreeMap, VecDeque};
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
    #[error("target {0} ops/s is outside {TARGET_MIN}..={TARGET_MAX}")]
    Target(f64),
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
    /// Open loop at this many operations per second (run phase); None: closed loop.
    pub target: Option<f64>,
    /// BFT: every replica returns the full result (else one does, the others
    /// its digest).
    pub full_replies: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            auth: ClientAuth::Macs,
            retransmit: Duration::from_millis(500),
            stall_timeout: Duration::from_secs(10),
            target: None,
            full_replies: false,
        }
    }
}

#[derive(Debug)]
pub struct LoadReport {
    pub elapsed: Duration,
    pub ops: u64,
    /// Latency from the actual send.
    pub per_op: BTreeMap<&'static str, Histogram<u64>>,
    pub all: Histogram<u64>,
    /// Latency from the intended start (open loop; equal to actual in closed loop).
    pub per_op_intended: BTreeMap<&'static str, Histogram<u64>>,
    pub all_intended: Histogram<u64>,
    /// Scheduled operations the generator could not even queue (backlog full).
    pub behind: u64,
    /// Scheduled operations still waiting for a client at the end.
    pub backlog_left: u64,
    /// Throughput and latency per `SERIES_INTERVAL` over the whole run phase,
    /// warm-up included (empty for the load phase).
    pub series: Vec<IntervalSample>,
}

/// Width of one time-series sample.
pub const SERIES_INTERVAL: Duration = Duration::from_millis(250);
/// Samples kept at most (a day at `SERIES_INTERVAL`); later ones are dropped.
pub const SERIES_SAMPLES_MAX: usize = 4 * 86_400;

/// One interval of the time series: operations completed in it and their
/// latency from the actual send, in µs (zeros when none completed).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct IntervalSample {
    /// End of the interval, seconds from the start of the run phase.
    pub t_s: f64,
    /// Whether the interval lies in the measured part (after warm-up).
    pub measured: bool,
    pub ops: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

/// Rolls completions into fixed intervals.
struct Series {
    started: Instant,
    measure_from: Instant,
    window_end: Instant,
    window: Histogram<u64>,
    samples: Vec<IntervalSample>,
}

impl Series {
    fn new(started: Instant, measure_from: Instant) -> Series {
        Series {
            started,
            measure_from,
            window_end: started + SERIES_INTERVAL,
            window: histogram(),
            samples: Vec::new(),
        }
    }

    /// Closes every interval that ended by `now`.
    fn advance(&mut self, now: Instant) {
        while now >= self.window_end {
            let h = &self.window;
            let sample = IntervalSample {
                t_s: (self.window_end - self.started).as_secs_f64(),
                measured: self.window_end > self.measure_from,
                ops: h.len(),
                mean_us: if h.is_empty() { 0.0 } else { h.mean() },
                p50_us: if h.is_empty() {
                    0
                } else {
                    h.value_at_quantile(0.5)
                },
                p99_us: if h.is_empty() {
                    0
                } else {
                    h.value_at_quantile(0.99)
                },
                max_us: if h.is_empty() { 0 } else { h.max() },
            };
            if self.samples.len() < SERIES_SAMPLES_MAX {
                self.samples.push(sample);
            }
            self.window.reset();
            self.window_end += SERIES_INTERVAL;
        }
    }

    fn record(&mut self, latency_us: u64, now: Instant) {
        self.advance(now);
        self.window.saturating_record(latency_us);
    }
}

impl LoadReport {
    fn new() -> LoadReport {
        LoadReport {
            elapsed: Duration::ZERO,
            ops: 0,
            per_op: BTreeMap::new(),
            all: histogram(),
            per_op_intended: BTreeMap::new(),
            all_intended: histogram(),
            behind: 0,
            backlog_left: 0,
            series: Vec::new(),
        }
    }

    fn record(&mut self, c: &Completed, now: Instant) {
        let actual = c.latency_us();
        let intended = (now.saturating_duration_since(c.intended).as_micros() as u64)
            .clamp(actual, LATENCY_US_MAX);
        self.per_op
            .entry(c.name)
            .or_insert_with(histogram)
            .saturating_record(actual);
        self.all.saturating_record(actual);
        self.per_op_intended
            .entry(c.name)
            .or_insert_with(histogram)
            .saturating_record(intended);
        self.all_intended.saturating_record(intended);
        self.ops += 1;
    }
    pub fn throughput(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// An empty latency histogram (µs, 3 significant digits), as every report uses.
pub fn histogram() -> Histogram<u64> {
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

/// Open-loop rates accepted (operations per second).
pub const TARGET_MIN: f64 = 0.01;
pub const TARGET_MAX: f64 = 10_000_000.0;

/// Scheduled operations waiting for an idle client, at most (open loop).
pub const BACKLOG_MAX: usize = 1 << 20;

/// How often a lost replica connection is retried.
const RECONNECT_EVERY: Duration = Duration::from_millis(300);

/// An operation in flight on one logical client.
#[derive(Debug)]
struct Pending {
    name: &'static str,
    insert: Option<u64>,
    /// When it was meant to start (open loop: its scheduled time).
    intended: Instant,
}

/// A completed operation.
#[derive(Debug)]
pub struct Completed {
    pub name: &'static str,
    pub insert: Option<u64>,
    pub intended: Instant,
    /// From the actual send to the f+1-th matching reply.
    pub latency: Span,
}

impl Completed {
    /// Latency from the actual send, in µs, within the histograms' range.
    fn latency_us(&self) -> u64 {
        (self.latency.0 / 1000).clamp(1, LATENCY_US_MAX)
    }
}

struct Logical {
    client: Client,
    op: Option<Pending>,
}

pub struct LoadGenerator {
    poll: Poll,
    conns: Vec<Conn>,
    clients: Vec<Logical>,
    first_id: ClientId,
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
            // Only BFT replicas all reply; a Raft leader or the bare server replies alone.
            let client = match cluster.file.protocol.as_str() {
                "bft" if opts.full_replies => client.with_full_replies(),
                "bft" => client,
                _ => client.trusting_one_reply(),
            };
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
            epoch: Instant::now(),
        })
    }

    fn now(&self) -> Time {
        Time(self.epoch.elapsed().as_nanos() as u64)
    }

    /// Drives `phase` to its end; the histograms hold latencies in microseconds.
    ///
    /// Closed loop (no `target`): every logical client always has one request
    /// out. Open loop (`target` ops/s, run phase): operation k is due at
    /// start + k/target; one that finds no idle client waits in a backlog, and
    /// its *intended* latency counts that wait (no coordinated omission).
    pub fn run(
        &mut self,
        workload: &mut Workload,
        phase: Phase,
        opts: &LoadOptions,
        stop: &AtomicBool,
    ) -> Result<LoadReport, LoadError> {
        self.run_marked(workload, phase, opts, stop, &mut || {})
    }

    /// [`LoadGenerator::run`], calling `at_measure` once when the measured
    /// interval begins (after warm-up), so that a caller can sample what the
    /// processes have used at that instant.
    pub fn run_marked(
        &mut self,
        workload: &mut Workload,
        phase: Phase,
        opts: &LoadOptions,
        stop: &AtomicBool,
        at_measure: &mut dyn FnMut(),
    ) -> Result<LoadReport, LoadError> {
        let started = Instant::now();
        let mut marked = false;
        let (measure_from, end) = match phase {
            Phase::Load => (started, None),
            Phase::Run { duration, warmup } => {
                (started + warmup, Some(started + warmup + duration))
            }
        };
        let open = match phase {
            Phase::Run { .. } => opts.target,
            Phase::Load => None,
        };
        if let Some(t) = open {
            if !(TARGET_MIN..=TARGET_MAX).contains(&t) {
                return Err(LoadError::Target(t));
            }
        }
        let interval = open.map(|t| Duration::from_secs_f64(1.0 / t));
        let mut next_due = started;
        let mut backlog: VecDeque<Instant> = VecDeque::new();
        let mut report = LoadReport::new();
        let mut series =
            matches!(phase, Phase::Run { .. }).then(|| Series::new(started, measure_from));
        let mut last_progress = Instant::now();
        let mut done = 0u64;
        let mut exhausted = false;
        let mut events = Events::with_capacity(256);
        let mut last_reconnect = Instant::now();
        if open.is_none() {
            for i in 0..self.clients.len() {
                // A request left in flight by an earlier phase still completes here.
                if self.clients[i].op.is_none() && !exhausted {
                    exhausted |= !self.submit(i, workload, phase, None);
                }
            }
        }
        loop {
            let mut now_i = Instant::now();
            if !marked && now_i >= measure_from {
                marked = true;
                at_measure();
                now_i = Instant::now();
            }
            let running = end.is_none_or(|e| now_i < e) && !stop.load(Ordering::Relaxed);
            let idle = self.clients.iter().all(|c| c.op.is_none());
            if !running && (end.is_some() || idle) || (exhausted && idle) {
                break;
            }
            if idle {
                last_progress = now_i; // nothing asked, nothing owed
            }
            if now_i - last_progress > opts.stall_timeout && !idle {
                return Err(LoadError::Stalled(opts.stall_timeout, done));
            }
            if let (Some(iv), true) = (interval, running) {
                while next_due <= now_i {
                    if backlog.len() < BACKLOG_MAX {
                        backlog.push_back(next_due);
                    } else {
                        report.behind += 1; // the generator itself cannot keep up
                    }
                    next_due += iv;
                }
                self.start_backlog(&mut backlog, workload, phase);
            }
            self.flush()?;
            let wait = match interval {
                Some(_) if running => next_due
                    .saturating_duration_since(Instant::now())
                    .min(POLL_MAX),
                _ => POLL_MAX,
            };
            if let Err(e) = self.poll.poll(&mut events, Some(wait)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e.into());
                }
            }
            let ready: Vec<usize> = events
                .iter()
                .filter(|e| e.is_readable())
                .map(|e| e.token().0)
                .collect();
            for r in ready {
                for (i, done_op) in self.read_replies(r)? {
                    last_progress = Instant::now();
                    done += 1;
                    if let Some(k) = done_op.insert {
                        let _ = workload.ack_insert(k);
                    }
                    if last_progress >= measure_from && end.is_none_or(|e| last_progress < e) {
                        report.record(&done_op, last_progress);
                    }
                    if let Some(s) = series.as_mut().filter(|_| running) {
                        s.record(done_op.latency_us(), last_progress);
                    }
                    if running && !exhausted && open.is_none() {
                        exhausted |= !self.submit(i, workload, phase, None);
                    }
                }
            }
            if open.is_some() && running {
                self.start_backlog(&mut backlog, workload, phase);
            }
            self.fire_timers();
            if last_reconnect.elapsed() >= RECONNECT_EVERY {
                last_reconnect = Instant::now();
                self.reconnect_dead();
            }
        }
        let measured_end = end.map_or(Instant::now(), |e| e.min(Instant::now()));
        report.elapsed = measured_end.saturating_duration_since(measure_from);
        if let Some(mut s) = series {
            s.advance(measured_end);
            report.series = s.samples;
        }
        report.backlog_left = backlog.len() as u64;
        Ok(report)
    }

    /// Hands scheduled operations to idle logical clients.
    fn start_backlog(
        &mut self,
        backlog: &mut VecDeque<Instant>,
        workload: &mut Workload,
        phase: Phase,
    ) {
        for i in 0..self.clients.len() {
            if backlog.is_empty() {
                return;
            }
            if self.clients[i].op.is_none() {
                let intended = backlog.pop_front();
                self.submit(i, workload, phase, intended);
            }
        }
    }

    /// Starts the next operation on logical client `i`; false when the phase has no more.
    fn submit(
        &mut self,
        i: usize,
        workload: &mut Workload,
        phase: Phase,
        intended: Option<Instant>,
    ) -> bool {
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
        c.op = Some(Pending {
            name: op.name(),
            insert,
            intended: intended.unwrap_or_else(Instant::now),
        });
        self.collect(i);
        true
    }

    fn collect(&mut self, i: usize) -> Vec<Completed> {
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
                    if let Some(p) = self.clients[i].op.take() {
                        completed.push(Completed {
                            name: p.name,
                            insert: p.insert,
                            intended: p.intended,
                            latency,
                        });
                    }
                }
            }
        }
        completed
    }

    fn read_replies(&mut self, r: usize) -> io::Result<Vec<(usize, Completed)>> {
        let conn = &mut self.conns[r];
        let mut frames = Vec::new();
        loop {
            let fill = conn.reader.fill(&mut conn.stream).unwrap_or(Fill::Closed);
            loop {
                match conn.reader.next_frame() {
                    Ok(Some(f)) => frames.push(f.to_vec()),
                    Ok(None) => break,
                    Err(_) => {
                        conn.dead = true; // an oversized frame: this replica is faulty
                        conn.reader = FrameReader::default();
                        return Ok(Vec::new());
                    }
                }
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
            let Some(client) = wire::reply_client(&f) else {
                continue;
            };
            let Some(i) = client.checked_sub(self.first_id).map(|i| i as usize) else {
                continue;
            };
            if i >= self.clients.len() {
                continue;
            }
            self.clients[i].client.handle_message(now, &f);
            for c in self.collect(i) {
                out.push((i, c));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_series_has_one_sample_per_interval_including_empty_ones() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut s = Series::new(t0, at(500));
        s.record(100, at(100));
        s.record(300, at(120));
        s.record(200, at(300));
        s.advance(at(1000));
        let ops: Vec<u64> = s.samples.iter().map(|x| x.ops).collect();
        assert_eq!(ops, vec![2, 1, 0, 0]);
        let measured: Vec<bool> = s.samples.iter().map(|x| x.measured).collect();
        assert_eq!(measured, vec![false, false, true, true]);
        assert_eq!(s.samples[0].max_us, 300);
        assert_eq!(s.samples[1].p50_us, 200);
        assert!((s.samples[3].t_s - 1.0).abs() < 1e-9);
    }
}
