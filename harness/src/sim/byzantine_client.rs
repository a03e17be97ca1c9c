//! Byzantine clients (`--byzantine-clients K`): the adversary on the client
//! side, in the harness and never in honest code. Each holds a real client
//! key, so what it sends is as authentic as the key makes it, and attacks
//! in turns drawn from the seed:
//!
//! - MAC entries good at a chosen subset only (often one replica: the
//!   leader, or one follower), sent to every replica or to that subset;
//! - replays of requests it sent before;
//! - two requests under one sequence number, each to half the replicas;
//! - floods: bursts of valid requests, more than a replica holds per client;
//! - a signed request sent to one replica only.
//!
//! Every request it makes is registered with the checker as submitted (a
//! Byzantine client may have anything it signed executed, but nothing it
//! did not make); what it gets back is ignored.

use bft_core::crypto::{Crypto, Peer};
use bft_core::message::{ClientId, Message, ReplicaId, Replier, Request, RequestAuth};
use bft_core::rng::Rng;
use bft_core::time::{Span, Time};
use bft_core::wire;

/// Requests kept for replays.
const HISTORY_MAX: usize = 32;
/// Requests in one flood.
const FLOOD: u64 = 24;

pub struct ByzantineClient {
    pub id: ClientId,
    n: usize,
    crypto: Box<dyn Crypto + Send>,
    rng: Rng,
    seq: u64,
    history: Vec<Request>,
    pub next: Time,
    period: Span,
}

/// What one turn sends: (replica, frame) pairs, and the sequence numbers
/// it made.
pub struct Turn {
    pub sends: Vec<(ReplicaId, Vec<u8>)>,
    pub made: Vec<u64>,
}

impl ByzantineClient {
    pub fn new(id: ClientId, n: usize, crypto: Box<dyn Crypto + Send>, seed: u64) -> Self {
        let mut rng = Rng::new(seed ^ id.rotate_left(17) ^ 0xB12A_C11E);
        let period = Span::from_millis(rng.range(2, 40));
        ByzantineClient {
            id,
            n,
            crypto,
            next: Time(period.0 / 2),
            rng,
            seq: 0,
            history: Vec::new(),
            period,
        }
    }

    fn request(&mut self, op: Vec<u8>, good_at: &[ReplicaId]) -> Request {
        let replier = Replier::One(self.rng.below(self.n as u64) as ReplicaId);
        let bytes = Request::auth_bytes(self.id, self.seq, replier, &op);
        let macs = (0..self.n as ReplicaId)
            .map(|r| {
                let mut m = self.crypto.mac(Peer::Replica(r), &bytes);
                if !good_at.contains(&r) {
                    m[0] ^= 0x5a;
                }
                m
            })
            .collect();
        let req = Request {
            client: self.id,
            seq: self.seq,
            replier,
            op,
            auth: RequestAuth::Macs(macs),
        };
        if self.history.len() >= HISTORY_MAX {
            self.history.remove(0);
        }
        self.history.push(req.clone());
        req
    }

    fn op(&mut self) -> Vec<u8> {
        let mut op = self.id.to_le_bytes().to_vec();
        op.extend_from_slice(&self.rng.next_u64().to_le_bytes());
        op
    }

    fn frame(&self, req: &Request) -> Vec<u8> {
        wire::encode_body(Peer::Client(self.id), &Message::Request(req.clone()))
    }

    fn some_replicas(&mut self) -> Vec<ReplicaId> {
        if self.rng.chance(0.6) {
            return vec![self.rng.below(self.n as u64) as ReplicaId];
        }
        let s: Vec<ReplicaId> = (0..self.n as ReplicaId)
            .filter(|_| self.rng.chance(0.5))
            .collect();
        if s.is_empty() {
            vec![0]
        } else {
            s
        }
    }

    /// The attack of this turn; the next is due one period on.
    pub fn turn(&mut self, now: Time) -> Turn {
        self.next = now + self.period;
        let all: Vec<ReplicaId> = (0..self.n as ReplicaId).collect();
        let mut t = Turn {
            sends: Vec::new(),
            made: Vec::new(),
        };
        match self.rng.below(5) {
            0 => {
                self.seq += 1;
                let good = self.some_replicas();
                let op = self.op();
                let req = self.request(op, &good);
                let to = if self.rng.chance(0.5) { all } else { good };
                t.made.push(self.seq);
                t.sends
                    .extend(to.into_iter().map(|r| (r, self.frame(&req))));
            }
            1 if !self.history.is_empty() => {
                let i = self.rng.below(self.history.len() as u64) as usize;
                let f = self.frame(&self.history[i]);
                t.sends.extend(all.into_iter().map(|r| (r, f.clone())));
            }
            2 => {
                self.seq += 1;
                let (a, b) = (self.op(), self.op());
                let (a, b) = (self.request(a, &all), self.request(b, &all));
                t.made.push(self.seq);
                for r in all {
                    let req = if r % 2 == 0 { &a } else { &b };
                    t.sends.push((r, self.frame(req)));
                }
            }
            3 => {
                for _ in 0..FLOOD {
                    self.seq += 1;
                    let op = self.op();
                    let req = self.request(op, &all);
                    t.made.push(self.seq);
                    t.sends.extend(all.iter().map(|r| (*r, self.frame(&req))));
                }
            }
            _ => {
                self.seq += 1;
                let op = self.op();
                let mut req = self.request(op, &[]);
                req.auth = RequestAuth::Signature(self.crypto.sign(&req.signed_bytes()));
                let to = self.rng.below(self.n as u64) as ReplicaId;
                t.made.push(self.seq);
                t.sends.push((to, self.frame(&req)));
            }
        }
        t
    }
}
