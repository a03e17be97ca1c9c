//! Per-signature cost of ed25519 verification: one by one (ed25519-dalek's
//! strict check, ed25519-zebra's ZIP-215 check) against batches of 8, 64 and
//! 256 through `verify_pool::verify_all`, on one thread and with workers; and
//! what a client pays to sign one request. Together they bound signed-request
//! throughput: every operation costs one signature and n verifications.

use bft_core::crypto::{signing_key_from_seed, Peer};
use bft_core::message::{Message, Replier, Request, RequestAuth};
use bft_core::preverify::PreVerified;
use bft_core::wire::encode_frame;
use bft_net::verify_pool::{verify_all, BatchVerifier, KeyTable};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ed25519_dalek::Signer as _;
use ed25519_zebra::batch::Item;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;

const KEYS: u64 = 256;

fn signed(i: u64) -> (ed25519_dalek::VerifyingKey, Vec<u8>, [u8; 64]) {
    let key = signing_key_from_seed(3, Peer::Client(i % KEYS));
    let msg = Request::auth_bytes(i % KEYS, i, Replier::All, &[b'x'; 100]);
    let sig = key.sign(&msg).to_bytes();
    (key.verifying_key(), msg, sig)
}

fn items(n: u64) -> Vec<Item> {
    (0..n)
        .map(|i| {
            let (k, msg, sig) = signed(i);
            let vk: ed25519_zebra::VerificationKeyBytes = k.to_bytes().into();
            Item::from((vk, ed25519_zebra::Signature::from_bytes(&sig), &msg))
        })
        .collect()
}

fn single(c: &mut Criterion) {
    let (k, msg, sig) = signed(1);
    let mut g = c.benchmark_group("verify_single");
    g.throughput(Throughput::Elements(1));
    let dalek = ed25519_dalek::Signature::from_bytes(&sig);
    g.bench_function("dalek_strict", |b| {
        b.iter(|| k.verify_strict(black_box(&msg), &dalek).is_ok())
    });
    let zk = ed25519_zebra::VerificationKey::try_from(k.to_bytes()).expect("key");
    let zs = ed25519_zebra::Signature::from_bytes(&sig);
    g.bench_function("zebra_zip215", |b| {
        b.iter(|| zk.verify(&zs, black_box(&msg)).is_ok())
    });
    g.finish();
}

fn sign(c: &mut Criterion) {
    let key = signing_key_from_seed(3, Peer::Client(1));
    let msg = Request::auth_bytes(1, 1, Replier::All, &[b'x'; 100]);
    let mut g = c.benchmark_group("sign");
    g.throughput(Throughput::Elements(1));
    g.bench_function("request", |b| b.iter(|| key.sign(black_box(&msg))));
    g.finish();
}

fn batched(c: &mut Criterion) {
    let mut g = c.benchmark_group("verify_batch");
    for n in [8u64, 64, 256] {
        let it = items(n);
        g.throughput(Throughput::Elements(n));
        g.bench_function(format!("{n}"), |b| {
            b.iter(|| assert!(verify_all(black_box(&it)).iter().all(|v| *v)))
        });
    }
    g.finish();
}

/// The whole pre-check of a turn: decoding frames, batch verification on the
/// calling thread or split across workers, recording fingerprints.
fn precheck(c: &mut Criterion) {
    let replicas: Vec<_> = (0..4)
        .map(|r| signing_key_from_seed(3, Peer::Replica(r)).verifying_key())
        .collect();
    let clients: BTreeMap<_, _> = (0..KEYS)
        .map(|c| (c, signing_key_from_seed(3, Peer::Client(c)).verifying_key()))
        .collect();
    let sim = bft_core::crypto::SimCrypto::new(Peer::Client(0), [0; 32], 4);
    let frames: Vec<Vec<u8>> = (0..256u64)
        .map(|i| {
            let (_, _, sig) = signed(i);
            let req = Message::Request(Request {
                client: i % KEYS,
                seq: i,
                replier: Replier::All,
                op: vec![b'x'; 100],
                auth: RequestAuth::Signature(bft_core::crypto::Signature(sig)),
            });
            encode_frame(Peer::Client(i % KEYS), Peer::Replica(0), &req, &sim)
        })
        .collect();
    let mut g = c.benchmark_group("precheck_256_signed_requests");
    g.throughput(Throughput::Elements(256));
    for threads in [0usize, 1] {
        let set = Arc::new(PreVerified::default());
        let mut v = BatchVerifier::with_keys(KeyTable::new(&replicas, &clients), set, threads)
            .expect("pool");
        g.bench_function(format!("{threads}_workers"), |b| {
            b.iter(|| {
                v.precheck(frames.iter().map(Vec::as_slice));
                v.end_turn();
            })
        });
    }
    g.finish();
}

criterion_group!(benches, single, sign, batched, precheck);
criterion_main!(benches);
