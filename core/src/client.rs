//! A sans-IO BFT client: sends each request to every replica and accepts a
//! result once f+1 replicas returned the same reply (at least one is correct).
//! One request is outstanding at a time, as in BFT-SMaRt and YCSB's closed loop.

use crate::crypto::{Crypto, Peer};
use crate::message::*;
use crate::time::{Span, Time};
use crate::wire;
use std::collections::{BTreeMap, VecDeque};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// A MAC per replica (cheap; a Byzantine client can at worst force a leader change).
    Macs,
    /// An ed25519 signature (every replica applies the same check).
    Signature,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOutput {
    Send {
        to: ReplicaId,
        frame: Vec<u8>,
    },
    Complete {
        seq: u64,
        result: Vec<u8>,
        latency: Span,
    },
}

struct Outstanding {
    seq: u64,
    body: Vec<u8>,
    sent_at: Time,
    replies: BTreeMap<ReplicaId, Vec<u8>>,
}

pub struct Client {
    id: ClientId,
    n: usize,
    f: usize,
    crypto: Box<dyn Crypto + Send>,
    auth: ClientAuth,
    seq: u64,
    outstanding: Option<Outstanding>,
    retransmit: Span,
    retries: u32,
    deadline: Option<Time>,
    outputs: VecDeque<ClientOutput>,
    pub dropped_frames: u64,
}

impl Client {
    pub fn new(
        id: ClientId,
        n: usize,
        crypto: Box<dyn Crypto + Send>,
        auth: ClientAuth,
        retransmit: Span,
    ) -> Client {
        Client {
            id,
            n,
            f: (n - 1) / 3,
            crypto,
            auth,
            seq: 0,
            outstanding: None,
            retransmit,
            retries: 0,
            deadline: None,
            outputs: VecDeque::new(),
            dropped_frames: 0,
        }
    }

    /// For the crash-fault baselines (Raft, bare), where only the leader
    /// replies: the first authenticated reply decides (f = 0), whatever n is.
    pub fn trusting_one_reply(mut self) -> Client {
        self.f = 0;
        self
    }

    pub fn id(&self) -> ClientId {
        self.id
    }

    /// Continues numbering after `last_seq`. A client process that restarts
    /// under the same id must use numbers above any it used before (replicas
    /// treat lower ones as old); hosts pass e.g. the wall-clock time in µs.
    pub fn with_last_seq(mut self, last_seq: u64) -> Client {
        assert!(self.outstanding.is_none());
        self.seq = last_seq;
        self
    }

    pub fn is_idle(&self) -> bool {
        self.outstanding.is_none()
    }

    /// Starts a request; returns its sequence number. Panics if one is outstanding.
    pub fn submit(&mut self, now: Time, op: Vec<u8>) -> u64 {
        assert!(self.outstanding.is_none(), "one request at a time");
        self.seq += 1;
        let bytes = Request::auth_bytes(self.id, self.seq, &op);
        let auth = match self.auth {
            ClientAuth::Macs => RequestAuth::Macs(
                (0..self.n as ReplicaId)
                    .map(|r| self.crypto.mac(Peer::Replica(r), &bytes))
                    .collect(),
            ),
            ClientAuth::Signature => RequestAuth::Signature(self.crypto.sign(&bytes)),
        };
        let req = Request {
            client: self.id,
            seq: self.seq,
            op,
            auth,
        };
        let body = wire::encode_body(Peer::Client(self.id), &Message::Request(req));
        self.outstanding = Some(Outstanding {
            seq: self.seq,
            body,
            sent_at: now,
            replies: BTreeMap::new(),
        });
        self.retries = 0;
        self.transmit(now);
        self.seq
    }

    fn transmit(&mut self, now: Time) {
        let Some(o) = &self.outstanding else { return };
        for r in 0..self.n as ReplicaId {
            self.outputs.push_back(ClientOutput::Send {
                to: r,
                frame: o.body.clone(),
            });
        }
        self.deadline = Some(now + self.retransmit.backoff(self.retries.min(4)));
    }

    pub fn handle_message(&mut self, now: Time, frame: &[u8]) {
        let Ok((Peer::Replica(from), Message::Reply(reply))) =
            wire::open(frame, self.n, self.crypto.as_ref())
        else {
            self.dropped_frames += 1;
            return;
        };
        let Some(o) = &mut self.outstanding else {
            return;
        };
        if reply.client != self.id || reply.seq != o.seq {
            return;
        }
        o.replies.insert(from, reply.result.clone());
        let matching = o.replies.values().filter(|r| **r == reply.result).count();
        if matching > self.f {
            let latency = now - o.sent_at;
            self.outputs.push_back(ClientOutput::Complete {
                seq: o.seq,
                result: reply.result,
                latency,
            });
            self.outstanding = None;
            self.deadline = None;
        }
    }

    pub fn handle_timeout(&mut self, now: Time) {
        if self.deadline.is_some_and(|d| d <= now) {
            self.retries += 1;
            self.transmit(now);
        }
    }

    #[must_use]
    pub fn poll_output(&mut self) -> Option<ClientOutput> {
        self.outputs.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Time> {
        self.deadline
    }
}
