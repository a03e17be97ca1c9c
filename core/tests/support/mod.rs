//! A tiny synchronous cluster for core tests: frames are routed FIFO with no
//! faults, and time moves only when a test says so.
#![allow(dead_code)]

pub mod gen;

use bft_core::app::ChainApp;
use bft_core::client::{Client, ClientAuth, ClientOutput};
use bft_core::config::Config;
use bft_core::crypto::{Crypto, Peer, SimCrypto};
use bft_core::message::*;
use bft_core::replica::{Output, Replica};
use bft_core::time::{Span, Time};
use bft_core::wire;
use std::collections::VecDeque;

pub const MASTER: [u8; 32] = [42; 32];

pub fn crypto(me: Peer, n: usize) -> SimCrypto {
    SimCrypto::new(me, MASTER, n)
}

pub fn config(n: usize, me: ReplicaId) -> Config {
    let mut c = Config::new(n, me);
    c.checkpoint_interval = 4;
    c.pipeline = 2;
    c.batch_max_requests = 8;
    c.request_timeout = Span::from_millis(100);
    c.view_change_timeout = Span::from_millis(100);
    c.state_transfer_timeout = Span::from_millis(100);
    c
}

pub fn replica(cfg: Config) -> Replica {
    let n = cfg.n;
    let me = cfg.me;
    Replica::new(
        cfg,
        Box::new(crypto(Peer::Replica(me), n)),
        Box::new(ChainApp::default()),
        7,
    )
    .expect("valid config")
}

/// A replica restarted without its state (`Replica::amnesiac`), as run `incarnation`.
pub fn amnesiac(cfg: Config, seed: u64, now: Time, incarnation: u64) -> Replica {
    let (n, me) = (cfg.n, cfg.me);
    Replica::amnesiac(
        cfg,
        Box::new(crypto(Peer::Replica(me), n)),
        Box::new(ChainApp::default()),
        seed,
        now,
        incarnation,
    )
    .expect("valid config")
}

/// A frame from replica `from` to `to`, authenticated with `from`'s keys.
pub fn frame(from: ReplicaId, to: Peer, msg: &Message, n: usize) -> Vec<u8> {
    wire::encode_frame(
        Peer::Replica(from),
        to,
        msg,
        &crypto(Peer::Replica(from), n),
    )
}

pub fn request(client: ClientId, seq: u64, op: &[u8], n: usize) -> Request {
    request_for(client, seq, op, n, Replier::All)
}

/// A request whose full result only `replier` returns.
pub fn request_for(client: ClientId, seq: u64, op: &[u8], n: usize, replier: Replier) -> Request {
    let c = crypto(Peer::Client(client), n);
    let bytes = Request::auth_bytes(client, seq, replier, op);
    Request {
        client,
        seq,
        replier,
        op: op.to_vec(),
        auth: RequestAuth::Macs(
            (0..n as ReplicaId)
                .map(|r| c.mac(Peer::Replica(r), &bytes))
                .collect(),
        ),
    }
}

/// `req` as its client retransmits it: signed (`Client` signs the slow path).
pub fn signed(req: &Request, n: usize) -> Request {
    let c = crypto(Peer::Client(req.client), n);
    Request {
        auth: RequestAuth::Signature(c.sign(&req.signed_bytes())),
        ..req.clone()
    }
}

pub fn client_frame(req: &Request) -> Vec<u8> {
    wire::encode_body(Peer::Client(req.client), &Message::Request(req.clone()))
}

#[derive(Debug, Clone)]
pub struct Delivered {
    pub replica: ReplicaId,
    pub instance: Instance,
    pub digest: [u8; 32],
    pub executed: Vec<(ClientId, u64)>,
}

pub struct Cluster {
    pub n: usize,
    pub now: Time,
    pub replicas: Vec<Option<Replica>>,
    pub net: VecDeque<(ReplicaId, Vec<u8>)>,
    pub to_clients: Vec<(ClientId, Vec<u8>)>,
    pub delivered: Vec<Delivered>,
    /// Replicas whose incoming frames are dropped (crashed or cut off).
    pub isolated: Vec<ReplicaId>,
    /// Frames of this kind to this replica are held back (in `held`).
    pub hold: Option<(ReplicaId, &'static str)>,
    pub held: Vec<(ReplicaId, Vec<u8>)>,
}

impl Cluster {
    pub fn new(n: usize) -> Cluster {
        Cluster::with(n, |_| {})
    }

