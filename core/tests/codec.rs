//! The wire codec under random input: canonical round trips for every message
//! kind, and no panic (or oversized allocation) on random or corrupted frames.

#![allow(clippy::unwrap_used)]

mod support;

use bft_core::codec::{Reader, Writer};
use bft_core::crypto::Peer;
use bft_core::message::{decode_message, encode_message, encoded_len_hint};
use bft_core::rng::Rng;
use bft_core::wire;
use support::gen::random_message;
use support::*;

#[test]
fn every_message_kind_round_trips_canonically() {
    let mut rng = Rng::new(11);
    let mut kinds = std::collections::BTreeSet::new();
    for _ in 0..3_000 {
        let m = random_message(&mut rng, 5);
        kinds.insert(m.kind());
        let mut w = Writer::new();
        encode_message(&mut w, &m);
        let bytes = w.finish();
        if matches!(m.kind(), "REQUEST" | "REPLY" | "PROPOSE") {
            assert_eq!(bytes.len(), encoded_len_hint(&m), "exact for {}", m.kind());
        }
        let mut r = Reader::new(&bytes);
        let back = decode_message(&mut r).unwrap();
        r.finish().unwrap();
        assert_eq!(back, m);
        if let bft_core::message::Message::Propose { batch, .. } = &m {
            // Opening the frame takes the batch's digest from the bytes received:
            // the same as encoding the batch gives.
            let f = frame(1, Peer::Replica(0), &m, 5);
            let opened = wire::open(&f, 5, &crypto(Peer::Replica(0), 5)).unwrap().1;
            let bft_core::message::Message::Propose { batch: got, .. } = opened else {
                panic!("a PROPOSE opened as another message");
            };
            let fresh = bft_core::message::Batch::new(batch.requests().to_vec());
            assert_eq!(got.digest(), fresh.digest());
        }
        let mut w2 = Writer::new();
        encode_message(&mut w2, &back);
        assert_eq!(w2.finish(), bytes, "one encoding per value");
    }
    assert!(kinds.len() >= 10, "{kinds:?}");
}

#[test]
fn random_and_corrupted_frames_never_panic() {
    let mut rng = Rng::new(12);
    let me = crypto(Peer::Replica(0), 4);
    let mut opened = 0;
    for case in 0..50_000u32 {
        let frame = if case % 2 == 0 {
            let mut b = vec![0u8; rng.below(300) as usize];
            rng.fill(&mut b);
            if !b.is_empty() {
                b[0] = (rng.below(3)) as u8; // valid sender tags more often
            }
            b
        } else {
            let m = random_message(&mut rng, 5);
            let mut f = frame(1, Peer::Replica(0), &m, 4);
            for _ in 0..=rng.below(3) {
                let at = rng.below(f.len() as u64) as usize;
                f[at] = rng.below(256) as u8;
            }
            f
        };
        let _ = wire::peek(&frame, 4);
        let _ = wire::reply_client(&frame);
        if wire::open(&frame, 4, &me).is_ok() {
            opened += 1;
        }
    }
    assert!(
        opened < 50,
        "corruption is almost always detected ({opened})"
    );
}

#[test]
fn a_reply_frame_names_its_client_without_being_decoded() {
    use bft_core::message::{Message, Reply, ReplyDigest};
    let full = Message::Reply(Reply {
        client: 7,
        seq: 1,
        result: vec![1; 10],
    });
    let digest = Message::ReplyDigest(ReplyDigest {
        client: 1 << 40,
        seq: 1,
        digest: [3; 32],
    });
    let to = |c| Peer::Client(c);
    assert_eq!(wire::reply_client(&frame(1, to(7), &full, 4)), Some(7));
    assert_eq!(
        wire::reply_client(&frame(2, to(1 << 40), &digest, 4)),
        Some(1 << 40)
    );
    // Control: other messages, client frames and truncated replies name no one.
    let stop = Message::Stop { regency: 7 };
    assert_eq!(wire::reply_client(&frame(1, to(7), &stop, 4)), None);
    let req = client_frame(&request(7, 1, b"op", 4));
    assert_eq!(wire::reply_client(&req), None);
    let f = frame(1, to(7), &full, 4);
    assert_eq!(wire::reply_client(&f[..10]), None);
}

#[test]
fn a_huge_declared_length_is_refused_before_allocation() {
    // A PROPOSE claiming 4 billion requests in a tiny frame.
    let mut w = Writer::new();
    w.u8(0);
    w.u32(1);
    w.u8(3);
    w.u64(0);
    w.u64(1);
    w.u32(u32::MAX);
    let body = w.finish();
    assert!(wire::peek(&body, 4).is_err());
}

#[test]
fn a_propose_frame_is_authenticated_through_its_batch_digest() {
    use bft_core::crypto::Crypto as _;
    use bft_core::message::{Batch, Message};
    use std::sync::Arc;
    let n = 4;
    let me = crypto(Peer::Replica(0), n);
    let batch = Batch::new(vec![request(5, 1, b"op-a", n), request(6, 1, b"op-b", n)]);
    let digest = batch.digest();
    let propose = Message::Propose {
        regency: 0,
        instance: 3,
        batch: Arc::new(batch),
    };
    let good = frame(1, Peer::Replica(0), &propose, n);
    let (_, opened) = wire::open(&good, n, &me).unwrap();
    let Message::Propose { batch: got, .. } = &opened else {
        panic!("not a PROPOSE: {opened:?}");
    };
    // The digest taken from the received bytes is the one a fresh batch of
    // the same requests computes by encoding them.
    assert_eq!(got.digest(), digest);
    assert_eq!(Batch::new(got.requests().to_vec()).digest(), digest);

    // Control: one byte of a request's operation changed, MAC left as it was.
    let mut tampered = good.clone();
    let at = tampered
        .windows(4)
        .position(|w| w == b"op-b")
        .expect("the operation is in the frame");
    tampered[at + 3] ^= 1;
    assert_eq!(wire::open(&tampered, n, &me), Err(wire::FrameError::BadMac));

    // Control: a MAC over the whole body (the form other messages use) does
    // not authenticate a PROPOSE.
    let body_len = good.len() - bft_core::crypto::MAC_BYTES;
    let mut whole = good[..body_len].to_vec();
    let sender = crypto(Peer::Replica(1), n);
    whole.extend_from_slice(&sender.mac(Peer::Replica(0), &good[..body_len]));
    assert_eq!(wire::open(&whole, n, &me), Err(wire::FrameError::BadMac));

    // Authenticated before it is decoded: a PROPOSE header over bytes that
    // would not decode, with no valid MAC, is refused for its MAC.
    let mut junk = good[..22].to_vec();
    junk.extend_from_slice(&[0xff; 64]);
    junk.extend_from_slice(&[0; bft_core::crypto::MAC_BYTES]);
    assert_eq!(wire::open(&junk, n, &me), Err(wire::FrameError::BadMac));
}
