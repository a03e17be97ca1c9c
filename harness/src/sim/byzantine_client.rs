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
//! - a signed request sent to one replica only;
//! - MAC entries good at the current leader only (it knows the leader: the
//!   adversary sees everything), to stall its regency;
//! - MACs good at one follower only, then just before two request timeouts
//!   a signed copy to that follower, to leave the leader no time;
//! - one variant per follower under one number, each good there only.
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
    request_timeout: Span,
    /// Signed copies due later: (when, to, request).
    late: Vec<(Time, ReplicaId, Request)>,
}

/// What one turn sends: (replica, frame) pairs, and the sequence numbers
/// it made.
pub struct Turn {
    pub sends: Vec<(ReplicaId, Vec<u8>)>,
    pub made: Vec<u64>,
}

impl ByzantineClient {
    pub fn new(
        id: ClientId,
        n: usize,
        crypto: Box<dyn Crypto + Send>,
        seed: u64,
        request_timeout: Span,
    ) -> Self {
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
            request_timeout,
            late: Vec::new(),
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

    /// When this client acts next: its period, or a late signed copy.
    pub fn due(&self) -> Time {
        self.late.iter().map(|l| l.0).fold(self.next, Time::min)
    }

    fn sign(&self, req: &Request) -> Request {
        let mut req = req.clone();
        req.auth = RequestAuth::Signature(self.crypto.sign(&req.signed_bytes()));
        req
    }

    /// The attack of this turn (`leader` leads the highest regency of the
    /// correct replicas); the next is due one period on.
    pub fn turn(&mut self, now: Time, leader: ReplicaId) -> Turn {
        let mut t = Turn {
            sends: Vec::new(),
            made: Vec::new(),
        };
        let due: Vec<_> = self.late.iter().filter(|l| l.0 <= now).cloned().collect();
        self.late.retain(|l| l.0 > now);
        for (_, to, req) in due {
            let signed = self.sign(&req);
            t.sends.push((to, self.frame(&signed)));
        }
        if now < self.next {
            return t;
        }
        self.next = now + self.period;
        let all: Vec<ReplicaId> = (0..self.n as ReplicaId).collect();
        match self.rng.below(8) {
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
            4 => {
                self.seq += 1;
                let op = self.op();
                let req = self.request(op, &[]);
                let req = self.sign(&req);
                let to = self.rng.below(self.n as u64) as ReplicaId;
                t.made.push(self.seq);
                t.sends.push((to, self.frame(&req)));
            }
            5 => {
                self.seq += 1;
                let op = self.op();
                let req = self.request(op, &[leader]);
                t.made.push(self.seq);
                t.sends.extend(all.iter().map(|r| (*r, self.frame(&req))));
            }
            6 => {
                self.seq += 1;
                let follower = (leader + 1 + self.rng.below(self.n as u64 - 1) as ReplicaId)
                    % self.n as ReplicaId;
                let op = self.op();
                let req = self.request(op, &[follower]);
                t.made.push(self.seq);
                t.sends.extend(all.iter().map(|r| (*r, self.frame(&req))));
                let just_before = Span(2 * self.request_timeout.0 - self.request_timeout.0 / 20);
                self.late.push((now + just_before, follower, req));
            }
            _ => {
                self.seq += 1;
                t.made.push(self.seq);
                for r in all {
                    let op = self.op();
                    let req = self.request(op, &[r]);
                    t.sends.push((r, self.frame(&req)));
                }
            }
        }
        t
    }
}
