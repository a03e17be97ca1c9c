//! Property test: a replica fed arbitrary frames (random bytes, real frames with
//! random corruption, and well-formed, correctly authenticated messages with
//! random fields from one Byzantine peer) never panics and never changes what it
//! has decided or executed. Seeded, so any failure replays.

#![allow(clippy::unwrap_used)]

mod support;

use bft_core::crypto::{Crypto, Peer, Signature};
use bft_core::message::*;
use bft_core::rng::Rng;
use std::sync::Arc;
use support::*;

const CASES: u64 = 4_000;

fn random_digest(rng: &mut Rng) -> [u8; 32] {
    let mut d = [0u8; 32];
    rng.fill(&mut d);
    d
}

fn near(rng: &mut Rng, around: u64) -> u64 {
    match rng.below(4) {
        0 => rng.next_u64(),
        _ => around.saturating_add(rng.below(6)).saturating_sub(2),
    }
}

fn random_batch(rng: &mut Rng) -> Arc<Batch> {
    let requests = (0..rng.below(3))
        .map(|_| {
            let mut r = request(rng.below(4), rng.below(8), b"op", 4);
            if rng.chance(0.5) {
                r.auth = RequestAuth::Signature(Signature([rng.below(256) as u8; 64]));
            }
            r
        })
        .collect();
    Arc::new(Batch { requests })
}

fn random_sigs(rng: &mut Rng, bytes: &[u8]) -> Vec<(ReplicaId, Signature)> {
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
fn random_message(rng: &mut Rng, instance: u64) -> Message {
    let by3 = crypto(Peer::Replica(3), 4);
    let (r, i, d) = (near(rng, 0), near(rng, instance), random_digest(rng));
    match rng.below(11) {
        0 => Message::Propose {
            regency: r,
            instance: i,
            batch: random_batch(rng),
        },
        1 => Message::Write {
            regency: r,
            instance: i,
            digest: d,
            sig: by3.sign(&WriteCert::sign_bytes(r, i, &d)),
        },
        2 => Message::Accept {
            regency: r,
            instance: i,
            digest: d,
        },
        3 => Message::Stop { regency: r },
        4 | 5 => {
            let checkpoint = CheckpointCert {
                instance: near(rng, 4),
                digest: d,
                sigs: random_sigs(rng, &CheckpointCert::sign_bytes(4, &d)),
            };
            let prepared = (0..rng.below(3))
                .map(|k| {
                    let batch = random_batch(rng);
                    let digest = batch.digest();
                    Prepared {
                        cert: WriteCert {
                            regency: r.saturating_sub(1),
                            instance: i + k,
                            digest,
                            sigs: random_sigs(rng, &WriteCert::sign_bytes(r, i, &digest)),
                        },
                        batch,
                    }
                })
                .collect();
            let mut sd = StopData {
                regency: r,
                from: 3,
                checkpoint,
                prepared,
                sig: Signature([0; 64]),
            };
            sd.sig = by3.sign(&sd.sign_bytes());
            if rng.chance(0.5) {
                Message::StopData(sd)
            } else {
                Message::Sync {
                    regency: r,
                    proofs: vec![sd.clone(), sd.clone(), sd],
                }
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
        },
        8 => Message::StateReply(StateReply {
            nonce: rng.next_u64(),
            regency: r,
            checkpoint: CheckpointCert {
                instance: i,
                digest: d,
                sigs: random_sigs(rng, &CheckpointCert::sign_bytes(i, &d)),
            },
            snapshot: vec![rng.below(256) as u8; rng.below(64) as usize],
            suffix: vec![(i, random_batch(rng))],
        }),
        9 => Message::Reply(Reply {
            client: 1,
            seq: i,
            result: vec![1],
        }),
        _ => Message::Request(request(rng.below(4), near(rng, 1), b"z", 4)),
    }
}

#[test]
fn arbitrary_input_from_one_peer_never_panics_nor_changes_decisions() {
    let mut c = Cluster::new(4);
    for s in 1..=6 {
        c.submit(&request(100, s, b"op", 4));
    }
    let target: ReplicaId = 1;
    let decided: Vec<_> = (1..=6)
        .map(|i| (i, c.get(target).decided_digest(i)))
        .collect();
    let executed = c.get(target).last_executed();
    let state = c.get(target).state_digest();
    let corpus: Vec<Vec<u8>> = c.net.iter().map(|(_, f)| f.clone()).collect();
    let mut rng = Rng::new(0xF00D);
    let mut replica = c.replicas[target as usize].take().expect("up");
    for case in 0..CASES {
        let frame = match rng.below(3) {
            0 => {
                let mut b = vec![0u8; rng.below(200) as usize];
                rng.fill(&mut b);
                b
            }
            1 if !corpus.is_empty() => {
                let mut f = corpus[rng.below(corpus.len() as u64) as usize].clone();
                let at = rng.below(f.len() as u64) as usize;
                f[at] ^= 1 << rng.below(8);
                f
            }
            _ => frame(
                3,
                Peer::Replica(target),
                &random_message(&mut rng, executed),
                4,
            ),
        };
        replica.handle_message(bft_core::Time(1_000 + case), &frame);
        if rng.chance(0.05) {
            replica.handle_timeout(bft_core::Time(1_000 + case + 10_000_000));
        }
        while replica.poll_output().is_some() {}
        for (i, d) in &decided {
            if let Some(now) = replica.decided_digest(*i) {
                assert_eq!(Some(now), *d, "case {case}: decision at {i} changed");
            }
        }
        assert_eq!(
            replica.last_executed(),
            executed,
            "case {case}: one peer advanced execution"
        );
        assert_eq!(replica.state_digest(), state, "case {case}: state changed");
    }
    let s = replica.stats();
    assert!(
        s.dropped_undecodable + s.dropped_bad_auth + s.dropped_invalid + s.dropped_out_of_bounds
            > CASES / 4
    );
}
