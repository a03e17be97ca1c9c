//! Random well-formed messages for property tests (seeded).

use super::{crypto, request_for};
use bft_core::crypto::{Crypto, Peer, Signature};
use bft_core::message::*;
use bft_core::rng::Rng;
use std::sync::Arc;

pub fn random_digest(rng: &mut Rng) -> [u8; 32] {
    let mut d = [0u8; 32];
    rng.fill(&mut d);
    d
}

pub fn near(rng: &mut Rng, around: u64) -> u64 {
    match rng.below(8) {
        0 => rng.next_u64(),
        1 => u64::MAX - rng.below(3),
        _ => around.saturating_add(rng.below(6)).saturating_sub(2),
    }
}

pub fn random_batch(rng: &mut Rng) -> Arc<Batch> {
    let requests = (0..rng.below(3))
        .map(|_| {
            let replier = random_replier(rng);
            let mut r = request_for(rng.below(4), rng.below(8), b"op", 4, replier);
            if rng.chance(0.5) {
                r.auth = RequestAuth::Signature(Signature([rng.below(256) as u8; 64]));
            }
            r
        })
        .collect();
    Arc::new(Batch::new(requests))
}

pub fn random_replier(rng: &mut Rng) -> Replier {
    match rng.below(3) {
        0 => Replier::All,
        1 => Replier::One(rng.below(4) as ReplicaId),
        _ => Replier::One(rng.next_u64() as u32 >> 1), // outside the cluster
    }
}

pub fn random_sigs(rng: &mut Rng, bytes: &[u8]) -> Vec<(ReplicaId, Signature)> {
    (0..rng.below(4) as ReplicaId)
        .map(|s| {
            let sig = if rng.chance(0.5) {
                crypto(Peer::Replica(3), 4).sign(bytes)
            } else {
                Signature([rng.below(256) as u8; 64])
            };
            (s, sig)
        })
        .collect()
}

/// A well-formed message with fields near the replica's current state.
pub fn random_message(rng: &mut Rng, instance: u64) -> Message {
    let by3 = crypto(Peer::Replica(3), 4);
    let (r, i, d) = (near(rng, 0), near(rng, instance), random_digest(rng));
    match rng.below(12) {
        0 => Message::Propose {
            regency: r,
            instance: i,
            batch: random_batch(rng),
        },
        1 => Message::Write {
            regency: r,
            instance: i,
            digest: d,
        },
        2 => Message::Accept {
            regency: r,
            instance: i,
            digest: d,
        },
        3 if rng.chance(0.5) => Message::Stop { regency: r },
        3 => Message::Unverifiable {
            regency: r,
            instance: i,
            clients: (0..rng.below(4)).map(|_| 1000 + rng.below(8)).collect(),
        },
        4 | 5 => {
            let checkpoint = CheckpointCert {
                instance: near(rng, 4),
                digest: d,
                sigs: random_sigs(rng, &CheckpointCert::sign_bytes(4, &d)),
            };
            let batches: Vec<_> = (0..rng.below(3)).map(|_| random_batch(rng)).collect();
            let reports = batches
                .iter()
                .enumerate()
                .map(|(k, b)| {
                    let ts = near(rng, r.saturating_sub(1));
                    InstanceReport {
                        instance: i.saturating_add(k as u64),
                        accepted: Some((ts, b.digest())),
                        written: (0..rng.below(3))
                            .map(|_| (near(rng, ts), random_digest(rng)))
                            .collect(),
                    }
                })
                .collect();
            let mut sd = StopData {
                regency: r,
                from: 3,
                incarnation: rng.below(3),
                checkpoint,
                reports,
                sig: Signature([0; 64]),
            };
            sd.sig = by3.sign(&sd.sign_bytes());
            if rng.chance(0.5) {
                Message::StopData { data: sd, batches }
            } else {
                Message::Sync(SyncProof {
                    regency: r,
                    proofs: vec![sd.clone(), sd.clone(), sd],
                    batches,
                })
            }
        }
        6 => Message::Checkpoint {
            instance: i,
            digest: d,
            sig: by3.sign(&CheckpointCert::sign_bytes(i, &d)),
        },
        7 => Message::StateRequest {
            nonce: rng.next_u64(),
            from: i,
            incarnation: random_incarnation(rng, &by3),
        },
        8 => Message::StateReply(StateReply {
            nonce: rng.next_u64(),
            regency: r,
            stop_floor: r.saturating_add(rng.below(3)),
            checkpoint: CheckpointCert {
                instance: i,
                digest: d,
                sigs: random_sigs(rng, &CheckpointCert::sign_bytes(i, &d)),
            },
            snapshot: vec![rng.below(256) as u8; rng.below(64) as usize],
            suffix: vec![(i, random_batch(rng))],
            sync: None,
            incarnations: (0..rng.below(3))
                .map(|_| random_incarnation(rng, &by3))
                .collect(),
        }),
        9 => Message::Reply(Reply {
            client: 1,
            seq: i,
            result: vec![1],
        }),
        10 => Message::ReplyDigest(ReplyDigest {
            client: 1,
            seq: i,
            digest: d,
        }),
        _ => {
            let replier = random_replier(rng);
            Message::Request(request_for(rng.below(4), near(rng, 1), b"z", 4, replier))
        }
    }
}

/// A run of replica 3 (signed by it, or not), or of another replica (forged).
pub fn random_incarnation(rng: &mut Rng, by3: &dyn Crypto) -> Incarnation {
    let replica = if rng.chance(0.7) {
        3
    } else {
        rng.below(6) as ReplicaId
    };
    let (number, tag) = (near(rng, 5), rng.below(3));
    let mut inc = Incarnation::signed(replica, number, tag, by3);
    if rng.chance(0.3) {
        inc.sig = Signature([rng.below(256) as u8; 64]);
    }
    inc
}
