//! Regression tests for bugs in BFT-SMaRt's history (PROTOCOL.md) and for the
//! bounds every peer input must respect.

#![allow(clippy::unwrap_used)]

mod support;

use bft_core::crypto::{Crypto, Peer};
use bft_core::limits::PENDING_REQUESTS_MAX;
use bft_core::message::SyncProof;
use bft_core::message::*;
use bft_core::replica::state::PENDING_PER_CLIENT_MAX;
use bft_core::replica::verify;
use bft_core::replica::Replica;
use bft_core::time::Span;
use std::sync::Arc;
use support::*;

#[test]
fn a_request_is_decided_and_executed_once_everywhere() {
    let mut c = Cluster::new(4);
    c.submit(&request(100, 1, b"op", 4));
    for r in 0..4 {
        assert_eq!(c.get(r).last_executed(), 1);
        assert_eq!(c.executed_count(r), 1);
    }
    let d0 = c.get(0).state_digest();
    assert!((1..4).all(|r| c.get(r).state_digest() == d0));
    assert_eq!(c.to_clients.len(), 4, "every replica replies");
}

/// BFT-SMaRt bug: a leader re-proposing an already-decided batch. Found in
/// review: followers wrote such batches (execution skipped their requests),
/// so a leader could fill its instances with stale requests. Followers now
/// refuse a batch holding a request executed already, or one twice; the
/// control, a fresh batch in the same shape, is decided.
#[test]
fn a_batch_of_executed_or_repeated_requests_is_refused() {
    let mut c = Cluster::new(4);
    let req = request(100, 1, b"op", 4);
    c.submit(&req);
    let fresh = request(101, 1, b"op", 4);
    let propose = |batch: Vec<Request>| Message::Propose {
        regency: 0,
        instance: 2,
        batch: Arc::new(Batch::new(batch)),
    };
    for bad in [vec![req.clone()], vec![fresh.clone(), fresh.clone()]] {
        for r in 1..4 {
            c.inject(r, &frame(0, Peer::Replica(r), &propose(bad.clone()), 4));
        }
        c.settle();
    }
    for r in 1..4 {
        assert_eq!(c.get(r).last_executed(), 1, "{}", c.get(r).summary());
        assert_eq!(c.get(r).stats().stale_proposals_refused, 2);
        assert_eq!(c.executed_count(r), 1, "nothing ran twice");
    }
    for r in 1..4 {
        c.inject(
            r,
            &frame(0, Peer::Replica(r), &propose(vec![fresh.clone()]), 4),
        );
    }
    c.settle();
    for r in 1..4 {
        assert_eq!(c.get(r).last_executed(), 2, "the control is decided");
        assert_eq!(c.executed_count(r), 2);
    }
}

/// BFT-SMaRt bug: a request replayed after a crash ran again because client
/// sequence numbers were not carried through the log and checkpoints.
#[test]
fn a_request_replayed_after_restart_or_state_transfer_is_not_executed_again() {
    let mut c = Cluster::new(4);
    let reqs: Vec<_> = (1..=5).map(|s| request(100, s, b"op", 4)).collect();
    for r in &reqs {
        c.submit(r);
    }
    // Restart replica 3 from its durable state (stable checkpoint at 4 + log).
    let durable = c.get(3).durable();
    let cfg = config(4, 3);
    let restarted = Replica::recover(
        cfg,
        Box::new(crypto(Peer::Replica(3), 4)),
        Box::new(bft_core::app::ChainApp::default()),
        durable,
        9,
        c.now,
    )
    .unwrap();
    c.replicas[3] = Some(restarted);
    c.collect(3);
    c.settle();
    assert_eq!(c.get(3).last_executed(), 5);
    assert_eq!(c.get(3).client_last_seq(100), Some(5));
    let before = c.executed_count(3);
    c.submit(&reqs[0]);
    c.submit(&reqs[4]);
    assert_eq!(
        c.executed_count(3),
        before,
        "old requests are not re-executed"
    );
    // A replica that lost everything catches up by state transfer; the client
    // table comes with the snapshot, so replays are still refused.
    c.replicas[2] = Some(replica(config(4, 2)));
    c.submit(&request(100, 6, b"op", 4)); // drives a checkpoint-less catch-up
    c.advance(Span::from_millis(1000));
    let fresh = c.get(2);
    assert!(fresh.last_executed() >= 4, "caught up: {}", fresh.summary());
    assert_eq!(fresh.client_last_seq(100), Some(6));
    let executed = c.executed_count(2);
    c.submit(&reqs[1]);
    assert_eq!(c.executed_count(2), executed);
}

