//! The slow leader (`--slow-leader`): replica 0, Byzantine, rewrites its
//! own PROPOSEs while it leads, in one of four ways drawn from the seed
//! (Aardvark's slow primary and its kin). The adversary lives here, in the
//! harness; the replica under it is honest code.
//!
//! - `Slow`: every PROPOSE is held back `HOLD_TIMEOUTS` request timeouts,
//!   under the two after which a follower STOPs for a request it holds;
//! - `Few`: held back too, and only the first request of each batch kept;
//! - `Censor`: one honest client's requests left out (a batch left empty
//!   is not sent);
//! - `Stale`: held back, and a batch is replaced by a request it ordered
//!   before whenever that one has run here.

use bft_core::crypto::{Crypto, Peer};
use bft_core::message::{Batch, ClientId, Message, Request};
use bft_core::time::Span;
use bft_core::wire;
use std::sync::Arc;

/// How long a PROPOSE is held back, in request timeouts (`× 1/10`).
const HOLD_TENTHS: u64 = 15;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlowMode {
    Slow,
    Few,
    Censor,
    Stale,
}

pub struct SlowLeader {
    pub mode: SlowMode,
    censored: ClientId,
    /// A request it proposed before, for `Stale`.
    old: Option<Request>,
    /// PROPOSEs it rewrote.
    pub rewritten: u64,
}

impl SlowLeader {
    pub fn new(mode: SlowMode, censored: ClientId) -> SlowLeader {
        SlowLeader {
            mode,
            censored,
            old: None,
            rewritten: 0,
        }
    }

    /// How long it holds a PROPOSE back.
    pub fn hold(&self, request_timeout: Span) -> Span {
        match self.mode {
            SlowMode::Censor => Span::ZERO,
            _ => Span(request_timeout.0 * HOLD_TENTHS / 10),
        }
    }

    /// Its PROPOSE to `to`, rewritten (None: not sent); other frames pass.
    /// `ran(client, seq)`: the request has run at the Byzantine replica.
    pub fn rewrite(
        &mut self,
        frame: &[u8],
        to: Peer,
        n: usize,
        crypto: &dyn Crypto,
        ran: &dyn Fn(ClientId, u64) -> bool,
    ) -> Option<Vec<u8>> {
        let Ok((
            from,
            Message::Propose {
                regency,
                instance,
                batch,
            },
        )) = wire::peek(frame, n)
        else {
            return Some(frame.to_vec());
        };
        let mut reqs: Vec<Request> = batch.requests().to_vec();
        match self.mode {
            SlowMode::Slow => {}
            SlowMode::Few => reqs.truncate(1),
            SlowMode::Censor => reqs.retain(|r| r.client != self.censored),
            SlowMode::Stale => match self.old.clone() {
                Some(old) if ran(old.client, old.seq) => reqs = vec![old],
                Some(_) => {}
                None => self.old = reqs.first().cloned(),
            },
        }
        if reqs.is_empty() {
            return None;
        }
        self.rewritten += 1;
        let msg = Message::Propose {
            regency,
            instance,
            batch: Arc::new(Batch::new(reqs)),
        };
        Some(wire::encode_frame(from, to, &msg, crypto))
    }
}
