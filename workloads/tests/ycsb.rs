//! YCSB conformance: Java's vectors, and distributions checked against values
//! derived from the formulas (derivations in the comments).

#![allow(clippy::unwrap_used)]

use bft_core::rng::Rng;
use bft_workloads::generators::*;
use bft_workloads::keys::{fnvhash64, KeyNamer};
use bft_workloads::{properties, Op, Workload};
use std::collections::BTreeMap;

fn workload(name: &str, overrides: &[&str], seed: u64) -> Workload {
    let o: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    Workload::new(&properties(name, None, &o).unwrap(), seed).unwrap()
}

/// Draws for fixed u, computed independently (Python, from YCSB's formulas:
/// uz = u·ζn; uz < 1 → 0; uz < 1 + 0.5^θ → 1; else ⌊n·(η·u − η + 1)^(1/(1−θ))⌋).
#[test]
fn zipfian_draws_for_fixed_u_match_the_formulas() {
    let us = [0.01, 0.04, 0.06, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99];
    let mut z = Zipfian::new(0, 999);
    let got: Vec<u64> = us.iter().map(|u| z.next_with_u(*u, 1000)).collect();
    assert_eq!(got, [0, 0, 0, 0, 3, 22, 151, 471, 927]);
    // The item count grows to 2000: ζ extended incrementally; η keeps Java's
    // use of the constructor's item count.
    let got: Vec<u64> = us.iter().map(|u| z.next_with_u(*u, 2000)).collect();
    assert_eq!(got, [0, 0, 0, 0, 7, 47, 315, 958, 1858]);
    // The inner generator of ScrambledZipfian: 10^10 + 1 items, ζ = 26.469….
    let mut inner = Zipfian::with_zetan(0, SCRAMBLED_ITEM_COUNT, ZIPFIAN_CONSTANT, SCRAMBLED_ZETAN);
    let got: Vec<u64> = us
        .iter()
        .map(|u| inner.next_with_u(*u, SCRAMBLED_ITEM_COUNT + 1))
        .collect();
    assert_eq!(
        got,
        [
            0,
            1,
            2,
            6,
            296,
            134_552,
            42_924_421,
            1_170_869_537,
            8_086_205_587
        ]
    );
}

/// P(rank ≤ k) under Gray's algorithm, for k ≥ 1: rank ≤ k iff
/// n·(η·u − η + 1)^α < k + 1 iff u < (((k+1)/n)^(1/α) − 1 + η)/η (with the two
/// first branches continuous at the boundary, which the vectors above confirm).
fn gray_cdf(k: u64, n: f64, zetan: f64) -> f64 {
    let theta = ZIPFIAN_CONSTANT;
    let alpha = 1.0 / (1.0 - theta);
    let eta = (1.0 - (2.0 / n).powf(1.0 - theta)) / (1.0 - zeta(2, theta) / zetan);
    match k {
        0 => 1.0 / zetan,
        1 => (1.0 + 0.5f64.powf(theta)) / zetan,
        _ => ((((k + 1) as f64) / n).powf(1.0 / alpha) - 1.0 + eta) / eta,
    }
}

/// Zipfian over 1000 items: the hottest item's share is 1/ζ(1000) = 0.1294,
/// and the top 1% (10 items) get gray_cdf(9) = 0.398 (exact Zipf would give
/// ζ(10)/ζ(1000) = 0.375; Gray's approximation is what YCSB runs).
#[test]
fn zipfian_hottest_and_top_percent_shares() {
    let n = 1000u64;
    let zetan = zeta(n, ZIPFIAN_CONSTANT);
    let (hot, top1) = (gray_cdf(0, n as f64, zetan), gray_cdf(9, n as f64, zetan));
    assert!(
        (hot - 0.1294).abs() < 1e-3 && (top1 - 0.398).abs() < 2e-3,
        "{hot} {top1}"
    );
    let mut z = Zipfian::new(0, n - 1);
    let mut rng = Rng::new(5);
    let draws = 400_000;
    let mut counts = vec![0u64; n as usize];
    for _ in 0..draws {
        counts[z.next(&mut rng) as usize] += 1;
    }
    let share = |c: u64| c as f64 / draws as f64;
    assert!(
        (share(counts[0]) - hot).abs() < 0.003,
        "{}",
        share(counts[0])
    );
    let top: u64 = counts[..10].iter().sum();
    assert!((share(top) - top1).abs() < 0.004, "{}", share(top));
}

