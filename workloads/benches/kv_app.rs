//! The key-value App's cost where the state digest is paid: per update (an
//! incremental digest re-hashes the written field) and per checkpoint (the
//! digest of the whole store, and its snapshot). YCSB records: 10 fields of
//! 100 B; stores of 1,000 records (bench default) and 30,000 (~31 MiB, near
//! STORE_BYTES_MAX).

use bft_core::app::App;
use bft_workloads::kv::KvApp;
use bft_workloads::op::Op;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;

fn key(i: usize) -> String {
    format!("user{i:012}")
}

fn store(records: usize) -> KvApp {
    let mut app = KvApp::new();
    for i in 0..records {
        let values = (0..10)
            .map(|f| (format!("field{f}"), vec![(i + f) as u8; 100]))
            .collect();
        let op = Op::Insert {
            key: key(i),
            values,
        }
        .encode();
        app.execute(&op);
    }
    app
}

fn kv_app(c: &mut Criterion) {
    let mut g = c.benchmark_group("kv_app");
    let mut app = store(1_000);
    let updates: Vec<Vec<u8>> = (0..1_000)
        .map(|i| {
            let values = vec![(format!("field{}", i % 10), vec![i as u8; 100])];
            Op::Update {
                key: key(i),
                values,
            }
            .encode()
        })
        .collect();
    g.throughput(Throughput::Elements(updates.len() as u64));
    g.bench_function("update one field (1,000 updates)", |b| {
        b.iter(|| {
            for op in &updates {
                black_box(app.execute(op));
            }
        })
    });
    g.throughput(Throughput::Elements(1));
    // The alternative kept per update: one LtHash16 element (Lewi et al.,
    // 1024 lanes of 16 bits), 2 KiB of SHA-256 output in counter mode added
    // lane-wise; an update removes the old field's and adds the new one's.
    let mut lanes = [0u16; 1024];
    g.bench_function("lthash16 element (reference)", |b| {
        b.iter(|| {
            let seed = bft_core::crypto::hash(black_box(b"user000000000001 field3 value"));
            for (block, chunk) in lanes.chunks_mut(16).enumerate() {
                let out = bft_core::crypto::hash_parts(&[&seed, &(block as u64).to_le_bytes()]);
                for (l, pair) in chunk.iter_mut().zip(out.chunks(2)) {
                    *l = l.wrapping_add(u16::from_le_bytes([pair[0], pair[1]]));
                }
            }
            black_box(&lanes);
        })
    });
    for records in [1_000, 30_000] {
        let app = store(records);
        g.bench_function(format!("digest, {records} records"), |b| {
            b.iter(|| black_box(app.digest()))
        });
        g.bench_function(format!("snapshot, {records} records"), |b| {
            b.iter(|| black_box(app.snapshot()))
        });
    }
    g.finish();
}

criterion_group!(benches, kv_app);
criterion_main!(benches);
