//! Property test: a replica fed arbitrary frames (random bytes, real frames with
//! random corruption, and well-formed, correctly authenticated messages with
//! random fields from one Byzantine peer) never panics and never changes what it
//! has decided or executed. Seeded, so any failure replays.

#![allow(clippy::unwrap_used)]

mod support;

use bft_core::crypto::Peer;
use bft_core::message::ReplicaId;
use bft_core::rng::Rng;
use support::gen::random_message;
use support::*;

const CASES: u64 = 30_000;

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
