//! KmMR's motivation as a checked fact: a leader that sends different entries
//! to different followers makes Raft followers diverge, while the BFT replica
//! under the same behaviour stays safe. Both run deterministically in-process;
//! the adversary lives here, rewriting the leader's messages and re-MACing them
//! with the leader's own keys (what a compromised leader can do).

#![allow(clippy::unwrap_used)]

use bft_core::app::ChainApp;
use bft_core::client::{Client, ClientAuth, ClientOutput};
use bft_core::codec::Writer;
use bft_core::config::Config;
use bft_core::crypto::{Peer, SimCrypto};
use bft_core::message::*;
use bft_core::replica::{Output, Replica};
use bft_core::time::{Span, Time};
use bft_core::wire;
use bft_net::raft_engine::{RaftEngine, TICK};
use bft_net::replica_loop::Engine;
use protobuf::Message as _;
use raft::prelude::{Message as RaftMessage, MessageType};
use std::collections::VecDeque;
use std::sync::Arc;

const MASTER: [u8; 32] = [77; 32];

fn request(client: ClientId, op: &[u8], n: usize) -> Request {
    let mut c = Client::new(
        client,
        n,
        Box::new(SimCrypto::new(Peer::Client(client), MASTER, n)),
        ClientAuth::Macs,
        Span::from_millis(100),
    );
    c.submit(Time(0), op.to_vec());
    match c.poll_output() {
        Some(ClientOutput::Send { frame, .. }) => match wire::peek(&frame, n).unwrap().1 {
            Message::Request(r) => r,
            m => panic!("{m:?}"),
        },
        o => panic!("{o:?}"),
    }
}

fn encoded(req: &Request) -> Vec<u8> {
    let mut w = Writer::new();
    encode_message(&mut w, &Message::Request(req.clone()));
    w.finish()
}

/// The leader's appends to `victim` carry request `y` instead of `x`,
/// re-MACed with the leader's own keys.
fn equivocate_raft(
    frame: Vec<u8>,
    (leader, victim): (usize, usize),
    to: usize,
    (x, y): (&[u8], &[u8]),
    leader_keys: &SimCrypto,
) -> Vec<u8> {
    let Ok((Peer::Replica(from), Message::Raft(bytes))) = wire::peek(&frame, 3) else {
        return frame;
    };
    let mut m = RaftMessage::parse_from_bytes(&bytes).unwrap();
    if from as usize != leader || to != victim || m.get_msg_type() != MessageType::MsgAppend {
        return frame;
    }
    for e in m.mut_entries().iter_mut() {
        if e.data.as_ref() == x {
            e.data = y.to_vec().into();
        }
    }
    let msg = Message::Raft(m.write_to_bytes().unwrap());
    wire::encode_frame(
        Peer::Replica(leader as ReplicaId),
        Peer::Replica(victim as ReplicaId),
        &msg,
        leader_keys,
    )
}

#[test]
fn an_equivocating_raft_leader_makes_followers_diverge() {
    let n = 3;
    let mut nodes: Vec<RaftEngine> = (0..n as ReplicaId)
        .map(|r| {
            RaftEngine::new(
                r,
                n,
                Box::new(SimCrypto::new(Peer::Replica(r), MASTER, n)),
                Box::new(ChainApp::default()),
                7,
            )
            .unwrap()
        })
        .collect();
    let (x, y) = (
        request(100, b"transfer to alice", n),
        request(101, b"transfer to mallory", n),
    );
    let (xe, ye) = (encoded(&x), encoded(&y));
    let mut net: VecDeque<(usize, Vec<u8>)> = VecDeque::new();
    let mut now = Time::ZERO;
    let mut submitted = false;
    // Whoever wins the first election turns Byzantine; the higher-numbered
    // follower is the one it lies to.
    let mut roles = (usize::MAX, usize::MAX);
    let mut leader_keys = SimCrypto::new(Peer::Replica(0), MASTER, n);
    for _step in 0..400 {
        now = now + TICK;
        for node in &mut nodes {
            node.handle_timeout(now);
        }
        let elected = nodes.iter().position(|n| n.is_leader());
        if let (false, Some(leader)) = (submitted, elected) {
            roles = (leader, if leader == 2 { 1 } else { 2 });
            leader_keys = SimCrypto::new(Peer::Replica(leader as ReplicaId), MASTER, n);
            // The client sends x to every replica; only the leader proposes it.
            let f = wire::encode_body(Peer::Client(100), &Message::Request(x.clone()));
            for node in &mut nodes {
                node.handle_message(now, &f);
            }
            submitted = true;
        }
        for node in nodes.iter_mut() {
            while let Some((to, frame)) = node.poll_send() {
                if let Peer::Replica(t) = to {
                    let frame = equivocate_raft(frame, roles, t as usize, (&xe, &ye), &leader_keys);
                    net.push_back((t as usize, frame));
                }
            }
        }
        while let Some((to, frame)) = net.pop_front() {
            nodes[to].handle_message(now, &frame);
            while let Some((t, f)) = nodes[to].poll_send() {
                if let Peer::Replica(t) = t {
                    let f = equivocate_raft(f, roles, t as usize, (&xe, &ye), &leader_keys);
                    net.push_back((t as usize, f));
                }
            }
        }
        let (a, b) = followers(roles.0);
        if submitted
            && nodes[a].applied() == nodes[b].applied()
            && nodes[a].stats().requests_executed == 1
            && nodes[b].stats().requests_executed == 1
        {
            break;
        }
    }
    assert!(submitted, "a leader was elected");
    assert!(nodes[roles.0].is_leader(), "and still leads");
    let (a, b) = followers(roles.0);
    assert_eq!(
        nodes[a].applied(),
        nodes[b].applied(),
        "both followers applied the same log index"
    );
    assert_eq!(nodes[a].stats().requests_executed, 1);
    assert_eq!(nodes[b].stats().requests_executed, 1);
    assert_ne!(
        nodes[a].state_digest(),
        nodes[b].state_digest(),
        "Raft trusts its leader: followers hold different values at the same index"
    );
}