fn checkpoint_cert(instance: Instance, digest: [u8; 32], signers: &[ReplicaId]) -> CheckpointCert {
    CheckpointCert {
        instance,
        digest,
        sigs: signers
            .iter()
            .map(|s| {
                let sig = crypto(Peer::Replica(*s), 4)
                    .sign(&CheckpointCert::sign_bytes(instance, &digest));
                (*s, sig)
            })
            .collect(),
    }
}

/// BFT-SMaRt bug: ACCEPTs (or signatures) from different instances accepted as one certificate.
#[test]
fn mixed_instance_certificates_and_votes_are_rejected() {
    let cfg = config(4, 0);
    let cr = crypto(Peer::Replica(0), 4);
    let d = [7u8; 32];
    // WRITEs for other instances never make a value accepted; the same WRITEs
    // for its instance do (the positive control).
    for (instances, accepts) in [([2u64, 3], false), ([1, 1], true)] {
        let mut r = replica(config(4, 1));
        let batch = Arc::new(Batch::new(vec![request(100, 1, b"op", 4)]));
        let digest = batch.digest();
        let propose = Message::Propose {
            regency: 0,
            instance: 1,
            batch,
        };
        r.handle_message(bft_core::Time(1), &frame(0, Peer::Replica(1), &propose, 4));
        for (s, instance) in [(2, instances[0]), (3, instances[1])] {
            let w = Message::Write {
                regency: 0,
                instance,
                digest,
            };
            r.handle_message(bft_core::Time(2), &frame(s, Peer::Replica(1), &w, 4));
        }
        assert_eq!(sent_kinds(&mut r).contains(&"ACCEPT"), accepts);
    }
    // STOPDATA signed for one regency never count in another's SYNC.
    let genesis = CheckpointCert {
        instance: 0,
        digest: [0; 32],
        sigs: vec![],
    };
    let proofs: Vec<StopData> = (0..3).map(|s| stop_data(s, 1, genesis.clone())).collect();
    for (regency, valid) in [(2, false), (1, true)] {
        let sync = SyncProof {
            regency,
            proofs: proofs.clone(),
            batches: vec![],
        };
        assert_eq!(verify::sync_plan(&cfg, &cr, &sync).is_some(), valid);
    }
    let mut mixed_ckpt = checkpoint_cert(4, d, &[1, 2, 3]);
    mixed_ckpt.sigs[2] = checkpoint_cert(8, d, &[3]).sigs[0];
    assert!(!verify::checkpoint_cert_valid(&cfg, &cr, &mixed_ckpt));
    assert!(verify::checkpoint_cert_valid(
        &cfg,
        &cr,
        &checkpoint_cert(4, d, &[1, 2, 3])
    ));

    // ACCEPTs for three different instances never decide any of them.
    let mut c = Cluster::new(4);
    for (s, i) in [(1, 1), (2, 2), (3, 3)] {
        let acc = Message::Accept {
            regency: 0,
            instance: i,
            digest: d,
        };
        c.inject(0, &frame(s, Peer::Replica(0), &acc, 4));
    }
    assert!(c.delivered.is_empty());
    assert_eq!(c.get(0).stats().instances_decided, 0);
}

fn lagging_replica_with_transfer() -> (Replica, u64) {
    // A replica restarted with durable state at regency 1 asks for state at once.
    let mut r = replica(config(4, 0));
    let mut durable = r.durable();
    durable.regency = 1;
    durable.synced_regency = 1;
    r = Replica::recover(
        config(4, 0),
        Box::new(crypto(Peer::Replica(0), 4)),
        Box::new(bft_core::app::ChainApp::default()),
        durable,
        3,
        bft_core::Time(5),
    )
    .unwrap();
    let mut nonce = None;
    while let Some(out) = r.poll_output() {
        if let bft_core::replica::Output::Send { frame, .. } = out {
            if let Ok((_, Message::StateRequest { nonce: n, .. })) = bft_core::wire::peek(&frame, 4)
            {
                nonce = Some(n);
            }
        }
    }
    (r, nonce.expect("a restarted replica asks for state"))
}

fn state_reply(
    nonce: u64,
    cert: CheckpointCert,
    snapshot: Vec<u8>,
    suffix: Vec<(Instance, Arc<Batch>)>,
) -> Message {
    Message::StateReply(StateReply {
        nonce,
        regency: 1,
        stop_floor: 1,
        checkpoint: cert,
        snapshot,
        suffix,
        sync: None,
        incarnations: vec![],
    })
}

