//! Signature checks lifted out of frames, so the network layer can verify them
//! in batches (on other threads) before the core sees the frames.
//!
//! The core stays the judge: it still asks its [`Crypto`](crate::crypto::Crypto)
//! about every signature. [`KeyedCrypto`](crate::crypto::KeyedCrypto) answers
//! "valid" without recomputing only for an exact (signer, message, signature)
//! triple found in the [`PreVerified`] set, which the network layer fills with
//! triples a batch verified. ZIP-215 makes batch and single verification agree
//! on every input, so the core's verdicts do not depend on how frames were
//! batched, and the core remains deterministic.

use crate::codec::Reader;
use crate::crypto::{hash_parts, Digest, Peer, Signature};
use crate::limits::{OP_BYTES_MAX, PREVERIFIED_MAX};
use crate::message::{CheckpointCert, Message, RequestAuth};
use crate::message::{AUTH_SIGNATURE, TAG_CHECKPOINT, TAG_REQUEST};
use crate::wire::{message_tag, peek, CLIENT_HEADER_BYTES};
use std::collections::BTreeSet;
use std::sync::Mutex;

/// One signature the core will check when it handles a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SigItem {
    pub signer: Peer,
    pub msg: Vec<u8>,
    pub sig: Signature,
}

/// Identifies a (signer, message, signature) triple.
pub fn fingerprint(signer: Peer, msg: &[u8], sig: &Signature) -> Digest {
    hash_parts(&[b"preverified", &signer.key_id(), &sig.0, msg])
}

impl SigItem {
    pub fn fingerprint(&self) -> Digest {
        fingerprint(self.signer, &self.msg, &self.sig)
    }
}

/// The signatures worth checking ahead of the core in `frame`: a client's
/// signed request and a replica's CHECKPOINT vote. Requests inside a PROPOSE
/// are left out: a replica usually holds them already (clients send to every
/// replica), and the core checks only those it lacks. WRITE votes carry no
/// signature (their link MAC is all the normal case needs).
/// Frames that do not decode yield nothing (the core will drop them).
pub fn signature_items(frame: &[u8], n: usize, out: &mut Vec<SigItem>) {
    // Skip big frames (PROPOSE, state transfer) without decoding them.
    let tag = message_tag(frame);
    let wanted = match tag {
        Some(TAG_REQUEST) => request_is_signed(frame),
        Some(TAG_CHECKPOINT) => true,
        _ => false,
    };
    if !wanted {
        return;
    }
    let Ok((from, msg)) = peek(frame, n) else {
        return;
    };
    match (from, msg) {
        (Peer::Client(_), Message::Request(req)) => {
            if let RequestAuth::Signature(sig) = req.auth {
                out.push(SigItem {
                    signer: Peer::Client(req.client),
                    msg: req.signed_bytes(),
                    sig,
                });
            }
        }
        (
            Peer::Replica(_),
            Message::Checkpoint {
                instance,
                digest,
                sig,
            },
        ) => out.push(SigItem {
            signer: from,
            msg: CheckpointCert::sign_bytes(instance, &digest),
            sig,
        }),
        _ => {}
    }
}

/// Whether a client frame's request carries a signature (not MACs), read
/// without allocating: most requests are MAC-authenticated.
fn request_is_signed(frame: &[u8]) -> bool {
    let Some(body) = frame.get(CLIENT_HEADER_BYTES + 1..) else {
        return false;
    };
    let mut r = Reader::new(body);
    let auth = r
        .u64()
        .and_then(|_| r.u64())
        .and_then(|_| r.u32()) // the replier
        .and_then(|_| r.bytes("op", OP_BYTES_MAX))
        .and_then(|_| r.u8());
    auth == Ok(AUTH_SIGNATURE)
}

/// Fingerprints of triples verified this turn; bounded by [`PREVERIFIED_MAX`]
/// (what does not fit is simply verified again by the core).
#[derive(Debug, Default)]
pub struct PreVerified {
    set: Mutex<BTreeSet<Digest>>,
}

impl PreVerified {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<Digest>> {
        // A panic elsewhere cannot leave a set of digests inconsistent.
        self.set.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records triples a batch found valid.
    pub fn insert(&self, fingerprints: impl IntoIterator<Item = Digest>) {
        let mut set = self.lock();
        for f in fingerprints {
            if set.len() >= PREVERIFIED_MAX {
                break;
            }
            set.insert(f);
        }
    }

    pub fn contains(&self, f: &Digest) -> bool {
        self.lock().contains(f)
    }

    /// Whether this exact triple was verified; one lock, and no hashing when
    /// the set is empty (the usual case without signed traffic).
    pub fn contains_triple(&self, signer: Peer, msg: &[u8], sig: &Signature) -> bool {
        let set = self.lock();
        !set.is_empty() && set.contains(&fingerprint(signer, msg, sig))
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Forgets every triple (at the end of each turn, so the set stays small).
    pub fn clear(&self) {
        self.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{Crypto, SimCrypto};
    use crate::message::{Replier, Request};
    use crate::wire::encode_frame;

    #[test]
    fn items_come_from_signed_requests_and_checkpoint_votes_only() {
        let replica = SimCrypto::new(Peer::Replica(1), [3; 32], 4);
        let client = SimCrypto::new(Peer::Client(9), [3; 32], 4);
        let write = Message::Write {
            regency: 2,
            instance: 5,
            digest: [7; 32],
        };
        let bytes = Request::auth_bytes(9, 1, Replier::All, b"op");
        let req = Message::Request(Request {
            client: 9,
            seq: 1,
            replier: Replier::All,
            op: b"op".to_vec(),
            auth: RequestAuth::Signature(client.sign(&bytes)),
        });
        let checkpoint = Message::Checkpoint {
            instance: 128,
            digest: [8; 32],
            sig: replica.sign(&CheckpointCert::sign_bytes(128, &[8; 32])),
        };
        let stop = Message::Stop { regency: 3 };
        let mac_req = Message::Request(Request {
            client: 9,
            seq: 2,
            replier: Replier::All,
            op: b"op".to_vec(),
            auth: RequestAuth::Macs(vec![[0; 32]; 4]),
        });
        let mut items = Vec::new();
        for (from, m) in [
            (Peer::Replica(1), &write),
            (Peer::Replica(1), &checkpoint),
            (Peer::Client(9), &req),
            (Peer::Replica(1), &stop),
            (Peer::Client(9), &mac_req),
        ] {
            let crypto: &dyn Crypto = if from == Peer::Client(9) {
                &client
            } else {
                &replica
            };
            signature_items(
                &encode_frame(from, Peer::Replica(0), m, crypto),
                4,
                &mut items,
            );
        }
        signature_items(b"\x00garbage", 4, &mut items);
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].signer, Peer::Replica(1));
        assert_eq!(items[0].msg, CheckpointCert::sign_bytes(128, &[8; 32]));
        assert_eq!(items[1].signer, Peer::Client(9));
        assert_eq!(items[1].msg, bytes);
    }

    #[test]
    fn the_set_is_bounded_and_exact() {
        let set = PreVerified::default();
        set.insert((0..PREVERIFIED_MAX as u32 + 10).map(|i| hash_parts(&[&i.to_le_bytes()])));
        assert_eq!(set.len(), PREVERIFIED_MAX);
        assert!(set.contains(&hash_parts(&[&0u32.to_le_bytes()])));
        assert!(!set.contains(&hash_parts(&[b"other"])));
        set.clear();
        assert!(set.is_empty());
    }
}
