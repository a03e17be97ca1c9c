//! A replica restarted without its durable state (`Replica::amnesiac`) must
//! not contradict what it sent before the crash: the rejoin rule.

#![allow(clippy::unwrap_used)]

mod support;

use bft_core::app::ChainApp;
use bft_core::crypto::{Crypto, Peer};
use bft_core::message::*;
use bft_core::replica::Replica;
use bft_core::time::Span;
use support::*;

fn stop(from: ReplicaId, to: ReplicaId, regency: Regency) -> Vec<u8> {
    frame(from, Peer::Replica(to), &Message::Stop { regency }, 4)
}

/// Found in review: a STOPDATA is a promise (every instance it does not name
/// reads as "accepted nothing" in its regency), kept because the regency is
/// durable. Replica 3 installs regency 1 and sends STOPDATA(1), which leader 1
/// holds; replicas 1 and 2 asked for regency 1 but did not install it. Replica
/// 3 restarts without state while the cluster still works in regency 0. If it
/// voted there again, leader 1 could later count its old STOPDATA, and with
/// one Byzantine replica call an instance decided in regency 0 free. Its peers
/// report their STOP floor, so it waits for regency 1.
#[test]
fn a_rejoiner_does_not_vote_below_a_regency_it_may_have_sent_stopdata_for() {
    let mut c = Cluster::new(4);
    c.submit(&request(100, 1, b"op", 4));
    // Replicas 1 and 2 time out on a request the leader never gets and ask
    // for regency 1; their STOPs reach only each other (two votes of three).
    c.isolated = vec![0, 3];
    let unseen = signed(&request(200, 1, b"op", 4), 4);
    c.inject(1, &client_frame(&unseen));
    c.inject(2, &client_frame(&unseen));
    c.advance(Span::from_millis(250));
    c.isolated.clear();
    for r in [1, 2] {
        assert_eq!(c.get(r).regency(), 0, "{}", c.get(r).summary());
        assert!(
            c.get(r).summary().contains("stop=Some(1)"),
            "{}",
            c.get(r).summary()
        );
    }
    // Replica 3 installs regency 1 and sends its STOPDATA to leader 1, who holds it.
    for from in 0..3 {
        c.inject(3, &stop(from, 3, 1));
    }
    assert_eq!(c.get(3).regency(), 1, "{}", c.get(3).summary());
    let held: Vec<(ReplicaId, Vec<u8>)> = c.net.drain(..).collect();
    assert!(held
        .iter()
        .any(|(to, f)| *to == 1
            && bft_core::wire::peek(f, 4).is_ok_and(|(_, m)| m.kind() == "STOPDATA")));

    // Replica 3 restarts without state; its peers answer its state request.
    let amnesiac = amnesiac(config(4, 3), 99, c.now, 1);
    c.replicas[3] = Some(amnesiac);
    c.collect(3);
    c.settle();

    assert_eq!(c.get(3).rejoin_regency(), Some(1), "{}", c.get(3).summary());
    let at = c.get(3).rejoin_at().unwrap();

    // The cluster goes on in regency 0, far past the rejoiner's checkpoint floor.
    for seq in 2..=30 {
        c.submit(&request(100, seq, b"op", 4));
    }
    let r3 = c.get(3);
    assert_eq!(r3.regency(), 0, "{}", r3.summary());
    assert!(r3.stable_checkpoint() >= at, "{}", r3.summary());
    assert!(
        r3.is_rejoining(),
        "votes in regency 0 again: {}",
        r3.summary()
    );

    // Regency 1 is installed after all, with the old STOPDATA counted:
    // replica 3 rejoins there and everyone agrees on what came before.
    for (to, f) in held {
        c.inject(to, &f);
    }
    c.inject(0, &stop(1, 0, 1));
    c.inject(0, &stop(2, 0, 1));
    c.settle();
    c.submit(&request(100, 31, b"op", 4));
    c.advance(Span::from_millis(500));
    // (Requests the test's client sent without waiting may have been
    // overtaken by later ones: a real client retransmits.)
    for r in 0..4 {
        let rep = c.get(r);
        assert!(rep.regency() >= 1, "{r}: {}", rep.summary());
        assert_eq!(
            c.executed_count(r),
            c.executed_count(0),
            "{r}: {}",
            rep.summary()
        );
        let last = c
            .delivered
            .iter()
            .any(|d| d.replica == r && d.executed.contains(&(100, 31)));
        assert!(last, "{r} executed the last request: {}", rep.summary());
    }
    assert!(!c.get(3).is_rejoining(), "{}", c.get(3).summary());
    assert_eq!(c.get(3).stats().rejoined, 1);
    for r in 0..3 {
        assert_eq!(
            c.get(r).incarnation_of(3),
            1,
            "{r} knows replica 3's new run"
        );
    }
    let mut by_instance = std::collections::BTreeMap::new();
    for d in &c.delivered {
        let first = by_instance.entry(d.instance).or_insert(d.digest);
        assert_eq!(*first, d.digest, "instance {} decided twice", d.instance);
    }
}