/// BFT-SMaRt bug: state transfer counted replies without checking they agree.
#[test]
fn state_transfer_takes_only_what_f_plus_1_replies_agree_on() {
    let (mut r, nonce) = lagging_replica_with_transfer();
    let genesis = r.durable().stable.cert.clone();
    let batch = |op: &[u8]| Arc::new(Batch::new(vec![request(5, 1, op, 4)]));
    let send = |r: &mut Replica, from: ReplicaId, b: Arc<Batch>| {
        let m = state_reply(nonce, genesis.clone(), vec![], vec![(1, b)]);
        r.handle_message(bft_core::Time(10), &frame(from, Peer::Replica(0), &m, 4));
    };
    send(&mut r, 1, batch(b"a"));
    send(&mut r, 2, batch(b"b"));
    assert_eq!(
        r.last_executed(),
        0,
        "two disagreeing replies decide nothing"
    );
    send(&mut r, 3, batch(b"a"));
    assert_eq!(r.last_executed(), 1, "f+1 = 2 agreeing replies decide");
}

/// Poisoned state transfer: a snapshot that does not hash to its certified
/// digest, or a certificate without a quorum, is rejected.
#[test]
fn poisoned_state_transfer_is_rejected() {
    // Build a real snapshot at instance 4 from a cluster.
    let mut c = Cluster::new(4);
    for s in 1..=4 {
        c.submit(&request(100, s, b"op", 4));
    }
    let stable = c.get(1).durable().stable;
    assert_eq!(stable.cert.instance, 4);
    let (mut r, nonce) = lagging_replica_with_transfer();
    let mut tampered = stable.snapshot.as_ref().clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let bad = state_reply(nonce, stable.cert.clone(), tampered, vec![]);
    r.handle_message(bft_core::Time(10), &frame(1, Peer::Replica(0), &bad, 4));
    assert_eq!(r.last_executed(), 0);
    assert_eq!(r.stats().poisoned_state_rejected, 1);
    let mut weak = stable.cert.clone();
    weak.sigs.truncate(2);
    let unproven = state_reply(nonce, weak, stable.snapshot.as_ref().clone(), vec![]);
    r.handle_message(
        bft_core::Time(11),
        &frame(2, Peer::Replica(0), &unproven, 4),
    );
    assert_eq!(
        r.last_executed(),
        0,
        "a certificate below quorum proves nothing"
    );
    let good = state_reply(
        nonce,
        stable.cert.clone(),
        stable.snapshot.as_ref().clone(),
        vec![],
    );
    r.handle_message(bft_core::Time(12), &frame(3, Peer::Replica(0), &good, 4));
    assert_eq!(r.last_executed(), 4);
    assert_eq!(r.state_digest(), stable.cert.digest);
    assert_eq!(r.client_last_seq(100), Some(4));
}

/// Found in review: every state-transfer try drew a new nonce and dropped
/// the replies still in flight, with a fixed timeout, so a transfer slower
/// than the timeout never completed. Tries back off, and a reply to the try
/// before still counts.
#[test]
fn a_state_transfer_slower_than_its_timeout_still_completes() {
    let mut c = Cluster::new(4);
    for s in 1..=4 {
        c.submit(&request(100, s, b"op", 4));
    }
    let stable = c.get(1).durable().stable;
    // A replica restarted without state keeps asking until 2f+1 answer.
    let mut r = amnesiac(config(4, 0), 3, bft_core::Time(5), 1);
    let mut first = None;
    while let Some(out) = r.poll_output() {
        if let bft_core::replica::Output::Send { frame, .. } = out {
            if let Ok((_, Message::StateRequest { nonce, .. })) = bft_core::wire::peek(&frame, 4) {
                first = Some(nonce);
            }
        }
    }
    let first = first.unwrap();
    // The first try times out; the second waits twice as long.
    let t1 = r.poll_timeout().unwrap();
    r.handle_timeout(t1);
    while r.poll_output().is_some() {}
    let t2 = r.poll_timeout().unwrap();
    assert!(
        t2.0 - t1.0 >= 2 * (t1.0 - 5),
        "backs off: {t1:?} then {t2:?}"
    );
    // The snapshot answering the first try arrives now, and is taken.
    let late = state_reply(
        first,
        stable.cert.clone(),
        stable.snapshot.as_ref().clone(),
        vec![],
    );
    r.handle_message(
        bft_core::Time(t1.0 + 1),
        &frame(3, Peer::Replica(0), &late, 4),
    );
    assert_eq!(r.last_executed(), 4, "{}", r.summary());
}

/// BFT-SMaRt bug: unbounded queues ran out of memory.
#[test]
fn pending_requests_are_bounded_per_client_and_in_total() {
    let mut r = replica(config(4, 1));
    for seq in 1..=100 {
        r.handle_message(bft_core::Time(1), &client_frame(&request(9, seq, b"x", 4)));
    }
    assert_eq!(r.pending_len(), PENDING_PER_CLIENT_MAX);
    assert_eq!(
        r.stats().dropped_pending_full,
        100 - PENDING_PER_CLIENT_MAX as u64
    );
    for client in 0..(PENDING_REQUESTS_MAX as u64 + 50) {
        r.handle_message(
            bft_core::Time(2),
            &client_frame(&request(1_000 + client, 1, b"", 4)),
        );
    }
    assert_eq!(r.pending_len(), PENDING_REQUESTS_MAX);
}