    pub fn with(n: usize, tweak: impl Fn(&mut Config)) -> Cluster {
        let replicas = (0..n as ReplicaId)
            .map(|r| {
                let mut c = config(n, r);
                tweak(&mut c);
                Some(replica(c))
            })
            .collect();
        Cluster {
            n,
            now: Time(1),
            replicas,
            net: VecDeque::new(),
            to_clients: Vec::new(),
            delivered: Vec::new(),
            isolated: Vec::new(),
            hold: None,
            held: Vec::new(),
        }
    }

    pub fn get(&self, r: ReplicaId) -> &Replica {
        self.replicas[r as usize].as_ref().expect("replica is up")
    }

    pub fn collect(&mut self, r: ReplicaId) {
        let Some(rep) = self.replicas[r as usize].as_mut() else {
            return;
        };
        while let Some(out) = rep.poll_output() {
            match out {
                Output::Send {
                    to: Peer::Replica(t),
                    frame,
                } => self.net.push_back((t, frame)),
                Output::Send {
                    to: Peer::Client(c),
                    frame,
                } => self.to_clients.push((c, frame)),
                Output::Deliver {
                    instance,
                    digest,
                    executed,
                } => self.delivered.push(Delivered {
                    replica: r,
                    instance,
                    digest,
                    executed,
                }),
                Output::Checkpoint { .. } => {}
            }
        }
    }

    /// Delivers a frame to one replica and collects what it produced.
    pub fn inject(&mut self, to: ReplicaId, frame: &[u8]) {
        if let Some(rep) = self.replicas[to as usize].as_mut() {
            rep.handle_message(self.now, frame);
        }
        self.collect(to);
    }

    /// Routes frames until the network is quiet (bounded).
    pub fn settle(&mut self) {
        for _ in 0..1_000_000 {
            let Some((to, frame)) = self.net.pop_front() else {
                return;
            };
            let kind = wire::peek(&frame, self.n).map(|(_, m)| m.kind());
            if self.hold.is_some_and(|(r, k)| r == to && kind == Ok(k)) {
                self.held.push((to, frame));
            } else if !self.isolated.contains(&to) {
                self.inject(to, &frame);
            }
        }
        panic!("cluster did not settle");
    }

    /// Frames of one kind waiting in the network.
    pub fn queued(&self, kind: &str) -> usize {
        self.net
            .iter()
            .filter(|(_, f)| wire::peek(f, self.n).is_ok_and(|(_, m)| m.kind() == kind))
            .count()
    }

    /// Hands a client request to every replica without routing anything.
    pub fn offer(&mut self, req: &Request) {
        let f = client_frame(req);
        for r in 0..self.n as ReplicaId {
            if !self.isolated.contains(&r) {
                self.inject(r, &f);
            }
        }
    }

    /// Sends a client request to every replica and settles.
    pub fn submit(&mut self, req: &Request) {
        let f = client_frame(req);
        for r in 0..self.n as ReplicaId {
            if !self.isolated.contains(&r) {
                self.inject(r, &f);
            }
        }
        self.settle();
    }

    /// Advances time to `t`, firing every due timer, and settles.
    pub fn advance(&mut self, by: Span) {
        let end = self.now + by;
        loop {
            let next = self
                .replicas
                .iter()
                .flatten()
                .filter_map(|r| r.poll_timeout())
                .filter(|t| *t <= end)
                .min();
            let Some(t) = next else { break };
            self.now = t.max(self.now);
            for r in 0..self.n as ReplicaId {
                if let Some(rep) = self.replicas[r as usize].as_mut() {
                    if rep.poll_timeout().is_some_and(|x| x <= self.now) {
                        rep.handle_timeout(self.now);
                    }
                }
                self.collect(r);
            }
            self.settle();
        }
        self.now = end;
    }

    pub fn executed_count(&self, r: ReplicaId) -> u64 {
        self.get(r).stats().requests_executed
    }
}

/// A client driven through the cluster, for end-to-end checks of f+1 replies.
pub fn client(id: ClientId, n: usize) -> Client {
    Client::new(
        id,
        n,
        Box::new(crypto(Peer::Client(id), n)),
        ClientAuth::Macs,
        Span::from_millis(200),
    )
}

pub fn client_frames(c: &mut Client) -> Vec<(ReplicaId, Vec<u8>)> {
    let mut v = Vec::new();
    while let Some(o) = c.poll_output() {
        if let ClientOutput::Send { to, frame } = o {
            v.push((to, frame));
        }
    }
    v
}
