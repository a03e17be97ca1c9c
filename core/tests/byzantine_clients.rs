//! Clients that send MACs valid at some replicas only (the "big MAC"
//! attack, Aardvark): they must not depose a correct leader, nor stall one
//! regency after another.

mod support;

use bft_core::crypto::Peer;
use bft_core::message::*;
use bft_core::time::Span;
use support::*;

fn macs_valid_at(client: ClientId, seq: u64, valid: &[ReplicaId]) -> Request {
    let mut req = request(client, seq, b"op", 4);
    if let RequestAuth::Macs(m) = &mut req.auth {
        for (r, mac) in m.iter_mut().enumerate() {
            if !valid.contains(&(r as ReplicaId)) {
                mac[0] ^= 0xff;
            }
        }
    }
    req
}

/// A Byzantine client's request `bad`, then an honest client's request
/// number `seq` with its signed retransmission half a timeout later, and a
/// second for the cluster to act (a stalled regency is replaced by then).
fn attack_beside_honest(c: &mut Cluster, bad: &Request, seq: u64) {
    c.submit(bad);
    let honest = request(5, seq, b"op", 4);
    c.submit(&honest);
    c.advance(Span::from_millis(50));
    c.submit(&signed(&honest, 4));
    c.advance(Span::from_millis(1_000));
}

fn stop_from(c: &mut Cluster, byzantine: ReplicaId, regency: Regency) {
    for to in 0..4 {
        if to != byzantine {
            let f = frame(byzantine, Peer::Replica(to), &Message::Stop { regency }, 4);
            c.inject(to, &f);
        }
    }
    c.settle();
}

/// Found in review: a request whose MAC entry is good at one correct
/// follower only timed out there, and that follower's STOP with one
/// Byzantine replica's made f+1, deposing a correct leader, again and
/// again. Only a signed request (which the leader checks as the follower
/// did) justifies a STOP now; one with MACs only is let go.
#[test]
fn a_request_good_at_one_follower_only_does_not_depose_the_leader() {
    let mut c = Cluster::new(4);
    c.replicas[3] = None; // Byzantine: the test speaks for it
    c.isolated.push(3);
    c.submit(&macs_valid_at(9, 1, &[1]));
    stop_from(&mut c, 3, 1);
    c.advance(Span::from_millis(1_000));
    for r in 0..3 {
        assert_eq!(c.get(r).regency(), 0, "r{r}: {}", c.get(r).summary());
    }
    assert!(
        c.get(1).stats().dropped_unsigned > 0,
        "{}",
        c.get(1).summary()
    );
    // Control: the same STOP pattern over a signed request kept from the
    // leader (which it could have checked, so the STOP is justified).
    let unseen = signed(&request(9, 2, b"op", 4), 4);
    c.isolated.push(0);
    c.inject(1, &client_frame(&unseen));
    c.settle();
    stop_from(&mut c, 3, 1);
    c.advance(Span::from_millis(1_000));
    assert!(c.get(1).regency() >= 1, "{}", c.get(1).summary());
}

/// Found in review: a request whose MAC entry is good at the leader only
/// was proposed, no follower could write it, and the regency stalled until
/// its leader was replaced; the client could then do the same to the next
/// leader, and the next. Each follower that cannot check it strikes the
/// client and holds only its signed requests for a while, so as the next
/// leader it proposes nothing of the client's it cannot show valid.
#[test]
fn a_request_good_at_the_leader_only_stalls_one_regency_not_the_next() {
    let mut c = Cluster::new(4);
    attack_beside_honest(&mut c, &macs_valid_at(9, 1, &[0]), 1);
    for r in 0..4 {
        assert_eq!(c.get(r).regency(), 1, "r{r}: {}", c.get(r).summary());
        assert_eq!(c.get(r).client_last_seq(5), Some(1));
        assert_eq!(c.get(r).client_last_seq(9), None);
        // Struck when the instance it could not check stalled the regency.
        assert_eq!(c.get(r).stats().clients_struck, 1, "{}", c.get(r).summary());
    }
    // The client tries the same on leader 1, which struck it: nothing of
    // it is proposed, and the regency goes on.
    let again = |c: &mut Cluster, client: ClientId, seq: u64| {
        attack_beside_honest(c, &macs_valid_at(client, seq, &[1]), seq);
    };
    again(&mut c, 9, 2);
    for r in 0..4 {
        assert_eq!(c.get(r).regency(), 1, "r{r}: {}", c.get(r).summary());
        assert_eq!(c.get(r).client_last_seq(5), Some(2));
    }
    assert!(c.get(1).stats().dropped_unsigned > 0);
    // Leader 0, which could check the client's first request, struck it
    // too (f+1 followers said they could not): it would stall each regency
    // it leads again.
    let before = c.get(0).stats().dropped_unsigned;
    c.inject(0, &client_frame(&macs_valid_at(9, 7, &[0])));
    assert_eq!(c.get(0).stats().dropped_unsigned, before + 1);
    // Control: a client leader 1 never struck stalls its regency once.
    again(&mut c, 10, 3);
    for r in 0..4 {
        assert_eq!(c.get(r).regency(), 2, "r{r}: {}", c.get(r).summary());
        assert_eq!(c.get(r).client_last_seq(5), Some(3));
    }
}