/// BFT-SMaRt issue: timeout-based denial of service. One replica's STOPs
/// (however many, however far ahead) cannot start a leader change.
#[test]
fn one_replica_alone_cannot_change_the_leader() {
    let mut c = Cluster::new(4);
    for t in 1..=1000u64 {
        let stop = Message::Stop { regency: t };
        for r in 0..3 {
            c.inject(r, &frame(3, Peer::Replica(r), &stop, 4));
        }
    }
    c.settle();
    for r in 0..3 {
        assert_eq!(c.get(r).regency(), 0);
        assert!(!c.get(r).is_synchronising());
        assert!(
            c.get(r).stats().dropped_out_of_bounds > 900,
            "far-future STOPs dropped"
        );
    }
    c.submit(&request(100, 1, b"op", 4));
    assert_eq!(c.get(0).last_executed(), 1, "the cluster still commits");
}

/// A leader that stops proposing is replaced, and the cluster commits again.
#[test]
fn a_mute_leader_is_replaced_by_leader_change() {
    let mut c = Cluster::new(4);
    c.submit(&request(100, 1, b"op", 4));
    c.isolated.push(0);
    c.replicas[0] = None;
    c.submit(&request(100, 2, b"op", 4));
    assert_eq!(c.get(1).last_executed(), 1);
    c.advance(Span::from_millis(300));
    assert_eq!(
        c.get(1).regency(),
        0,
        "no STOP for a request with MACs only"
    );
    c.submit(&signed(&request(100, 2, b"op", 4), 4)); // the client's retransmission
    c.advance(Span::from_millis(1_000));
    for r in 1..4 {
        assert_eq!(c.get(r).regency(), 1, "{}", c.get(r).summary());
        assert_eq!(c.get(r).last_executed(), 2);
    }
}

#[test]
fn unknown_senders_bad_macs_and_garbage_are_counted_and_dropped() {
    let mut r = replica(config(4, 0));
    let stop = Message::Stop { regency: 1 };
    let mut f = frame(1, Peer::Replica(0), &stop, 4);
    r.handle_message(bft_core::Time(1), &frame(9, Peer::Replica(0), &stop, 4));
    assert_eq!(r.stats().dropped_unknown_sender, 1);
    let last = f.len() - 1;
    f[last] ^= 1;
    r.handle_message(bft_core::Time(1), &f);
    assert_eq!(r.stats().dropped_bad_auth, 1);
    // A frame MACed for replica 2 is not valid at replica 0.
    r.handle_message(bft_core::Time(1), &frame(1, Peer::Replica(2), &stop, 4));
    assert_eq!(r.stats().dropped_bad_auth, 2);
    r.handle_message(bft_core::Time(1), &[0, 1, 0, 0, 0, 99, 1, 2]);
    assert_eq!(r.stats().dropped_undecodable, 1);
    // A request whose authenticator entry for us is wrong.
    let mut req = request(5, 1, b"op", 4);
    if let RequestAuth::Macs(m) = &mut req.auth {
        m[0][0] ^= 1;
    }
    r.handle_message(bft_core::Time(1), &client_frame(&req));
    assert_eq!(r.stats().dropped_bad_auth, 3);
    assert_eq!(r.pending_len(), 0);
}

#[test]
fn larger_clusters_commit() {
    for n in [7, 10] {
        let mut c = Cluster::new(n);
        c.submit(&request(100, 1, b"op", n));
        for r in 0..n as ReplicaId {
            assert_eq!(c.get(r).last_executed(), 1, "n={n}");
        }
    }
}

#[test]
fn a_flood_of_state_requests_is_answered_at_a_bounded_rate() {
    let mut r = replica(config(4, 0));
    let mut replies = 0;
    for k in 0..1000u64 {
        let req = Message::StateRequest {
            nonce: k,
            from: 0,
            incarnation: Incarnation::genesis(3),
        };
        r.handle_message(bft_core::Time(1 + k), &frame(3, Peer::Replica(0), &req, 4));
        while let Some(out) = r.poll_output() {
            if matches!(out, bft_core::replica::Output::Send { .. }) {
                replies += 1;
            }
        }
    }
    assert_eq!(replies, 1, "1000 requests within a few µs get one reply");
    assert_eq!(r.stats().dropped_rate_limited, 999);
}