/// The STOP floor a rejoiner learns must outlive its peers' own restarts
/// from disk: it is journaled, comes back, and is reported in state replies.
#[test]
fn a_stop_floor_survives_a_restart_from_the_journal() {
    let mut r = replica(config(4, 1)).with_journal();
    let mut journal = Vec::new();
    let unseen = signed(&request(200, 1, b"op", 4), 4);
    r.handle_message(bft_core::Time(1), &client_frame(&unseen));
    while let Some(t) = r.poll_timeout().filter(|t| t.0 < 250_000_000) {
        r.handle_timeout(t);
        journal.extend(r.take_journal());
    }
    assert!(r.summary().contains("stop=Some(1)"), "{}", r.summary());
    let mut durable = bft_core::replica::genesis_durable(&ChainApp::default());
    for rec in journal {
        durable.apply(rec).unwrap();
    }
    assert_eq!(durable.stop_floor, 1);
    let mut back = Replica::recover(
        config(4, 1),
        Box::new(crypto(Peer::Replica(1), 4)),
        Box::new(ChainApp::default()),
        durable,
        8,
        bft_core::Time(300_000_000),
    )
    .unwrap();
    while back.poll_output().is_some() {}
    let ask = Message::StateRequest {
        nonce: 77,
        from: 0,
        incarnation: Incarnation::genesis(2),
    };
    back.handle_message(
        bft_core::Time(300_000_001),
        &frame(2, Peer::Replica(1), &ask, 4),
    );
    let mut floors = Vec::new();
    while let Some(out) = back.poll_output() {
        if let bft_core::replica::Output::Send { frame, .. } = out {
            if let Ok((_, Message::StateReply(rep))) = bft_core::wire::peek(&frame, 4) {
                floors.push((rep.regency, rep.stop_floor));
            }
        }
    }
    assert_eq!(floors, vec![(0, 1)], "regency 0, asked for 1");
}

/// A replica restarted without state that crashes again while rejoining
/// (from its log: `--storage disk` after the log was lost) is still rejoining
/// when it comes back: its journal says so.
#[test]
fn a_crash_while_rejoining_does_not_end_the_rejoin() {
    let fresh = || amnesiac(config(4, 2), 5, bft_core::Time(1), 1);
    let log = fresh().durable().image();
    assert!(log.contains(&bft_core::replica::DurableRecord::Rejoining(true)));
    let back = |records: Vec<bft_core::replica::DurableRecord>| {
        let mut d = bft_core::replica::genesis_durable(&ChainApp::default());
        for rec in records {
            d.apply(rec).unwrap();
        }
        Replica::recover(
            config(4, 2),
            Box::new(crypto(Peer::Replica(2), 4)),
            Box::new(ChainApp::default()),
            d,
            6,
            bft_core::Time(2),
        )
        .unwrap()
    };
    assert!(back(log.clone()).is_rejoining());
    // Control: the same log without the record comes back voting.
    let without: Vec<_> = log
        .into_iter()
        .filter(|r| !matches!(r, bft_core::replica::DurableRecord::Rejoining(_)))
        .collect();
    assert!(!back(without).is_rejoining());
}

fn signed_stop_data(from: ReplicaId, regency: Regency, incarnation: u64) -> StopData {
    let genesis = replica(config(4, 0)).durable().stable.cert;
    let mut sd = StopData {
        regency,
        from,
        incarnation,
        checkpoint: genesis,
        reports: vec![],
        sig: bft_core::crypto::Signature([0; 64]),
    };
    sd.sig = crypto(Peer::Replica(from), 4).sign(&sd.sign_bytes());
    sd
}

fn run_of(replica: ReplicaId, number: u64) -> Incarnation {
    Incarnation::signed(replica, number, 7, &crypto(Peer::Replica(replica), 4))
}

