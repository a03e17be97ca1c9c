//! Features of the protocol, one test each: pipelining, batching, forwarding,
//! reply cache, in-order execution, watermarks, timer back-off.

#![allow(clippy::unwrap_used)]

mod support;

use bft_core::crypto::Peer;
use bft_core::message::*;
use bft_core::replica::Output;
use bft_core::time::{Span, Time};
use bft_core::wire;
use std::sync::Arc;
use support::*;

fn proposes_in_flight(pipeline: u64) -> usize {
    let mut c = Cluster::with(4, |cfg| {
        cfg.pipeline = pipeline;
        cfg.batch_max_requests = 1;
    });
    for client in 0..6 {
        c.offer(&request(100 + client, 1, b"op", 4));
    }
    let in_flight = c.queued("PROPOSE") / 3; // one copy per follower
    c.settle();
    for r in 0..4 {
        assert_eq!(c.get(r).last_executed(), 6, "all six requests decided");
    }
    in_flight
}

#[test]
fn the_leader_keeps_at_most_w_instances_in_flight() {
    assert_eq!(
        proposes_in_flight(1),
        1,
        "W = 1 is BFT-SMaRt: one instance at a time"
    );
    assert_eq!(proposes_in_flight(4), 4);
}

#[test]
fn instances_decided_out_of_order_execute_in_order() {
    let mut c = Cluster::with(4, |cfg| {
        cfg.pipeline = 4;
        cfg.batch_max_requests = 1;
        cfg.checkpoint_interval = 64; // no checkpoint, hence no state transfer, in this run
    });
    for client in 0..8 {
        c.offer(&request(100 + client, 1, b"op", 4));
    }
    let mut saw_gap = false;
    while let Some((to, f)) = c.net.pop_back() {
        c.inject(to, &f);
        for r in 0..4 {
            let rep = c.get(r);
            let next = rep.last_executed() + 1;
            saw_gap |= rep.decided_digest(next).is_none() && rep.decided_digest(next + 1).is_some();
        }
    }
    assert!(
        saw_gap,
        "some replica decided a later instance before an earlier one"
    );
    for r in 0..4 {
        let order: Vec<_> = c
            .delivered
            .iter()
            .filter(|d| d.replica == r)
            .map(|d| d.instance)
            .collect();
        assert_eq!(
            order,
            (1..=8).collect::<Vec<_>>(),
            "replica {r}: {}",
            c.get(r).summary()
        );
    }
}

#[test]
fn batches_wait_for_the_batch_delay_unless_full() {
    let mut c = Cluster::with(4, |cfg| {
        cfg.batch_delay = Span::from_millis(5);
        cfg.batch_max_requests = 4;
    });
    for client in 0..3 {
        c.offer(&request(100 + client, 1, b"op", 4));
    }
    assert_eq!(c.queued("PROPOSE"), 0, "waits for more requests");
    c.advance(Span::from_millis(6));
    assert_eq!(c.get(1).last_executed(), 1);
    assert_eq!(
        c.delivered
            .iter()
            .find(|d| d.replica == 1)
            .unwrap()
            .executed
            .len(),
        3
    );
    for client in 10..14 {
        c.offer(&request(client, 1, b"op", 4));
    }
    assert_eq!(c.queued("PROPOSE"), 3, "a full batch goes at once");
}

#[test]
fn a_request_only_a_follower_saw_is_forwarded_to_the_leader() {
    let mut c = Cluster::new(4);
    let req = request(100, 1, b"op", 4);
    c.inject(2, &client_frame(&req));
    c.settle();
    assert_eq!(c.get(2).last_executed(), 0);
    c.advance(Span::from_millis(150)); // first expiry of the request timer
    for r in 0..4 {
        assert_eq!(c.get(r).last_executed(), 1, "{}", c.get(r).summary());
        assert_eq!(c.get(r).regency(), 0, "forwarding, not a leader change");
    }
}

#[test]
fn a_repeated_request_gets_the_cached_reply() {
    let mut c = Cluster::new(4);
    let req = request(100, 1, b"op", 4);
    c.submit(&req);
    let replies = c.to_clients.len();
    c.inject(1, &client_frame(&req));
    assert_eq!(c.to_clients.len(), replies + 1);
    let (_, frame) = c.to_clients.last().unwrap().clone();
    let (_, first) = c.to_clients[0].clone();
    let decode = |f: &[u8]| match wire::peek(f, 4).unwrap().1 {
        Message::Reply(r) => r,
        m => panic!("{m:?}"),
    };
    assert_eq!(decode(&frame).result, decode(&first).result);
    assert_eq!(c.executed_count(1), 1);
}