fn stop_data(from: ReplicaId, regency: Regency, checkpoint: CheckpointCert) -> StopData {
    let mut sd = StopData {
        regency,
        from,
        incarnation: 0,
        checkpoint,
        reports: vec![],
        sig: bft_core::crypto::Signature([0; 64]),
    };
    sd.sig = crypto(Peer::Replica(from), 4).sign(&sd.sign_bytes());
    sd
}

/// A SYNC for `regency` whose STOPDATA (from `from`) report nothing above `ckpt`.
fn empty_sync(regency: Regency, ckpt: &CheckpointCert, from: &[ReplicaId]) -> Message {
    Message::Sync(SyncProof {
        regency,
        proofs: from
            .iter()
            .map(|s| stop_data(*s, regency, ckpt.clone()))
            .collect(),
        batches: vec![],
    })
}

fn sent_kinds(r: &mut Replica) -> Vec<&'static str> {
    let mut kinds = Vec::new();
    while let Some(out) = r.poll_output() {
        if let bft_core::replica::Output::Send { frame, .. } = out {
            if let Ok((_, m)) = bft_core::wire::peek(&frame, 4) {
                kinds.push(m.kind());
            }
        }
    }
    kinds
}

/// Found in review: a replica that learned a higher regency from state replies
/// entered it without its SYNC, so a Byzantine leader could propose without a
/// plan. It must install the regency and wait for (or be forwarded) the SYNC.
#[test]
fn a_regency_learned_from_state_replies_is_not_entered_without_its_sync() {
    let (mut r, nonce) = lagging_replica_with_transfer();
    let genesis = r.durable().stable.cert.clone();
    for from in [2, 3] {
        let m = Message::StateReply(StateReply {
            nonce,
            regency: 3,
            stop_floor: 3,
            checkpoint: genesis.clone(),
            snapshot: vec![],
            suffix: vec![],
            sync: None,
            incarnations: vec![],
        });
        r.handle_message(bft_core::Time(10), &frame(from, Peer::Replica(0), &m, 4));
    }
    assert_eq!(r.regency(), 3);
    assert!(r.is_synchronising(), "{}", r.summary());
    let kinds = sent_kinds(&mut r);
    assert!(
        kinds.contains(&"STOPDATA"),
        "joins the leader change: {kinds:?}"
    );
    // Replica 3 leads regency 3 and proposes without a SYNC: no vote.
    let propose = Message::Propose {
        regency: 3,
        instance: 1,
        batch: Arc::new(Batch::new(vec![request(5, 1, b"op", 4)])),
    };
    r.handle_message(bft_core::Time(11), &frame(3, Peer::Replica(0), &propose, 4));
    assert!(
        !sent_kinds(&mut r).contains(&"WRITE"),
        "no WRITE before the SYNC"
    );
    // A SYNC forwarded by another replica is as good as the leader's.
    let sync = SyncProof {
        regency: 3,
        proofs: (1..4).map(|f| stop_data(f, 3, genesis.clone())).collect(),
        batches: vec![],
    };
    let forwarded = Message::StateReply(StateReply {
        nonce,
        regency: 3,
        stop_floor: 3,
        checkpoint: genesis.clone(),
        snapshot: vec![],
        suffix: vec![],
        sync: Some(sync.clone()),
        incarnations: vec![],
    });
    r.handle_message(
        bft_core::Time(12),
        &frame(1, Peer::Replica(0), &forwarded, 4),
    );
    assert!(!r.is_synchronising(), "{}", r.summary());
    assert!(
        sent_kinds(&mut r).contains(&"WRITE"),
        "the early PROPOSE is voted now"
    );
    // A SYNC whose proofs are not a quorum is refused.
    let (mut r2, nonce2) = lagging_replica_with_transfer();
    let weak = SyncProof {
        proofs: sync.proofs[..2].to_vec(),
        ..sync
    };
    let m = Message::StateReply(StateReply {
        nonce: nonce2,
        regency: 3,
        stop_floor: 3,
        checkpoint: genesis,
        snapshot: vec![],
        suffix: vec![],
        sync: Some(weak),
        incarnations: vec![],
    });
    r2.handle_message(bft_core::Time(12), &frame(1, Peer::Replica(0), &m, 4));
    assert_ne!(r2.regency(), 3);
}

fn request_valid_at(client: ClientId, valid: &[ReplicaId]) -> Request {
    let mut req = request(client, 1, b"op", 4);
    if let RequestAuth::Macs(m) = &mut req.auth {
        for (r, mac) in m.iter_mut().enumerate() {
            if !valid.contains(&(r as ReplicaId)) {
                mac[0] ^= 0xff;
            }
        }
    }
    req
}