/// Found in review: a signed copy sent just before two timeouts took the
/// place (and age) of a request with MACs only the leader could not check,
/// and the followers' STOPs came before the leader could order it. The
/// signed copy counts as arriving at most one timeout before it came (and,
/// counted anew, is forwarded once more: the STOP comes two timeouts on).
#[test]
fn a_late_signed_copy_gives_the_leader_a_full_timeout() {
    let mut c = Cluster::new(4);
    c.replicas[3] = None; // Byzantine: the test speaks for it
    c.isolated.extend([3, 0]); // and the leader hears nothing
    let req = macs_valid_at(9, 1, &[1]);
    c.inject(1, &client_frame(&req));
    c.settle();
    stop_from(&mut c, 3, 1);
    c.advance(Span::from_millis(190)); // just under two timeouts
    c.inject(1, &client_frame(&signed(&req, 4)));
    c.settle();
    c.advance(Span::from_millis(60));
    assert!(
        c.get(1).summary().contains("stop=None"),
        "no STOP within a timeout of the signed copy: {}",
        c.get(1).summary()
    );
    c.advance(Span::from_millis(200));
    assert!(
        c.get(1).regency() >= 1,
        "the leader had its timeouts: {}",
        c.get(1).summary()
    );
}

/// Found in review: every PROPOSE for an instance was reviewed, so a
/// Byzantine leader could send a good batch, let it decide, and follow it
/// with batches of made-up requests striking any client it liked. Only the
/// PROPOSE kept for an instance is reviewed, and its unverifiable clients
/// are struck only if that instance stalls the regency.
#[test]
fn a_second_propose_for_an_instance_strikes_no_one() {
    let run = |batches: &[Vec<Request>]| {
        let mut c = Cluster::new(4);
        c.replicas[0] = None; // the Byzantine leader: the test speaks for it
        c.isolated.push(0);
        for b in batches {
            let m = Message::Propose {
                regency: 0,
                instance: 1,
                batch: std::sync::Arc::new(Batch::new(b.clone())),
            };
            for r in 1..3 {
                c.inject(r, &frame(0, Peer::Replica(r), &m, 4)); // not 3: it stalls
            }
        }
        c.settle();
        stop_from(&mut c, 0, 1);
        c.inject(3, &client_frame(&signed(&request(6, 1, b"op", 4), 4)));
        c.advance(Span::from_millis(1_000));
        c
    };
    let forged: Vec<Request> = (0..8).map(|k| macs_valid_at(700 + k, 1, &[])).collect();
    let c = run(&[vec![request(5, 1, b"op", 4)], forged.clone()]);
    for r in 1..3 {
        assert!(c.get(r).regency() >= 1, "{}", c.get(r).summary());
        assert_eq!(c.get(r).stats().clients_struck, 0, "{}", c.get(r).summary());
        assert!(c.get(r).stats().equivocations_seen > 0);
    }
    // Control: the forged batch as the PROPOSE kept for the stalled instance.
    let c = run(&[forged]);
    for r in 1..3 {
        assert!(c.get(r).regency() >= 1, "{}", c.get(r).summary());
        assert_eq!(c.get(r).stats().clients_struck, 8, "{}", c.get(r).summary());
    }
}

/// Found in review: the followers' and the leader's notes of unverifiable
/// clients were cleared only at a leader change, so a client could fill
/// them with requests that decided (its MACs good at f+1 replicas) and then
/// stall the regency unpunished. Notes of instances that ran are dropped.
#[test]
fn requests_that_decided_do_not_crowd_out_the_one_that_stalls() {
    let mut c = Cluster::new(4);
    for k in 1..=12 {
        c.submit(&macs_valid_at(20 + k, 1, &[0, 1])); // vouched: it decides
    }
    for r in 0..4 {
        assert_eq!(c.get(r).last_executed(), 12, "{}", c.get(r).summary());
    }
    attack_beside_honest(&mut c, &macs_valid_at(9, 1, &[0]), 1);
    for r in 0..4 {
        assert_eq!(c.get(r).regency(), 1, "r{r}: {}", c.get(r).summary());
        assert_eq!(
            c.get(r).stats().clients_struck,
            1,
            "r{r}: {}",
            c.get(r).summary()
        );
    }
}

/// Found in review: a follower that got the next regency's WRITEs and
/// ACCEPTs for the plan's no-op before its SYNC ran the no-op while
/// adopting the plan, and that erased its note of the stalling client
/// before the strikes were judged. A note goes only when its own batch runs.
#[test]
fn a_follower_whose_sync_comes_last_still_strikes() {
    let mut c = Cluster::new(4);
    c.hold = Some((2, "SYNC"));
    attack_beside_honest(&mut c, &macs_valid_at(9, 1, &[0]), 1);
    assert!(!c.held.is_empty(), "replica 2's SYNC was held back");
    c.hold = None;
    for (to, f) in std::mem::take(&mut c.held) {
        c.inject(to, &f);
    }
    c.settle();
    let r2 = c.get(2);
    assert_eq!(r2.regency(), 1, "{}", r2.summary());
    assert_eq!(r2.client_last_seq(5), Some(1), "{}", r2.summary());
    assert_eq!(r2.stats().clients_struck, 1, "{}", r2.summary());
}