#[test]
fn the_log_is_truncated_at_checkpoints_and_bounded_by_watermarks() {
    let mut c = Cluster::new(4); // K = 4, window 2K = 8
    for seq in 1..=30 {
        c.submit(&request(100, seq, b"op", 4));
    }
    for r in 0..4 {
        let rep = c.get(r);
        assert_eq!(rep.last_executed(), 30);
        assert_eq!(rep.stable_checkpoint(), 28);
        assert!(rep.log_len() <= 8, "{}", rep.log_len());
    }
    let beyond = Message::Propose {
        regency: 0,
        instance: 28 + 9,
        batch: Arc::new(Batch::new(vec![request(7, 1, b"x", 4)])),
    };
    let before = c.get(1).stats().dropped_out_of_bounds;
    c.inject(1, &frame(0, Peer::Replica(1), &beyond, 4));
    assert_eq!(c.get(1).stats().dropped_out_of_bounds, before + 1);
}

#[test]
fn leader_change_timers_back_off() {
    // One replica alone with a pending request: every escalation waits longer.
    let mut r = replica(config(4, 1));
    r.handle_message(
        Time(1),
        &client_frame(&signed(&request(100, 1, b"op", 4), 4)),
    );
    let mut stop_times = Vec::new();
    for _ in 0..200 {
        let Some(t) = r.poll_timeout() else { break };
        r.handle_timeout(t);
        while let Some(out) = r.poll_output() {
            if let Output::Send { frame, .. } = out {
                if let Ok((_, Message::Stop { .. })) = wire::peek(&frame, 4) {
                    if stop_times.last() != Some(&t) {
                        stop_times.push(t);
                    }
                }
            }
        }
        if stop_times.len() >= 6 {
            break;
        }
    }
    let gaps: Vec<u64> = stop_times.windows(2).map(|w| w[1].0 - w[0].0).collect();
    assert!(gaps.len() >= 4, "{stop_times:?}");
    assert!(
        gaps.windows(2).all(|g| g[1] >= g[0]),
        "gaps never shrink: {gaps:?}"
    );
    assert!(gaps[gaps.len() - 1] >= 4 * gaps[0], "and grow: {gaps:?}");
    assert_eq!(r.regency(), 0, "alone, it never installs a new regency");
}

/// The answers to clients from index `from` on: (sender, message).
fn answers_since(c: &Cluster, from: usize) -> Vec<(ReplicaId, Message)> {
    c.to_clients[from..]
        .iter()
        .map(|(_, f)| match wire::peek(f, 4).unwrap() {
            (Peer::Replica(r), m) => (r, m),
            (p, m) => panic!("{p:?} sent {m:?}"),
        })
        .collect()
}