/// requestdistribution=zipfian over 1000 records (workload C: no inserts, so
/// the scrambled key space is 1001 keys and key 1000 is redrawn).
/// Expected share of key K = Σ_{inner ranks r ↦ K} P(r) / (1 − P(key 1000)),
/// with P(r) exact from gray_cdf for r < 200 000 and the remaining mass spread
/// evenly over the 1001 keys (the hash scatters the tail).
#[test]
fn scrambled_zipfian_matches_the_derived_key_shares() {
    let (n, keys) = (SCRAMBLED_ITEM_COUNT as f64 + 1.0, 1001u64);
    let exact = 200_000u64;
    let mut expected = vec![0f64; keys as usize];
    let mut prev = 0.0;
    for r in 0..exact {
        let c = gray_cdf(r, n, SCRAMBLED_ZETAN);
        expected[(fnvhash64(r as i64) % keys as i64) as usize] += c - prev;
        prev = c;
    }
    for e in &mut expected {
        *e += (1.0 - prev) / keys as f64;
    }
    let redraw = 1.0 - expected[1000];
    let expected: Vec<f64> = expected[..1000].iter().map(|e| e / redraw).collect();
    let mut w = workload("c", &[], 9);
    let draws = 300_000;
    let mut counts = vec![0u64; 1000];
    for _ in 0..draws {
        counts[w.next_keynum() as usize] += 1;
    }
    let mut order: Vec<usize> = (0..1000).collect();
    order.sort_by(|a, b| expected[*b].total_cmp(&expected[*a]));
    let hottest = order[0];
    let got = counts[hottest] as f64 / draws as f64;
    assert!(
        (got - expected[hottest]).abs() < 0.003,
        "hottest {got} vs {}",
        expected[hottest]
    );
    let top10_expected: f64 = order[..10].iter().map(|k| expected[*k]).sum();
    let top10_got = order[..10].iter().map(|k| counts[*k]).sum::<u64>() as f64 / draws as f64;
    assert!(
        (top10_got - top10_expected).abs() < 0.006,
        "{top10_got} vs {top10_expected}"
    );
    assert!(
        expected[hottest] > 0.035,
        "the hottest inner rank alone is 1/ζ = 3.78%"
    );
}

fn op_counts(w: &mut Workload, ops: usize) -> BTreeMap<&'static str, usize> {
    let mut c = BTreeMap::new();
    for _ in 0..ops {
        let (op, ins) = w.run_op();
        *c.entry(op.name()).or_default() += 1;
        if let Some(k) = ins {
            w.ack_insert(k).unwrap();
        }
    }
    c
}

#[test]
fn core_workload_proportions_hold() {
    let cases: [(&str, &[(&str, f64)]); 6] = [
        ("a", &[("READ", 0.5), ("UPDATE", 0.5)]),
        ("b", &[("READ", 0.95), ("UPDATE", 0.05)]),
        ("c", &[("READ", 1.0)]),
        ("d", &[("READ", 0.95), ("INSERT", 0.05)]),
        ("e", &[("SCAN", 0.95), ("INSERT", 0.05)]),
        ("f", &[("READ", 0.5), ("READ-MODIFY-WRITE", 0.5)]),
    ];
    let ops = 40_000;
    for (name, want) in cases {
        let c = op_counts(&mut workload(name, &[], 1), ops);
        assert_eq!(c.len(), want.len(), "{name}: {c:?}");
        for (op, p) in want {
            let got = c[op] as f64 / ops as f64;
            assert!((got - p).abs() < 0.01, "workload {name}: {op} {got} vs {p}");
        }
    }
}

#[test]
fn latest_favours_the_newest_inserts() {
    // SkewedLatest = last − zipfian(last): the newest key is drawn with
    // probability P(zipfian = 0) = 1/ζ(last) ≈ 0.129 at ~1000 keys.
    let mut w = workload("d", &["insertorder=ordered"], 3);
    let (mut reads, mut newest, mut newest_1pct) = (0u64, 0u64, 0u64);
    for _ in 0..50_000 {
        let last = w.last_inserted();
        let (op, ins) = w.run_op();
        if let Op::Read { key, .. } = &op {
            let k: u64 = key[4..].parse().unwrap();
            assert!(k <= last, "reads follow acknowledged inserts only");
            reads += 1;
            newest += (k == last) as u64;
            newest_1pct += (k + last / 100 >= last) as u64;
        }
        if let Some(k) = ins {
            w.ack_insert(k).unwrap();
        }
    }
    let p_newest = newest as f64 / reads as f64;
    let expect = 1.0 / zeta(w.last_inserted(), ZIPFIAN_CONSTANT);
    assert!((p_newest - expect).abs() < 0.01, "{p_newest} vs {expect}");
    assert!(
        newest_1pct as f64 / reads as f64 > 0.35,
        "the newest 1% get a large share"
    );
}

