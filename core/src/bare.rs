//! The unreplicated baseline ("bare"): one server running the same App behind
//! the same frames, client authentication and exactly-once table as a replica.
//! It orders nothing and signs nothing, so it is the ceiling any replicated
//! system is measured against.

use crate::app::App;
use crate::crypto::{Crypto, Peer};
use crate::message::{Message, Reply, Request, RequestAuth};
use crate::replica::{ClientTable, Stats};
use crate::wire;
use std::collections::VecDeque;

pub struct BareServer {
    crypto: Box<dyn Crypto + Send>,
    app: Box<dyn App>,
    clients: ClientTable,
    outputs: VecDeque<(Peer, Vec<u8>)>,
    stats: Stats,
    authenticated_client: Option<crate::message::ClientId>,
}

impl BareServer {
    pub fn new(crypto: Box<dyn Crypto + Send>, app: Box<dyn App>) -> BareServer {
        BareServer {
            crypto,
            app,
            clients: ClientTable::default(),
            outputs: VecDeque::new(),
            stats: Stats::default(),
            authenticated_client: None,
        }
    }

    /// The client whose authenticated request the last frame carried.
    pub fn authenticated_client(&self) -> Option<crate::message::ClientId> {
        self.authenticated_client
    }

    fn authentic(&self, req: &Request) -> bool {
        let bytes = req.signed_bytes();
        match &req.auth {
            // The server is "replica 0" of a one-replica cluster.
            RequestAuth::Macs(m) => {
                m.len() == 1
                    && self
                        .crypto
                        .verify_mac(Peer::Client(req.client), &bytes, &m[0])
            }
            RequestAuth::Signature(s) => self.crypto.verify_client(req.client, &bytes, s),
        }
    }

    /// A frame from a client: executed at once if new, answered from the
    /// client table if a retransmission.
    pub fn handle_message(&mut self, frame: &[u8]) {
        self.authenticated_client = None;
        let req = match wire::open(frame, 1, self.crypto.as_ref()) {
            Ok((Peer::Client(_), Message::Request(req))) => req,
            Ok(_) => return self.stats.dropped_invalid += 1,
            Err(wire::FrameError::BadMac) => return self.stats.dropped_bad_auth += 1,
            Err(_) => return self.stats.dropped_undecodable += 1,
        };
        if !self.authentic(&req) {
            self.stats.dropped_bad_auth += 1;
            return;
        }
        self.authenticated_client = Some(req.client);
        let result = match self.clients.last_seq(req.client) {
            Some(last) if req.seq < last => return,
            Some(last) if req.seq == last => match self.clients.result(req.client) {
                Some((_, r)) => r.to_vec(),
                None => return,
            },
            _ => {
                let r = self.app.execute(&req.op);
                self.clients.record(req.client, req.seq, r.clone());
                self.stats.requests_executed += 1;
                r
            }
        };
        let reply = Message::Reply(Reply {
            client: req.client,
            seq: req.seq,
            result,
        });
        let to = Peer::Client(req.client);
        let frame = wire::encode_frame(Peer::Replica(0), to, &reply, self.crypto.as_ref());
        self.outputs.push_back((to, frame));
    }

    #[must_use]
    pub fn poll_output(&mut self) -> Option<(Peer, Vec<u8>)> {
        self.outputs.pop_front()
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn state_digest(&self) -> crate::crypto::Digest {
        crate::replica::state_digest(&self.app.digest(), &self.clients)
    }
}
