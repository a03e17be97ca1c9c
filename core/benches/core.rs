//! CPU cost of the codec and of one consensus instance, without any network.

use bft_core::app::ChainApp;
use bft_core::codec::{Reader, Writer};
use bft_core::config::Config;
use bft_core::crypto::{signing_key_from_seed, Crypto, KeyedCrypto, Peer, SimCrypto};
use bft_core::message::*;
use bft_core::replica::{Output, Replica};
use bft_core::time::Time;
use bft_core::wire;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::collections::{BTreeMap, VecDeque};
use std::hint::black_box;
use std::sync::Arc;

const N: usize = 4;

fn keyed(me: Peer) -> KeyedCrypto {
    let replicas = (0..N as ReplicaId)
        .map(|r| signing_key_from_seed(1, Peer::Replica(r)).verifying_key())
        .collect();
    let clients: BTreeMap<ClientId, _> = (0..512u64)
        .map(|c| (c, signing_key_from_seed(1, Peer::Client(c)).verifying_key()))
        .collect();
    KeyedCrypto::new(me, signing_key_from_seed(1, me), replicas, clients).expect("valid keys")
}

fn crypto(me: Peer, real: bool) -> Box<dyn Crypto + Send> {
    if real {
        Box::new(keyed(me))
    } else {
        Box::new(SimCrypto::new(me, [1; 32], N))
    }
}

fn request(client: ClientId, seq: u64, real: bool) -> Request {
    let c = crypto(Peer::Client(client), real);
    let op = vec![b'x'; 100];
    let bytes = Request::auth_bytes(client, seq, Replier::All, &op);
    let macs = (0..N as ReplicaId)
        .map(|r| c.mac(Peer::Replica(r), &bytes))
        .collect();
    Request {
        client,
        seq,
        replier: Replier::All,
        op,
        auth: RequestAuth::Macs(macs),
    }
}

fn codec(c: &mut Criterion) {
    let batch = Arc::new(Batch::new((0..100).map(|i| request(i, 1, false)).collect()));
    let msg = Message::Propose {
        regency: 0,
        instance: 1,
        batch,
    };
    let mut w = Writer::new();
    encode_message(&mut w, &msg);
    let bytes = w.finish();
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Elements(100));
    g.bench_function("encode PROPOSE, 100 requests of 100 B", |b| {
        b.iter(|| {
            let mut w = Writer::new();
            encode_message(&mut w, black_box(&msg));
            w.finish()
        })
    });
    g.bench_function("decode PROPOSE, 100 requests of 100 B", |b| {
        b.iter(|| decode_message(&mut Reader::new(black_box(&bytes))).expect("valid"))
    });
    g.finish();
}

/// Four replicas in one process; frames routed in memory.
struct Cluster {
    replicas: Vec<Replica>,
    net: VecDeque<(usize, Vec<u8>)>,
}

impl Cluster {
    fn new(real: bool, batch: usize) -> Cluster {
        let replicas = (0..N as ReplicaId)
            .map(|r| {
                let mut cfg = Config::new(N, r);
                cfg.batch_max_requests = batch;
                // Wait for a full batch: one instance of exactly `batch` requests.
                cfg.batch_delay = bft_core::time::Span::from_millis(1);
                Replica::new(
                    cfg,
                    crypto(Peer::Replica(r), real),
                    Box::new(ChainApp::default()),
                    1,
                )
                .expect("valid")
            })
            .collect();
        Cluster {
            replicas,
            net: VecDeque::new(),
        }
    }

    fn pump(&mut self, now: Time) {
        loop {
            for r in self.replicas.iter_mut() {
                while let Some(out) = r.poll_output() {
                    if let Output::Send {
                        to: Peer::Replica(t),
                        frame,
                    } = out
                    {
                        self.net.push_back((t as usize, frame));
                    }
                }
            }
            let Some((to, frame)) = self.net.pop_front() else {
                return;
            };
            self.replicas[to].handle_message(now, &frame);
        }
    }
}

fn instance(c: &mut Criterion) {
    let mut g = c.benchmark_group("consensus instance (4 replicas, all CPU)");
    g.sample_size(20);
    for (real, name) in [(false, "sim crypto"), (true, "ed25519 + HMAC")] {
        for batch in [1usize, 100] {
            let reqs: Vec<Vec<u8>> = (0..batch as u64)
                .map(|i| wire::encode_body(Peer::Client(i), &Message::Request(request(i, 1, real))))
                .collect();
            g.throughput(Throughput::Elements(batch as u64));
            g.bench_function(format!("{name}, batch {batch}"), |b| {
                b.iter_batched(
                    || Cluster::new(real, batch),
                    |mut cl| {
                        for f in &reqs {
                            for r in &mut cl.replicas {
                                r.handle_message(Time(1), f);
                            }
                        }
                        cl.pump(Time(1));
                        assert_eq!(cl.replicas[0].last_executed(), 1);
                        cl
                    },
                    BatchSize::LargeInput,
                )
            });
        }
    }
    g.finish();
}

criterion_group!(benches, codec, instance);
criterion_main!(benches);