/// Found in review: with MAC authenticators a Byzantine client can make its
/// request valid at some replicas only. f+1 WRITEs vouch for it (one of them
/// is correct and authenticated it), so the rest follow.
#[test]
fn a_request_authenticated_by_f_plus_1_replicas_is_ordered_everywhere() {
    let mut c = Cluster::new(4);
    c.submit(&request_valid_at(100, &[0, 1]));
    for r in 0..4 {
        assert_eq!(c.get(r).last_executed(), 1, "r{r}: {}", c.get(r).summary());
    }
    // Valid at the leader alone (f = 1 replica): nobody can vouch for it.
    let mut c = Cluster::new(4);
    c.submit(&request_valid_at(100, &[0]));
    for r in 0..4 {
        assert_eq!(c.get(r).last_executed(), 0);
    }
}

/// The client table (in every snapshot) keeps results only within a byte
/// budget, evicting the oldest-executed first: the same on every replica, so
/// digests agree, and snapshots stay bounded even with large (scan) results.
#[test]
fn client_results_are_kept_within_a_deterministic_budget() {
    use bft_core::codec::{Reader, Writer};
    use bft_core::limits::CLIENT_RESULTS_BYTES_MAX;
    use bft_core::replica::ClientTable;
    let big = vec![1u8; 200 << 10];
    let (mut a, mut b) = (ClientTable::default(), ClientTable::default());
    let clients = (CLIENT_RESULTS_BYTES_MAX / big.len()) as u64 + 10;
    for c in 0..clients {
        a.record(c, 1, big.clone());
        b.record(c, 1, big.clone());
    }
    assert_eq!(a.digest(), b.digest());
    assert!(a.result(0).is_none(), "the oldest results are evicted");
    assert!(a.result(clients - 1).is_some(), "the newest are kept");
    assert_eq!(a.last_seq(0), Some(1), "but exactly-once records stay");
    let mut w = Writer::new();
    a.encode(&mut w);
    assert_eq!(w.buf.len(), a.encoded_len(), "snapshots are sized exactly");
    assert!(w.buf.len() < CLIENT_RESULTS_BYTES_MAX + 64 * 1024);
    let back = ClientTable::decode(&mut Reader::new(&w.buf)).unwrap();
    assert_eq!(back, a);
    // A replica restored from a snapshot can still answer a retransmission.
    let mut c = Cluster::new(4);
    for s in 1..=4 {
        c.submit(&request(100, s, b"op", 4));
    }
    c.replicas[2] = Some(replica(config(4, 2)));
    c.submit(&request(101, 1, b"op", 4));
    c.advance(Span::from_millis(1000));
    assert!(c.get(2).last_executed() >= 4, "{}", c.get(2).summary());
    let before = c.to_clients.len();
    c.inject(2, &client_frame(&request(100, 4, b"op", 4)));
    assert_eq!(c.to_clients.len(), before + 1, "the restored table answers");
}

/// Found in review: the network layer routed a client's replies to whichever
/// connection last *claimed* its id. Routing now follows only requests the core
/// authenticated, which this getter reports.
#[test]
fn only_an_authenticated_request_identifies_its_client() {
    let mut r = replica(config(4, 1));
    let mut forged = request(7, 1, b"op", 4);
    if let RequestAuth::Macs(m) = &mut forged.auth {
        m[1][0] ^= 1;
    }
    r.handle_message(bft_core::Time(1), &client_frame(&forged));
    assert_eq!(r.authenticated_client(), None);
    r.handle_message(bft_core::Time(1), &[1, 7, 0, 0, 0, 0, 0, 0, 0, 99]);
    assert_eq!(r.authenticated_client(), None, "a bare claim of id 7");
    r.handle_message(bft_core::Time(1), &client_frame(&request(7, 1, b"op", 4)));
    assert_eq!(r.authenticated_client(), Some(7));
    r.handle_message(
        bft_core::Time(2),
        &frame(2, Peer::Replica(1), &Message::Stop { regency: 1 }, 4),
    );
    assert_eq!(r.authenticated_client(), None, "reset by every input");
}

/// Found in review of the MAC-only leader change: a replica that could not
/// adopt a SYNC's plan at an instance (out of its window, lagging behind the
/// plan's checkpoint) must not take the leader's PROPOSE there instead, or a
/// faulty leader could make it write a value other than the plan's.
#[test]
fn a_propose_below_the_synced_plan_is_refused_even_where_the_plan_was_not_adopted() {
    let mut r = replica(config(4, 1));
    let ckpt = checkpoint_cert(8, [5; 32], &[0, 2, 3]);
    let sync = empty_sync(2, &ckpt, &[0, 2, 3]);
    r.handle_message(bft_core::Time(1), &frame(2, Peer::Replica(1), &sync, 4));
    assert_eq!(r.regency(), 2);
    sent_kinds(&mut r);
    let dropped = r.stats().dropped_invalid;
    let propose = Message::Propose {
        regency: 2,
        instance: 5,
        batch: Arc::new(Batch::new(vec![request(100, 1, b"op", 4)])),
    };
    r.handle_message(bft_core::Time(2), &frame(2, Peer::Replica(1), &propose, 4));
    assert!(!sent_kinds(&mut r).contains(&"WRITE"));
    assert_eq!(r.stats().dropped_invalid, dropped + 1);
}