/// Found in review: a STOP or STOPDATA of a run that later lost its state
/// (and rejoined) could still be counted, and with a few such restarts a
/// SYNC could call a decided instance free. A replica that knows a later run
/// refuses a SYNC built on an earlier run's STOPDATA; one that does not yet
/// know takes it (the control), and a forged run is not learned.
#[test]
fn a_sync_built_on_a_stopdata_of_an_earlier_run_is_refused() {
    let sync = |run_of_3: u64| {
        Message::Sync(SyncProof {
            regency: 1,
            proofs: vec![
                signed_stop_data(1, 1, 0),
                signed_stop_data(2, 1, 0),
                signed_stop_data(3, 1, run_of_3),
            ],
            batches: vec![],
        })
    };
    let learn = |r: &mut Replica, inc: Incarnation| {
        let ask = Message::StateRequest {
            nonce: 5,
            from: 0,
            incarnation: inc,
        };
        r.handle_message(bft_core::Time(10), &frame(3, Peer::Replica(0), &ask, 4));
        while r.poll_output().is_some() {}
    };
    let applies = |r: &mut Replica, m: &Message| {
        r.handle_message(bft_core::Time(20), &frame(1, Peer::Replica(0), m, 4));
        while r.poll_output().is_some() {}
        r.regency() == 1 && !r.is_synchronising()
    };
    // Knows run 5 of replica 3: the SYNC resting on its run 0 is refused.
    let mut knows = replica(config(4, 0));
    learn(&mut knows, run_of(3, 5));
    assert_eq!(knows.incarnation_of(3), 5);
    assert!(!applies(&mut knows, &sync(0)), "{}", knows.summary());
    assert!(applies(&mut knows, &sync(5)), "{}", knows.summary());
    // Control: without the later run, the same SYNC is taken.
    let mut unaware = replica(config(4, 0));
    assert!(applies(&mut unaware, &sync(0)), "{}", unaware.summary());
    // A run signed by someone else is not learned.
    let mut forged = replica(config(4, 0));
    let mut fake = run_of(3, 9);
    fake.sig = crypto(Peer::Replica(2), 4).sign(&fake.sign_bytes());
    learn(&mut forged, fake);
    assert_eq!(forged.incarnation_of(3), 0);
}

/// Found in review: a run number can repeat (a clock set back), and peers
/// echo the run they just learned, so the number alone cannot tell an
/// earlier run from this one. Runs carry a random tag: a rejoiner that is
/// told of another run of its own with its number takes a higher one and
/// asks again; told of its own run, it goes on.
#[test]
fn a_rejoiner_whose_run_number_was_used_before_takes_a_higher_one() {
    let mut r = amnesiac(config(4, 3), 99, bft_core::Time(1), 5);
    let asked = |r: &mut Replica| {
        let mut runs = Vec::new();
        while let Some(out) = r.poll_output() {
            if let bft_core::replica::Output::Send { frame, .. } = out {
                if let Ok((
                    _,
                    Message::StateRequest {
                        nonce, incarnation, ..
                    },
                )) = bft_core::wire::peek(&frame, 4)
                {
                    runs.push((nonce, incarnation));
                }
            }
        }
        runs
    };
    let first = asked(&mut r);
    let (nonce, mine) = first[0].clone();
    assert_eq!(mine.number, 5);
    let genesis = r.durable().stable.cert;
    let reply = |incarnations: Vec<Incarnation>| {
        Message::StateReply(StateReply {
            nonce,
            regency: 0,
            stop_floor: 0,
            checkpoint: genesis.clone(),
            snapshot: vec![],
            suffix: vec![],
            sync: None,
            incarnations,
        })
    };
    // Its own run echoed back: nothing changes.
    r.handle_message(
        bft_core::Time(2),
        &frame(0, Peer::Replica(3), &reply(vec![mine.clone()]), 4),
    );
    assert!(asked(&mut r).is_empty());
    assert_eq!(r.incarnation_of(3), 5);
    // An earlier run with the same number (another tag): a higher number.
    let earlier = Incarnation::signed(3, 5, 1234, &crypto(Peer::Replica(3), 4));
    r.handle_message(
        bft_core::Time(3),
        &frame(1, Peer::Replica(3), &reply(vec![earlier]), 4),
    );
    assert_eq!(r.incarnation_of(3), 6);
    let again = asked(&mut r);
    assert_eq!(again.len(), 3, "asks every peer again");
    assert!(again.iter().all(|(n, inc)| *n != nonce && inc.number == 6));
}