/// The two replicas of three that are not `leader`.
fn followers(leader: usize) -> (usize, usize) {
    let mut f = (0..3).filter(|&r| r != leader);
    (f.next().unwrap_or(0), f.next().unwrap_or(0))
}

#[test]
fn an_equivocating_bft_leader_cannot_make_correct_replicas_diverge() {
    let n = 4;
    let mut replicas: Vec<Replica> = (0..n as ReplicaId)
        .map(|r| {
            let mut cfg = Config::new(n, r);
            cfg.request_timeout = Span::from_millis(100);
            cfg.view_change_timeout = Span::from_millis(100);
            cfg.state_transfer_timeout = Span::from_millis(100);
            Replica::new(
                cfg,
                Box::new(SimCrypto::new(Peer::Replica(r), MASTER, n)),
                Box::new(ChainApp::default()),
                1,
            )
            .unwrap()
        })
        .collect();
    let leader_keys = SimCrypto::new(Peer::Replica(0), MASTER, n);
    let (x, y) = (
        request(100, b"transfer to alice", n),
        request(101, b"transfer to mallory", n),
    );
    // Both requests are genuine: the leader proposes x to replicas 1 and 2, y to replica 3.
    let equivocate = |frame: Vec<u8>, to: ReplicaId| -> Vec<u8> {
        match wire::peek(&frame, n) {
            Ok((
                Peer::Replica(0),
                Message::Propose {
                    regency, instance, ..
                },
            )) if to == 3 => {
                let msg = Message::Propose {
                    regency,
                    instance,
                    batch: Arc::new(Batch::new(vec![y.clone()])),
                };
                wire::encode_frame(Peer::Replica(0), Peer::Replica(3), &msg, &leader_keys)
            }
            _ => frame,
        }
    };
    let mut decided: Vec<Vec<(Instance, [u8; 32])>> = vec![Vec::new(); n];
    let mut net: VecDeque<(usize, Vec<u8>)> = VecDeque::new();
    for (c, r) in [(100, &x), (101, &y)] {
        let f = wire::encode_body(Peer::Client(c), &Message::Request(r.clone()));
        for rep in &mut replicas {
            rep.handle_message(Time(1), &f);
        }
    }
    let mut now = Time(1);
    for _round in 0..200 {
        for (i, rep) in replicas.iter_mut().enumerate() {
            while let Some(out) = rep.poll_output() {
                match out {
                    Output::Send {
                        to: Peer::Replica(t),
                        frame,
                    } => {
                        let frame = if i == 0 { equivocate(frame, t) } else { frame };
                        net.push_back((t as usize, frame));
                    }
                    Output::Deliver {
                        instance, digest, ..
                    } => decided[i].push((instance, digest)),
                    _ => {}
                }
            }
        }
        if net.is_empty() {
            now = now + Span::from_millis(50);
            for rep in &mut replicas {
                rep.handle_timeout(now);
            }
        }
        while let Some((to, f)) = net.pop_front() {
            replicas[to].handle_message(now, &f);
            let mut more = Vec::new();
            while let Some(out) = replicas[to].poll_output() {
                match out {
                    Output::Send {
                        to: Peer::Replica(t),
                        frame,
                    } => {
                        let frame = if to == 0 { equivocate(frame, t) } else { frame };
                        more.push((t as usize, frame));
                    }
                    Output::Deliver {
                        instance, digest, ..
                    } => decided[to].push((instance, digest)),
                    _ => {}
                }
            }
            net.extend(more);
        }
        if (1..n).all(|r| {
            replicas[r].client_last_seq(100).is_some() && replicas[r].client_last_seq(101).is_some()
        }) {
            break;
        }
    }
    // Correct replicas (1, 2, 3) agree at every instance any two of them decided.
    for i in 1..n {
        for j in 1..n {
            for (inst, d) in &decided[i] {
                if let Some((_, d2)) = decided[j].iter().find(|(k, _)| k == inst) {
                    assert_eq!(d, d2, "replicas {i} and {j} disagree at instance {inst}");
                }
            }
        }
    }
    assert!(!decided[1].is_empty(), "the cluster still decides");
    let digests: Vec<_> = (1..n)
        .map(|r| (replicas[r].last_executed(), replicas[r].state_digest()))
        .collect();
    for w in digests.windows(2) {
        if w[0].0 == w[1].0 {
            assert_eq!(w[0].1, w[1].1);
        }
    }
    assert!(
        replicas[1..]
            .iter()
            .all(|r| r.client_last_seq(100) == Some(x.seq)),
        "x executed, once, everywhere"
    );
}