#[test]
fn only_the_chosen_replica_returns_the_full_result_the_others_its_digest() {
    let mut c = Cluster::new(4);
    let req = request_for(100, 1, b"op", 4, Replier::One(2));
    c.submit(&req);
    let answers = answers_since(&c, 0);
    let full: Vec<_> = answers
        .iter()
        .filter_map(|(r, m)| match m {
            Message::Reply(rep) => Some((*r, rep.result.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(full.len(), 1, "{answers:?}");
    assert_eq!(full[0].0, 2);
    let digests: Vec<_> = answers
        .iter()
        .filter_map(|(r, m)| match m {
            Message::ReplyDigest(d) => Some((*r, d.digest)),
            _ => None,
        })
        .collect();
    assert_eq!(digests.len(), 3);
    let expected = bft_core::crypto::hash(&full[0].1);
    assert!(digests.iter().all(|(r, d)| *r != 2 && *d == expected));

    // A retransmission is answered in full, even by a replica not chosen.
    let before = c.to_clients.len();
    c.inject(1, &client_frame(&req));
    match &answers_since(&c, before)[..] {
        [(1, Message::Reply(rep))] => assert_eq!(rep.result, full[0].1),
        other => panic!("{other:?}"),
    }

    // Control: a request that chose no one gets four full results.
    let before = c.to_clients.len();
    c.submit(&request(101, 1, b"op", 4));
    let all = answers_since(&c, before);
    assert_eq!(all.len(), 4);
    assert!(all.iter().all(|(_, m)| matches!(m, Message::Reply(_))));
}

/// Routes a client's frames to the replicas in `up` and settles; returns
/// the index of the first answer this produced.
fn route(c: &mut Cluster, client: &mut bft_core::client::Client, up: &[ReplicaId]) -> usize {
    let before = c.to_clients.len();
    for (to, f) in client_frames(client) {
        if up.contains(&to) {
            c.inject(to, &f);
        }
    }
    c.settle();
    before
}

fn completion(client: &mut bft_core::client::Client) -> Option<Vec<u8>> {
    std::iter::from_fn(|| client.poll_output()).find_map(|o| match o {
        bft_core::client::ClientOutput::Complete { result, .. } => result.ok(),
        _ => None,
    })
}

#[test]
fn a_client_completes_on_a_full_result_that_f_digests_vouch_for() {
    let mut c = Cluster::new(4);
    let mut cl = client(100, 4); // chooses replica 100 mod 4 = 0
    cl.submit(Time(0), b"op".to_vec());
    let from = route(&mut c, &mut cl, &[0, 1, 2, 3]);
    let frames: Vec<(ReplicaId, Vec<u8>)> = c.to_clients[from..]
        .iter()
        .map(|(_, f)| match wire::peek(f, 4).unwrap().0 {
            Peer::Replica(r) => (r, f.clone()),
            p => panic!("{p:?}"),
        })
        .collect();
    assert_eq!(frames.len(), 4);
    // Three matching digests are more than f, but carry no result.
    for (_, f) in frames.iter().filter(|(r, _)| *r != 0) {
        cl.handle_message(Time(1), f);
    }
    assert_eq!(completion(&mut cl), None);
    assert!(!cl.is_idle());
    let (_, full) = frames.iter().find(|(r, _)| *r == 0).unwrap();
    let Message::Reply(expected) = wire::peek(full, 4).unwrap().1 else {
        panic!("replica 0 was chosen");
    };
    cl.handle_message(Time(2), full);
    assert_eq!(completion(&mut cl), Some(expected.result));
    assert!(cl.is_idle());
}

#[test]
fn a_forged_full_result_is_not_accepted_and_later_requests_choose_another_replica() {
    let mut c = Cluster::new(4);
    let mut cl = client(100, 4); // chooses replica 0, which lies to this client
    cl.submit(Time(0), b"op".to_vec());
    let from = route(&mut c, &mut cl, &[0, 1, 2, 3]);
    let forged = Message::Reply(Reply {
        client: 100,
        seq: 1,
        result: b"forged".to_vec(),
    });
    cl.handle_message(Time(1), &frame(0, Peer::Client(100), &forged, 4));
    let mut vouched = Vec::new();
    for (r, m) in answers_since(&c, from) {
        if let Message::ReplyDigest(d) = &m {
            vouched.push(d.digest);
        }
        if r != 0 {
            cl.handle_message(Time(1), &frame(r, Peer::Client(100), &m, 4));
        }
    }
    assert_eq!(vouched.len(), 3);
    assert_eq!(
        completion(&mut cl),
        None,
        "f+1 digests match no full result"
    );

    // The retransmission is answered in full by the correct replicas.
    cl.handle_timeout(Time(0) + Span::from_millis(200));
    let from = route(&mut c, &mut cl, &[1, 2, 3]);
    for (_, f) in &c.to_clients[from..] {
        cl.handle_message(Time(2), f);
    }
    let result = completion(&mut cl).expect("completes on the full answers");
    assert_eq!(bft_core::crypto::hash(&result), vouched[0]);

    // The next request chooses replica 1.
    cl.submit(Time(3), b"op2".to_vec());
    let frames = client_frames(&mut cl);
    let (_, Message::Request(req)) = wire::peek(&frames[0].1, 4).unwrap() else {
        panic!("not a request");
    };
    assert_eq!(req.replier, Replier::One(1));
}

#[test]
fn a_signed_request_is_accepted_and_a_forged_one_is_not() {
    use bft_core::crypto::Crypto;
    let mut c = Cluster::new(4);
    let bytes = Request::auth_bytes(100, 1, Replier::All, b"op");
    let sig = crypto(Peer::Client(100), 4).sign(&bytes);
    let mut req = Request {
        client: 100,
        seq: 1,
        replier: Replier::All,
        op: b"op".to_vec(),
        auth: RequestAuth::Signature(sig),
    };
    c.submit(&req);
    assert_eq!(c.get(0).last_executed(), 1);
    req.seq = 2; // the signature no longer matches
    c.submit(&req);
    assert_eq!(c.get(0).last_executed(), 1);
    assert!(c.get(0).stats().dropped_bad_auth >= 1);
}

/// Counts the signatures a replica makes and the replica signatures it verifies.
struct CountingCrypto {
    inner: bft_core::crypto::SimCrypto,
    signed: Arc<std::sync::atomic::AtomicUsize>,
    verified: Arc<std::sync::atomic::AtomicUsize>,
}

impl bft_core::crypto::Crypto for CountingCrypto {
    fn sign(&self, msg: &[u8]) -> bft_core::crypto::Signature {
        self.signed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.sign(msg)
    }
    fn verify_replica(&self, s: ReplicaId, msg: &[u8], sig: &bft_core::crypto::Signature) -> bool {
        self.verified
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.verify_replica(s, msg, sig)
    }
    fn verify_client(&self, c: ClientId, msg: &[u8], sig: &bft_core::crypto::Signature) -> bool {
        self.inner.verify_client(c, msg, sig)
    }
    fn mac(&self, peer: Peer, msg: &[u8]) -> bft_core::crypto::Mac {
        self.inner.mac(peer, msg)
    }
}

#[test]
fn the_normal_case_signs_and_verifies_nothing() {
    let mut c = Cluster::new(4);
    let signed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let verified = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    c.replicas[1] = Some(
        bft_core::replica::Replica::new(
            config(4, 1),
            Box::new(CountingCrypto {
                inner: crypto(Peer::Replica(1), 4),
                signed: signed.clone(),
                verified: verified.clone(),
            }),
            Box::new(bft_core::app::ChainApp::default()),
            7,
        )
        .unwrap(),
    );
    for seq in 1..=3 {
        c.submit(&request(100, seq, b"op", 4));
    }
    assert_eq!(c.get(1).last_executed(), 3);
    let count =
        |a: &Arc<std::sync::atomic::AtomicUsize>| a.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!((count(&signed), count(&verified)), (0, 0));
    // The control: a leader change does sign (its STOPDATA) and verify.
    c.replicas[0] = None;
    c.offer(&request(100, 4, b"op", 4));
    c.advance(Span::from_millis(150));
    c.offer(&support::signed(&request(100, 4, b"op", 4), 4)); // the client retransmits
    c.advance(Span::from_millis(5_000));
    assert!(c.get(1).regency() > 0);
    assert_eq!(c.get(1).last_executed(), 4);
    assert!(count(&signed) > 0 && count(&verified) > 0);
}

/// Found in review (Aardvark's slow primary, unbounded): any executed
/// instance reset every request timer, so a leader that kept ordering a
/// stale request just under each timeout held power with no useful
/// throughput, and censored a client forever. The timer times the request
/// waiting longest; the leader is replaced and the censored request runs.
#[test]
fn a_leader_that_orders_only_stale_requests_is_replaced() {
    let mut c = Cluster::new(4);
    let stale = request(100, 1, b"op", 4);
    c.submit(&stale);
    assert_eq!(c.executed_count(1), 1);
    // Replica 0, the leader, turns Byzantine: the test speaks for it.
    c.replicas[0] = None;
    c.isolated.push(0);
    let censored = request(200, 1, b"op", 4);
    c.offer(&censored);
    c.offer(&signed(&censored, 4)); // retransmitted when it was not answered
    let batch = Arc::new(Batch::new(vec![stale.clone()]));
    for instance in 2..=12 {
        for r in 1..4 {
            let m = Message::Propose {
                regency: 0,
                instance,
                batch: batch.clone(),
            };
            c.inject(r, &frame(0, Peer::Replica(r), &m, 4));
        }
        c.settle();
        c.advance(Span::from_millis(80));
    }
    for r in 1..4 {
        let rep = c.get(r);
        assert!(rep.regency() >= 1, "{r}: {}", rep.summary());
        assert_eq!(
            rep.client_last_seq(200),
            Some(1),
            "{r} ran the censored request: {}",
            rep.summary()
        );
    }
}

/// Found in review: a request larger than any batch may be stayed first in
/// the leader's queue, and every PROPOSE that carried it was refused, so the
/// cluster stalled on it under every leader. It is refused on arrival.
#[test]
fn a_request_no_batch_can_carry_does_not_stall_the_leader() {
    let mut c = Cluster::with(4, |cfg| cfg.batch_max_bytes = 1024);
    c.submit(&request(7, 1, &[0u8; 2000], 4));
    c.submit(&request(8, 1, b"op", 4));
    for r in 0..4 {
        assert_eq!(
            c.get(r).client_last_seq(8),
            Some(1),
            "{}",
            c.get(r).summary()
        );
        assert_eq!(c.get(r).client_last_seq(7), None);
        assert!(c.get(r).stats().dropped_out_of_bounds > 0);
    }
}

/// Found in review: a client whose result the client tables evicted (their
/// byte budget) got nothing back for its retransmission, and with its
/// designated replier down it waited forever. Replicas say the result is
/// gone; f+1 of them complete the request as run with its result lost.
#[test]
fn a_client_whose_result_was_evicted_learns_it_ran() {
    use bft_core::client::{ClientOutput, ResultLost};
    use bft_core::limits::CLIENT_RESULTS_BYTES_MAX;
    use bft_core::replica::{encode_snapshot, genesis_durable, ClientTable};
    let big = vec![1u8; 200 << 10];
    let mut table = ClientTable::default();
    table.record(7, 1, big.clone());
    for c in 0..(CLIENT_RESULTS_BYTES_MAX / big.len()) as u64 + 2 {
        table.record(1000 + c, 1, big.clone());
    }
    assert!(table.result(7).is_none() && table.last_seq(7) == Some(1));
    let app = bft_core::app::ChainApp::default();
    let mut replicas: Vec<_> = (0..4)
        .map(|r| {
            let mut d = genesis_durable(&app);
            d.stable.snapshot = Arc::new(encode_snapshot(&app, &table));
            bft_core::replica::Replica::recover(
                config(4, r),
                Box::new(crypto(Peer::Replica(r), 4)),
                Box::new(bft_core::app::ChainApp::default()),
                d,
                1,
                Time(1),
            )
            .unwrap()
        })
        .collect();
    for r in &mut replicas {
        while r.poll_output().is_some() {}
    }
    // Client 7 retransmits its request 1 (its first), executed long ago.
    let mut cl = client(7, 4);
    cl.submit(Time(2), b"op".to_vec());
    for (to, frame) in client_frames(&mut cl) {
        let r = &mut replicas[to as usize];
        r.handle_message(Time(3), &frame);
        while let Some(out) = r.poll_output() {
            if let Output::Send {
                to: Peer::Client(7),
                frame,
            } = out
            {
                cl.handle_message(Time(4), &frame);
            }
        }
    }
    match cl.poll_output() {
        Some(ClientOutput::Complete { seq: 1, result, .. }) => assert_eq!(result, Err(ResultLost)),
        other => panic!("{other:?}"),
    }
}

/// Aardvark's slow primary: a leader that orders every request, each just
/// under the request timers, held power while clients ran at one request
/// per two timeouts. Followers time how long the leader keeps the requests
/// they hold (`leader_pace`); the control, a leader keeping them under a
/// third of a timeout, stays.
#[test]
fn a_slow_leader_is_replaced() {
    let run = |delay: u64| {
        let mut c = Cluster::new(4);
        c.replicas[0] = None; // the slow leader: the test speaks for it
        c.isolated.push(0);
        for k in 1..=12u64 {
            let req = request(100, k, b"op", 4);
            c.offer(&req);
            c.advance(Span::from_millis(delay));
            let m = Message::Propose {
                regency: 0,
                instance: k,
                batch: Arc::new(Batch::new(vec![req])),
            };
            for r in 1..4 {
                c.inject(r, &frame(0, Peer::Replica(r), &m, 4));
            }
            c.settle();
        }
        c
    };
    let slow = run(70); // beyond half the 100 ms timeout
    for r in 1..4 {
        assert!(
            slow.get(r).stats().slow_leader_stops > 0,
            "{}",
            slow.get(r).summary()
        );
        assert!(slow.get(r).regency() >= 1, "{}", slow.get(r).summary());
    }
    let brisk = run(30);
    for r in 1..4 {
        assert_eq!(brisk.get(r).stats().slow_leader_stops, 0);
        assert_eq!(brisk.get(r).regency(), 0);
        assert_eq!(brisk.get(r).last_executed(), 12);
    }
}
