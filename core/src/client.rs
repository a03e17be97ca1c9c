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
    /// A MAC per replica, with retransmissions signed (a Byzantine client can
    /// at worst stall one regency before replicas strike it: `must_sign`).
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
        result: Result<Vec<u8>, ResultLost>,
        latency: Span,
    },
}

/// The request was executed, but 2f+1 replicas report its result evicted
/// from their client tables (`CLIENT_RESULTS_BYTES_MAX`) before this client
/// got it: it is known to have run, and what it returned is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResultLost;

struct Outstanding {
    seq: u64,
    replier: Replier,
    body: Vec<u8>,
    /// It has gone out with MACs only: its first retransmission is signed
    /// instead (see `sign_for_retransmission`).
    unsigned: bool,
    sent_at: Time,
    /// Each replica's latest answer: the result's digest, and the result
    /// itself if it sent it in full. A later answer replaces an earlier one,
    /// so a Byzantine replica counts once and this holds at most n entries.
    answers: BTreeMap<ReplicaId, (Digest, Option<Vec<u8>>)>,
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
    /// Replies naming another client or a request not (or no longer)
    /// outstanding, dropped unopened.
    pub late_replies: u64,
}

enum Answer {
    Full(Vec<u8>),
    Digest(Digest),
}

/// The full result f+1 replicas vouch for, once `from`'s answer gives it
/// f+1 votes and some replica has sent it in full; moved out (the request
/// completes), not copied.
fn take_vouched_result(
    answers: &mut BTreeMap<ReplicaId, (Digest, Option<Vec<u8>>)>,
    from: ReplicaId,
    f: usize,
) -> Option<Vec<u8>> {
    let digest = answers.get(&from)?.0;
    let votes = answers.values().filter(|(d, _)| *d == digest).count();
    if votes <= f {
        return None;
    }
    let holder = answers
        .iter()
        .find(|(_, (d, r))| *d == digest && r.is_some())
        .map(|(id, _)| *id)?;
    answers.remove(&holder).and_then(|(_, r)| r)
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
            late_replies: 0,
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
        let unsigned = matches!(req.auth, RequestAuth::Macs(_));
        let body = wire::encode_body(Peer::Client(self.id), &Message::Request(req));
        self.outstanding = Some(Outstanding {
            seq: self.seq,
            replier,
            body,
            unsigned,
            sent_at: now,
            answers: BTreeMap::new(),
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
        // Replies to a request no longer outstanding (the rest of the cluster
        // answering after f+1 vouched) cannot change anything: they are
        // dropped before their MAC is checked, half of a client's replies.
        let Some((client, seq)) = wire::reply_id(frame) else {
            self.dropped_frames += 1;
            return;
        };
        if client != self.id || self.outstanding.as_ref().is_none_or(|o| o.seq != seq) {
            self.late_replies += 1;
            return;
        }
        let (from, client, seq, answer) = match wire::open(frame, self.n, self.crypto.as_ref()) {
            Ok((Peer::Replica(from), Message::Reply(r))) => {
                (from, r.client, r.seq, Answer::Full(r.result))
            }
            Ok((Peer::Replica(from), Message::ReplyDigest(r))) => {
                (from, r.client, r.seq, Answer::Digest(r.digest))
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
        let result = match answer {
            // Trusting one reply (Raft, bare): no digest to compare, none computed.
            Answer::Full(result) if self.f == 0 => Some(result),
            Answer::Full(result) => {
                o.answers.insert(from, (hash(&result), Some(result)));
                take_vouched_result(&mut o.answers, from, self.f)
            }
            Answer::Digest(d) => {
                o.answers.insert(from, (d, None));
                take_vouched_result(&mut o.answers, from, self.f)
            }
        };
        let evicted = result_evicted_digest();
        // 2f+1: one correct replica evicting it does not mean all have (they
        // evict in the same order, but some may not have executed as far).
        let lost = o.answers.values().filter(|(d, _)| *d == evicted).count() > 2 * self.f;
        let result = match result {
            Some(r) => Ok(r),
            None if lost => Err(ResultLost),
            None => return,
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
            self.sign_for_retransmission();
            self.transmit(now);
        }
    }

    /// MACs are the fast path, and a Byzantine client can make its entry
    /// good at one replica and bad at another; so replicas send a STOP
    /// only for a request every replica checks alike, a signed one, and
    /// let go of one with MACs only after two request timeouts. A request
    /// not answered in time is therefore retransmitted signed (Aardvark
    /// signs every request; here only the slow path pays).
    fn sign_for_retransmission(&mut self) {
        let Some(o) = &mut self.outstanding else {
            return;
        };
        if !std::mem::take(&mut o.unsigned) {
            return;
        }
        let Ok((_, Message::Request(mut req))) = wire::peek(&o.body, self.n) else {
            return; // encoded by `submit`: it decodes
        };
        req.auth = RequestAuth::Signature(self.crypto.sign(&req.signed_bytes()));
        o.body = wire::encode_body(Peer::Client(self.id), &Message::Request(req));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SimCrypto;

    const MASTER: [u8; 32] = [9; 32];

    fn reply_from(r: ReplicaId, result: &[u8]) -> Vec<u8> {
        let msg = Message::Reply(Reply {
            client: 7,
            seq: 1,
            result: result.to_vec(),
        });
        let crypto = SimCrypto::new(Peer::Replica(r), MASTER, 4);
        wire::encode_frame(Peer::Replica(r), Peer::Client(7), &msg, &crypto)
    }

    fn client() -> Client {
        let crypto = Box::new(SimCrypto::new(Peer::Client(7), MASTER, 4));
        let mut c = Client::new(7, 4, crypto, ClientAuth::Macs, Span::from_millis(100));
        c.submit(Time(0), b"op".to_vec());
        while c.poll_output().is_some() {}
        c
    }

    #[test]
    fn a_replica_flooding_different_results_holds_one_answer_and_gets_none_accepted() {
        let mut c = client();
        for i in 0..100u32 {
            c.handle_message(Time(1), &reply_from(3, &i.to_le_bytes()));
        }
        let held = c.outstanding.as_ref().map(|o| o.answers.len());
        assert_eq!(held, Some(1), "one answer per replica, the latest");
        assert!(c.poll_output().is_none());
        // Control: f+1 = 2 replicas agreeing complete it.
        c.handle_message(Time(2), &reply_from(1, b"ok"));
        c.handle_message(Time(2), &reply_from(2, b"ok"));
        match c.poll_output() {
            Some(ClientOutput::Complete { result, .. }) => assert_eq!(result.unwrap(), b"ok"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn replies_after_completion_are_dropped_unopened_and_forged_ones_before_it_are_not_taken() {
        let mut c = client();
        // A reply whose MAC is wrong is opened (its request is outstanding) and refused.
        let mut forged = reply_from(1, b"ok");
        let last = forged.len() - 1;
        forged[last] ^= 1;
        c.handle_message(Time(1), &forged);
        assert_eq!((c.dropped_frames, c.late_replies), (1, 0));
        c.handle_message(Time(1), &reply_from(1, b"ok"));
        c.handle_message(Time(1), &reply_from(2, b"ok"));
        assert!(matches!(
            c.poll_output(),
            Some(ClientOutput::Complete { .. })
        ));
        // The other replicas' answers arrive after completion: not opened.
        c.handle_message(Time(2), &reply_from(3, b"ok"));
        c.handle_message(Time(2), &forged);
        assert_eq!((c.dropped_frames, c.late_replies), (1, 2));
        assert!(c.poll_output().is_none());
    }

    /// The slow path is signed: replicas STOP only for a signed request,
    /// so a request not answered in time goes out again signed.
    #[test]
    fn a_retransmission_is_signed() {
        let crypto = Box::new(SimCrypto::new(Peer::Client(7), MASTER, 4));
        let mut c = Client::new(7, 4, crypto, ClientAuth::Macs, Span::from_millis(100));
        c.submit(Time::ZERO, b"op".to_vec());
        let auth_of = |c: &mut Client| {
            let mut auths = Vec::new();
            while let Some(ClientOutput::Send { frame, .. }) = c.poll_output() {
                match wire::peek(&frame, 4) {
                    Ok((_, Message::Request(r))) => auths.push(r.auth),
                    other => panic!("{other:?}"),
                }
            }
            auths
        };
        let first = auth_of(&mut c);
        assert_eq!(first.len(), 4);
        assert!(first.iter().all(|a| matches!(a, RequestAuth::Macs(_))));
        let t = c.poll_timeout().unwrap();
        c.handle_timeout(t);
        let again = auth_of(&mut c);
        assert_eq!(again.len(), 4);
        assert!(again.iter().all(|a| matches!(a, RequestAuth::Signature(_))));
    }

    #[test]
    fn a_client_trusting_one_reply_takes_the_first_authentic_one() {
        let mut c = client().trusting_one_reply();
        c.handle_message(Time(1), &reply_from(2, b"ok"));
        assert!(matches!(
            c.poll_output(),
            Some(ClientOutput::Complete { .. })
        ));
    }
}