/// Found in review (the write-set gap): a replica that wrote one value at an
/// instance must not write a leader's different fresh value there in a later
/// regency, or write-sets grow with regencies and had to be cut short, which
/// could leave an old accepted value without the f+1 writers it needs.
/// Control: at an instance where it wrote nothing, the same leader's fresh
/// value is written.
#[test]
fn a_replica_writes_a_fresh_value_only_where_it_wrote_nothing_else() {
    let mut r = replica(config(4, 2));
    let batch = |op: &[u8]| Arc::new(Batch::new(vec![request(100, 1, op, 4)]));
    let propose = |regency, instance, b| Message::Propose {
        regency,
        instance,
        batch: b,
    };
    r.handle_message(
        bft_core::Time(1),
        &frame(0, Peer::Replica(2), &propose(0, 1, batch(b"a")), 4),
    );
    assert!(sent_kinds(&mut r).contains(&"WRITE"));
    // Regency 1, synchronised by STOPDATA that report nothing (replica 2's
    // own report is not among them): instance 1 is left to fresh proposals.
    let genesis = checkpoint_cert(0, [0; 32], &[]);
    let sync = empty_sync(1, &genesis, &[0, 1, 3]);
    r.handle_message(bft_core::Time(2), &frame(1, Peer::Replica(2), &sync, 4));
    assert_eq!(r.regency(), 1);
    sent_kinds(&mut r);
    r.handle_message(
        bft_core::Time(3),
        &frame(1, Peer::Replica(2), &propose(1, 1, batch(b"b")), 4),
    );
    assert!(!sent_kinds(&mut r).contains(&"WRITE"));
    assert_eq!(r.stats().fresh_values_declined, 1);
    r.handle_message(
        bft_core::Time(4),
        &frame(1, Peer::Replica(2), &propose(1, 2, batch(b"c")), 4),
    );
    assert!(sent_kinds(&mut r).contains(&"WRITE"));
    assert_eq!(r.stats().fresh_values_declined, 1);
}

/// Found in review: only unstable checkpoints' votes were sent again, so a
/// replica that lost every vote for a checkpoint the others made stable
/// kept its low watermark there. The stable checkpoint's vote is re-sent too.
#[test]
fn a_replica_that_lost_every_checkpoint_vote_catches_up_on_the_resend() {
    let mut c = Cluster::new(4);
    for s in 1..=4 {
        c.offer(&request(100, s, b"op", 4));
        // Route by hand: replica 3 loses every CHECKPOINT.
        while let Some((to, f)) = c.net.pop_front() {
            let checkpoint =
                bft_core::wire::peek(&f, 4).is_ok_and(|(_, m)| m.kind() == "CHECKPOINT");
            if !(to == 3 && checkpoint) {
                c.inject(to, &f);
            }
        }
    }
    assert_eq!(c.get(0).stable_checkpoint(), 4);
    assert_eq!(c.get(3).stable_checkpoint(), 0);
    // A request only followers 1 and 2 hold: their request timer re-sends votes.
    let r = request(200, 1, b"op", 4);
    c.inject(1, &client_frame(&r));
    c.inject(2, &client_frame(&r));
    c.advance(Span::from_millis(150));
    assert_eq!(c.get(3).stable_checkpoint(), 4, "{}", c.get(3).summary());
}

/// Found in review of the per-request timer: a client whose MACs are valid
/// everywhere but at the leader left its request pending at every follower,
/// so their timers deposed a correct leader every two timeouts. The
/// followers forward it; f+1 forwards vouch for it at the leader (one of
/// them is correct and authenticated it), and it is ordered.
#[test]
fn a_request_valid_everywhere_but_at_the_leader_does_not_depose_it() {
    let mut c = Cluster::new(4);
    let req = request_valid_at(9, &[1, 2, 3]);
    c.offer(&req);
    c.settle();
    c.advance(Span::from_millis(400));
    for r in 0..4 {
        assert_eq!(c.get(r).regency(), 0, "{r}: {}", c.get(r).summary());
        assert_eq!(
            c.get(r).client_last_seq(9),
            Some(1),
            "{r}: {}",
            c.get(r).summary()
        );
    }
    // Control: one forwarder (f) does not vouch.
    let mut lone = replica(config(4, 0));
    let only = request_valid_at(10, &[1]);
    let fwd = Message::Request(only);
    lone.handle_message(bft_core::Time(1), &frame(1, Peer::Replica(0), &fwd, 4));
    assert_eq!(lone.pending_len(), 0);
    lone.handle_message(bft_core::Time(2), &frame(1, Peer::Replica(0), &fwd, 4));
    assert_eq!(lone.pending_len(), 0, "the same forwarder twice is one");
    lone.handle_message(bft_core::Time(3), &frame(2, Peer::Replica(0), &fwd, 4));
    assert_eq!(lone.pending_len(), 1, "f+1 distinct forwarders vouch");
}

