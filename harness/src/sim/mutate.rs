//! Small-scope mutations of one Byzantine replica's messages (after ByzzFuzz):
//! regency ±1, instance ±1, payload changed, message dropped. The mutated
//! message is re-signed and re-MACed with the replica's own keys, so it passes
//! authentication and tests the protocol logic, not the MAC check.

use bft_core::crypto::{Crypto, Peer};
use bft_core::message::*;
use bft_core::rng::Rng;
use bft_core::wire;
use std::sync::Arc;

/// Returns the mutated frame, or None to drop it.
pub fn mutate(
    frame: &[u8],
    to: Peer,
    n: usize,
    crypto: &dyn Crypto,
    rng: &mut Rng,
) -> Option<Vec<u8>> {
    let Ok((from, mut msg)) = wire::peek(frame, n) else {
        return Some(frame.to_vec());
    };
    match rng.below(4) {
        0 => return None,
        1 => shift_regency(&mut msg, if rng.chance(0.5) { 1 } else { -1 }),
        2 => shift_instance(&mut msg, if rng.chance(0.5) { 1 } else { -1 }),
        _ => change_payload(&mut msg, rng),
    }
    resign(&mut msg, crypto);
    Some(wire::encode_frame(from, to, &msg, crypto))
}

fn add(v: &mut u64, delta: i64) {
    *v = v.saturating_add_signed(delta);
}

fn shift_regency(msg: &mut Message, d: i64) {
    match msg {
        Message::Propose { regency, .. }
        | Message::Write { regency, .. }
        | Message::Accept { regency, .. }
        | Message::Stop { regency } => add(regency, d),
        Message::Sync(s) => add(&mut s.regency, d),
        Message::StopData { data, .. } => add(&mut data.regency, d),
        Message::StateReply(s) => add(&mut s.regency, d),
        _ => {}
    }
}

fn shift_instance(msg: &mut Message, d: i64) {
    match msg {
        Message::Propose { instance, .. }
        | Message::Write { instance, .. }
        | Message::Accept { instance, .. }
        | Message::Checkpoint { instance, .. } => add(instance, d),
        Message::StateRequest { from, .. } => add(from, d),
        Message::StateReply(s) => {
            for (i, _) in &mut s.suffix {
                add(i, d);
            }
        }
        _ => {}
    }
}

fn change_payload(msg: &mut Message, rng: &mut Rng) {
    match msg {
        Message::Propose { batch, .. } => {
            let mut requests = batch.requests().to_vec();
            if requests.len() > 1 && rng.chance(0.5) {
                requests.pop();
            } else if let Some(first) = requests.first().cloned() {
                requests.push(first); // a duplicate request in the batch
            }
            *batch = Arc::new(Batch::new(requests));
        }
        Message::Write { digest, .. }
        | Message::Accept { digest, .. }
        | Message::Checkpoint { digest, .. } => digest[0] ^= 1 << rng.below(8),
        Message::StopData { data, batches } => {
            // Hide its last report, forget everything (amnesia), or claim
            // that all it accepted and wrote is from the latest regency.
            match rng.below(3) {
                0 => {
                    if data.reports.pop().is_some_and(|r| r.accepted.is_some()) {
                        batches.pop();
                    }
                }
                1 => {
                    data.reports.clear();
                    batches.clear();
                }
                _ => {
                    let latest = data.regency.saturating_sub(1);
                    for rep in &mut data.reports {
                        if let Some((r, _)) = &mut rep.accepted {
                            *r = latest;
                        }
                        for (r, _) in &mut rep.written {
                            *r = latest;
                        }
                    }
                }
            }
        }
        Message::Sync(s) => {
            s.batches.pop();
        }
        Message::StateReply(s) => {
            if let Some(b) = s.snapshot.first_mut() {
                *b ^= 1;
            }
            s.suffix.pop();
        }
        Message::Reply(r) => {
            if let Some(b) = r.result.first_mut() {
                *b ^= 1;
            }
        }
        Message::ReplyDigest(r) => r.digest[0] ^= 1,
        _ => {}
    }
}

/// Re-signs whatever the mutation changed, with the Byzantine replica's own key.
fn resign(msg: &mut Message, crypto: &dyn Crypto) {
    match msg {
        Message::Checkpoint {
            instance,
            digest,
            sig,
        } => *sig = crypto.sign(&CheckpointCert::sign_bytes(*instance, digest)),
        Message::StopData { data, .. } => data.sig = crypto.sign(&data.sign_bytes()),
        _ => {}
    }
}
