//! A sans-IO BFT client: sends each request to every replica and accepts a
//! result once f+1 replicas returned the same reply (at least one is correct).
//! One request is outstanding at a time, as in BFT-SMaRt and YCSB's closed loop.
//!
//! Only one replica, the request's `Replier`, returns the full result; the
//! others return its digest, which counts as a matching reply. If no full
//! result arrives in time, the client retransmits (replicas answer a
//! retransmission of an executed request in full) and chooses the next
//! replica for its later requests.

use crate::crypto::{hash, Crypto, Digest, Peer};
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
    replier: Replier,
    body: Vec<u8>,
    sent_at: Time,
    /// The digest each replica answered with (one entry per replica).
    digests: BTreeMap<ReplicaId, Digest>,
    /// Full results received, by digest (at most one per replica).
    results: BTreeMap<Digest, Vec<u8>>,
}

pub struct Client {
    id: ClientId,
    n: usize,
    f: usize,
    crypto: Box<dyn Crypto + Send>,
    auth: ClientAuth,
    /// Who returns full results; `None`: every replica does.
    replier: Option<ReplicaId>,
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
            replier: Some((id % n as u64) as ReplicaId),
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
        self.replier = None;
        self
    }

    /// Every replica returns the full result (no reply digests): costs more
    /// bytes, saves a retransmission when the chosen replica is slow or down.
    pub fn with_full_replies(mut self) -> Client {
        self.replier = None;
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
        let replier = self.replier.map_or(Replier::All, Replier::One);
        let bytes = Request::auth_bytes(self.id, self.seq, replier, &op);
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
            replier,
            op,
            auth,
        };
        let body = wire::encode_body(Peer::Client(self.id), &Message::Request(req));
        self.outstanding = Some(Outstanding {
            seq: self.seq,
            replier,
            body,
            sent_at: now,
            digests: BTreeMap::new(),
            results: BTreeMap::new(),
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
        let (from, client, seq, digest, result) =
            match wire::open(frame, self.n, self.crypto.as_ref()) {
                Ok((Peer::Replica(from), Message::Reply(r))) => {
                    (from, r.client, r.seq, hash(&r.result), Some(r.result))
                }
                Ok((Peer::Replica(from), Message::ReplyDigest(r))) => {
                    (from, r.client, r.seq, r.digest, None)
                }
                _ => {
                    self.dropped_frames += 1;
                    return;
                }
            };
        let Some(o) = &mut self.outstanding else {
            return;
        };
        if client != self.id || seq != o.seq {
            return;
        }
        // A replica's latest answer replaces its earlier one, so a Byzantine
        // replica counts once and the maps hold at most n entries each.
        o.digests.insert(from, digest);
        if let Some(result) = result {
            o.results.entry(digest).or_insert(result);
        }
        let matching = o.digests.values().filter(|d| **d == digest).count();
        if matching <= self.f {
            return;
        }
        // f+1 replicas vouch for `digest`; complete once its full result is here.
        let Some(result) = o.results.remove(&digest) else {
            return;
        };
        let latency = now - o.sent_at;
        self.outputs.push_back(ClientOutput::Complete {
            seq: o.seq,
            result,
            latency,
        });
        self.outstanding = None;
        self.deadline = None;
    }

    pub fn handle_timeout(&mut self, now: Time) {
        if self.deadline.is_some_and(|d| d <= now) {
            self.retries += 1;
            self.choose_another_replier();
            self.transmit(now);
        }
    }

    /// No full result that f+1 replicas vouch for arrived in time: the chosen
    /// replica may be down or lying, so later requests choose the next one
    /// (if the whole cluster was slow instead, the move costs nothing). The
    /// outstanding request keeps its choice (it is authenticated and may be
    /// ordered already); replicas answer its retransmission in full once
    /// they executed it.
    fn choose_another_replier(&mut self) {
        let Some(o) = &self.outstanding else { return };
        if let (Replier::One(chosen), Some(current)) = (o.replier, self.replier) {
            if chosen == current {
                self.replier = Some((chosen + 1) % self.n as ReplicaId);
            }
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
