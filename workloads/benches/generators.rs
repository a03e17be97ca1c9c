//! Generator throughput: keys per second per core. A load generator must never
//! be limited by these (target: > 10 M zipfian keys per second).

use bft_core::rng::Rng;
use bft_workloads::generators::{ScrambledZipfian, Zipfian};
use bft_workloads::keys::KeyNamer;
use bft_workloads::{properties, Workload};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;

const BATCH: u64 = 10_000;

fn generators(c: &mut Criterion) {
    let mut g = c.benchmark_group("generators");
    g.throughput(Throughput::Elements(BATCH));
    let mut rng = Rng::new(1);
    let mut z = Zipfian::new(0, 999_999);
    g.bench_function("zipfian keynum", |b| {
        b.iter(|| (0..BATCH).fold(0u64, |acc, _| acc ^ z.next(&mut rng)))
    });
    let mut s = ScrambledZipfian::new(0, 999_999);
    g.bench_function("scrambled zipfian keynum", |b| {
        b.iter(|| (0..BATCH).fold(0u64, |acc, _| acc ^ s.next(&mut rng)))
    });
    let namer = KeyNamer {
        hashed: true,
        zero_padding: 1,
    };
    let mut name = String::with_capacity(32);
    g.bench_function("scrambled zipfian key name", |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                name.clear();
                namer.write(s.next(&mut rng), &mut name);
                black_box(&name);
            }
        })
    });
    let mut w = Workload::new(&properties("a", None, &[]).expect("workload a"), 1).expect("valid");
    g.bench_function("workload a keynum (choose + redraw)", |b| {
        b.iter(|| (0..BATCH).fold(0u64, |acc, _| acc ^ w.next_keynum()))
    });
    g.bench_function("workload a full operation (key, fields, values)", |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                black_box(w.run_op());
            }
        })
    });
    g.finish();
}

criterion_group!(benches, generators);
criterion_main!(benches);