/// Found in review: the first timeout forwarded pending requests in client
/// id order, so a request from a high id could stay behind newer ones and
/// never reach the leader. Forwarding takes the oldest first.
#[test]
fn the_request_timer_forwards_the_oldest_requests_first() {
    let mut r = replica(config(4, 1)); // batch_max_requests = 8
    r.handle_message(
        bft_core::Time(1),
        &client_frame(&request(900, 1, b"old", 4)),
    );
    for c in 1..=12 {
        r.handle_message(bft_core::Time(2), &client_frame(&request(c, 1, b"new", 4)));
    }
    while r.poll_output().is_some() {}
    let t = r.poll_timeout().unwrap();
    r.handle_timeout(t);
    let mut forwarded = Vec::new();
    while let Some(out) = r.poll_output() {
        if let bft_core::replica::Output::Send { frame, .. } = out {
            if let Ok((_, Message::Request(q))) = bft_core::wire::peek(&frame, 4) {
                forwarded.push(q.client);
            }
        }
    }
    assert_eq!(forwarded.len(), 8);
    assert_eq!(forwarded[0], 900, "{forwarded:?}");
}

/// Found in review: the forwarded-request table evicted the smallest key
/// when full, so one Byzantine replica's flood of junk forwards pushed out
/// the correct replicas' entries before they reached f+1. Each peer holds
/// only its share, and past it loses only its own oldest entries.
#[test]
fn a_flood_of_junk_forwards_does_not_keep_a_request_from_being_vouched() {
    let mut leader = replica(config(4, 0));
    for k in 0..5000u64 {
        let junk = Message::Request(request_valid_at(u64::MAX - k, &[3]));
        leader.handle_message(bft_core::Time(1), &frame(3, Peer::Replica(0), &junk, 4));
    }
    let x = Message::Request(request_valid_at(9, &[1, 2, 3]));
    leader.handle_message(bft_core::Time(2), &frame(1, Peer::Replica(0), &x, 4));
    for k in 0..5000u64 {
        let junk = Message::Request(request_valid_at(u64::MAX - 10_000 - k, &[3]));
        leader.handle_message(bft_core::Time(3), &frame(3, Peer::Replica(0), &junk, 4));
    }
    leader.handle_message(bft_core::Time(4), &frame(2, Peer::Replica(0), &x, 4));
    assert_eq!(
        leader.pending_len(),
        1,
        "f+1 correct forwarders vouch despite the flood"
    );
}

/// Found in review: a follower compared a proposed request with the one it
/// authenticated byte for byte, MACs included, so a Byzantine peer's copy
/// with other MACs (taken by the leader) made it wait for f+1 WRITEs. The
/// signed content decides.
#[test]
fn a_copy_of_an_authenticated_request_with_other_macs_is_written_at_once() {
    let mut f1 = replica(config(4, 1));
    let x = request(9, 1, b"op", 4);
    f1.handle_message(bft_core::Time(1), &client_frame(&x));
    while f1.poll_output().is_some() {}
    let mut other = x.clone();
    if let RequestAuth::Macs(m) = &mut other.auth {
        m[1] = [0; 32];
    }
    let propose = Message::Propose {
        regency: 0,
        instance: 1,
        batch: Arc::new(Batch::new(vec![other])),
    };
    f1.handle_message(bft_core::Time(2), &frame(0, Peer::Replica(1), &propose, 4));
    assert!(sent_kinds(&mut f1).contains(&"WRITE"));
}

/// Found in review: a request that was not among the oldest when the timer
/// forwarded them could reach its STOP without ever reaching the leader, and
/// depose a leader that would have ordered it. It is forwarded first.
#[test]
fn a_request_left_out_of_the_first_forward_is_forwarded_before_any_stop() {
    let mut c = Cluster::new(4); // batch_max_requests = 8: one forward carries 8
    for client in 1..=12 {
        c.inject(1, &client_frame(&request(client, 1, b"op", 4)));
    }
    c.net.clear(); // only replica 1 holds them
    c.advance(Span::from_millis(500));
    for r in 0..4 {
        assert_eq!(c.get(r).regency(), 0, "{r}: {}", c.get(r).summary());
    }
    for client in 1..=12 {
        assert_eq!(c.get(1).client_last_seq(client), Some(1), "client {client}");
    }
}
