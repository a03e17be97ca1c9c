//! An equivocating leader, the same behaviour for both protocols: what it
//! sends to the upper half of its followers differs from what the others get,
//! re-MACed with its own keys (what a compromised leader can do).
//!
//! - BFT: a PROPOSE to a victim carries the batch's requests in reverse order:
//!   every request authentic, the proposal different. It cannot do more, as it
//!   cannot forge the clients' authenticators.
//! - Raft: an append to a victim carries entries whose operations are altered;
//!   Raft followers do not check requests, they trust the leader.

use bft_core::codec::{Reader, Writer};
use bft_core::crypto::{Crypto, Peer};
use bft_core::message::{decode_message, encode_message, Batch, Message, ReplicaId};
use bft_core::wire;
use protobuf::Message as _;
use raft::prelude::{Message as RaftMessage, MessageType};
use std::sync::Arc;

/// The followers of `leader` that get the other story: the upper half.
pub fn is_victim(leader: ReplicaId, to: ReplicaId, n: usize) -> bool {
    let others: Vec<ReplicaId> = (0..n as ReplicaId).filter(|r| *r != leader).collect();
    to != leader && others[others.len() / 2..].contains(&to)
}

/// The frame a victim gets instead of `frame`, or None to send it unchanged.
pub fn equivocate(frame: &[u8], to: Peer, n: usize, crypto: &dyn Crypto) -> Option<Vec<u8>> {
    let Peer::Replica(t) = to else { return None };
    let (from, msg) = wire::peek(frame, n).ok()?;
    let Peer::Replica(leader) = from else {
        return None;
    };
    if !is_victim(leader, t, n) {
        return None;
    }
    let msg = match msg {
        Message::Propose {
            regency,
            instance,
            batch,
        } if batch.requests().len() >= 2 => {
            let mut requests = batch.requests().to_vec();
            requests.reverse();
            Message::Propose {
                regency,
                instance,
                batch: Arc::new(Batch::new(requests)),
            }
        }
        Message::Raft(bytes) => Message::Raft(alter_append(&bytes)?),
        _ => return None,
    };
    Some(wire::encode_frame(from, to, &msg, crypto))
}

/// A Raft append whose requests carry altered operations.
fn alter_append(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut m = RaftMessage::parse_from_bytes(bytes).ok()?;
    if m.get_msg_type() != MessageType::MsgAppend {
        return None;
    }
    let mut changed = false;
    for e in m.mut_entries().iter_mut() {
        let Ok(Message::Request(mut req)) = decode_message(&mut Reader::new(&e.data)) else {
            continue;
        };
        req.op.push(b'!');
        let mut w = Writer::new();
        encode_message(&mut w, &Message::Request(req));
        e.data = w.finish().into();
        changed = true;
    }
    if !changed {
        return None;
    }
    m.write_to_bytes().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upper_half_of_the_followers_are_victims() {
        let victims = |leader, n| {
            (0..n as ReplicaId)
                .filter(|t| is_victim(leader, *t, n))
                .collect::<Vec<_>>()
        };
        assert_eq!(victims(0, 4), vec![2, 3]);
        assert_eq!(victims(2, 3), vec![1]);
        assert_eq!(victims(0, 3), vec![2]);
        assert_eq!(victims(1, 5), vec![3, 4]);
    }
}