#[test]
fn unacknowledged_inserts_are_never_read() {
    let mut w = workload(
        "d",
        &[
            "insertorder=ordered",
            "insertproportion=0.5",
            "readproportion=0.5",
        ],
        4,
    );
    let mut held = Vec::new();
    for _ in 0..2_000 {
        let (op, ins) = w.run_op();
        if let Some(k) = ins {
            held.push(k); // never acknowledged
        }
        if let Op::Read { key, .. } = op {
            let k: u64 = key[4..].parse().unwrap();
            assert!(k < 1000, "read of unacknowledged key {k}");
        }
    }
    assert!(held.len() > 900);
    assert_eq!(w.last_inserted(), 999, "nothing acknowledged yet");
    let n = held.len() as u64;
    for k in held.into_iter().rev() {
        w.ack_insert(k).unwrap(); // out of order: the limit moves only when contiguous
    }
    assert_eq!(w.last_inserted(), 999 + n);
}

#[test]
fn hotspot_sends_80_percent_to_the_hot_20_percent() {
    let mut w = workload(
        "a",
        &["requestdistribution=hotspot", "insertorder=ordered"],
        5,
    );
    let draws = 100_000;
    let hot = (0..draws).filter(|_| w.next_keynum() < 200).count();
    let share = hot as f64 / draws as f64;
    assert!((share - 0.8).abs() < 0.006, "{share}");
}

#[test]
fn other_distributions_stay_in_range() {
    for dist in ["uniform", "sequential", "exponential"] {
        let mut w = workload("a", &[&format!("requestdistribution={dist}")], 6);
        let ks: Vec<u64> = (0..5000).map(|_| w.next_keynum()).collect();
        assert!(ks.iter().all(|k| *k < 1000), "{dist}");
        assert!(
            ks.iter().collect::<std::collections::BTreeSet<_>>().len() > 50,
            "{dist} spreads"
        );
    }
    let mut w = workload("a", &["requestdistribution=sequential"], 6);
    let ks: Vec<u64> = (0..3).map(|_| w.next_keynum()).collect();
    assert_eq!(ks, [0, 1, 2]);
}

#[test]
fn load_phase_inserts_every_record_once_in_order() {
    let mut w = workload(
        "a",
        &[
            "insertstart=100",
            "insertcount=50",
            "fieldcount=3",
            "fieldlength=7",
        ],
        1,
    );
    let ops: Vec<Op> = std::iter::from_fn(|| w.load_op()).collect();
    assert_eq!(ops.len(), 50);
    let namer = KeyNamer {
        hashed: true,
        zero_padding: 1,
    };
    for (i, op) in ops.iter().enumerate() {
        match op {
            Op::Insert { key, values } => {
                assert_eq!(*key, namer.name(100 + i as u64));
                assert_eq!(values.len(), 3);
                assert!(values
                    .iter()
                    .all(|(n, v)| n.starts_with("field") && v.len() == 7));
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn scans_and_field_choices_follow_the_properties() {
    let mut w = workload("e", &["readallfields=false"], 2);
    for _ in 0..2000 {
        if let (Op::Scan { count, fields, .. }, _) = w.run_op() {
            assert!((1..=100).contains(&count));
            assert_eq!(fields.unwrap().len(), 1);
        }
    }
    let mut w = workload("a", &["writeallfields=true"], 2);
    for _ in 0..200 {
        if let (Op::Update { values, .. }, _) = w.run_op() {
            assert_eq!(values.len(), 10);
        }
    }
}

#[test]
fn bad_properties_are_named() {
    let err = |text: &str| {
        Workload::new(&properties("x", Some(text), &[]).unwrap(), 1)
            .unwrap_err()
            .to_string()
    };
    let base = "recordcount=10\noperationcount=10\n";
    assert!(err(&format!("{base}requestdistribution=pareto\n"))
        .contains("x line 3: requestdistribution = `pareto`"));
    assert!(err(&format!("{base}fieldlengthdistribution=histogram\n")).contains("histogram"));
    assert!(err(&format!("{base}fieldcount=0\n")).contains("fieldcount"));
    assert!(err(&format!("{base}readproportion=0\nupdateproportion=0\n")).contains("proportion"));
    let e = properties("x", Some("recordcount=1\nbogus=2\n"), &[])
        .unwrap_err()
        .to_string();
    assert_eq!(e, "x line 2: unknown property `bogus`");
    let e = properties("a", None, &["readproportion".to_string()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("-p override"), "{e}");
}

#[test]
fn data_integrity_values_are_deterministic() {
    use bft_workloads::workload::deterministic_value;
    let v = deterministic_value("user1", "field0", 40);
    assert_eq!(v.len(), 40);
    assert!(v.starts_with(b"user1:field0:"));
    assert_eq!(v, deterministic_value("user1", "field0", 40));
    assert_ne!(v, deterministic_value("user2", "field0", 40));
}
