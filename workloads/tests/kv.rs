//! The key-value App: determinism, incremental digest, snapshots, bounds.

#![allow(clippy::unwrap_used)]

use bft_core::app::App;
use bft_core::rng::Rng;
use bft_workloads::kv::{KvApp, Status, STORE_BYTES_MAX};
use bft_workloads::op::KEY_BYTES_MAX;
use bft_workloads::{properties, Op, Workload};

/// A random mix over a small key space, so operations collide.
fn random_ops(seed: u64, n: usize) -> Vec<Op> {
    let mut rng = Rng::new(seed);
    let key = |rng: &mut Rng| format!("user{}", rng.below(40));
    let vals = |rng: &mut Rng| {
        // Names repeat within an update at times: the last value must win.
        (0..1 + rng.below(3))
            .map(|_| {
                (
                    format!("field{}", rng.below(4)),
                    vec![b'a' + rng.below(26) as u8; 1 + rng.below(20) as usize],
                )
            })
            .collect()
    };
    (0..n)
        .map(|_| match rng.below(6) {
            0 => Op::Read {
                key: key(&mut rng),
                fields: None,
            },
            1 => Op::Update {
                key: key(&mut rng),
                values: vals(&mut rng),
            },
            2 => Op::Insert {
                key: key(&mut rng),
                values: vals(&mut rng),
            },
            3 => Op::Delete { key: key(&mut rng) },
            4 => Op::Scan {
                start: key(&mut rng),
                count: 1 + rng.below(10) as u32,
                fields: None,
            },
            _ => Op::ReadModifyWrite {
                key: key(&mut rng),
                fields: Some(vec!["field0".into()]),
                values: vals(&mut rng),
            },
        })
        .collect()
}

/// A copy rebuilt from the snapshot: every record rehashed from scratch.
fn restored(app: &KvApp) -> KvApp {
    let mut copy = KvApp::new();
    copy.restore(&app.snapshot()).unwrap();
    copy
}

fn run(ops: &[Op]) -> (KvApp, Vec<Vec<u8>>) {
    let mut app = KvApp::new();
    let results = ops.iter().map(|op| app.execute(&op.encode())).collect();
    (app, results)
}

#[test]
fn the_same_operations_give_the_same_digests_and_results() {
    for seed in 0..50 {
        let ops = random_ops(seed, 300);
        let (a, ra) = run(&ops);
        let (b, rb) = run(&ops);
        assert_eq!(a.digest(), b.digest());
        assert_eq!(ra, rb);
        assert_eq!(
            a.digest(),
            restored(&a).digest(),
            "the kept digest = one recomputed from the snapshot"
        );
        // Restoring recomputes the byte count from scratch.
        let mut fresh = KvApp::new();
        fresh.restore(&a.snapshot()).unwrap();
        assert_eq!(fresh, a, "seed {seed}: incremental accounting = recomputed");
    }
}

#[test]
fn snapshot_then_restore_preserves_the_digest_and_the_data() {
    for seed in 0..30 {
        let (a, _) = run(&random_ops(seed, 300));
        let mut b = KvApp::new();
        b.restore(&a.snapshot()).unwrap();
        assert_eq!(b.digest(), a.digest());
        assert_eq!(b, a);
        assert_eq!(b.snapshot(), a.snapshot());
    }
    let mut c = KvApp::new();
    assert!(c.restore(b"\x05\x00\x00\x00garbage").is_err());
    let (a, _) = run(&random_ops(1, 100));
    let mut snap = a.snapshot();
    snap.truncate(snap.len() - 1);
    assert!(c.restore(&snap).is_err());
    assert!(c.is_empty(), "a failed restore leaves the state untouched");
}

#[test]
fn different_orders_give_different_digests() {
    // Operations that do not commute: the order shows in the state and digest.
    let w = |v: &[u8]| Op::Update {
        key: "user1".into(),
        values: vec![("field0".into(), v.to_vec())],
    };
    let ins = Op::Insert {
        key: "user1".into(),
        values: vec![("field0".into(), b"x".to_vec())],
    };
    let del = Op::Delete {
        key: "user1".into(),
    };
    let (ab, _) = run(&[ins.clone(), w(b"a"), w(b"b")]);
    let (ba, _) = run(&[ins.clone(), w(b"b"), w(b"a")]);
    assert_ne!(ab.digest(), ba.digest());
    let (id, _) = run(&[ins.clone(), del.clone()]);
    let (di, _) = run(&[del, ins.clone()]);
    assert_ne!(id.digest(), di.digest());
    // Over random sequences: a swap of two colliding writes changes the digest.
    for seed in 0..20 {
        let mut ops = random_ops(seed, 100);
        ops.push(ins.clone()); // the key exists, so both writes apply
        ops.push(w(b"first"));
        ops.push(w(b"second"));
        let (x, _) = run(&ops);
        let n = ops.len();
        ops.swap(n - 1, n - 2);
        let (y, _) = run(&ops);
        assert_ne!(x.digest(), y.digest(), "seed {seed}");
    }
}

fn status(r: &[u8]) -> u8 {
    r[0]
}

#[test]
fn ycsb_operations_behave() {
    let mut app = KvApp::new();
    let put = |k: &str, v: &[u8]| Op::Insert {
        key: k.into(),
        values: vec![("f0".into(), v.to_vec()), ("f1".into(), b"1".to_vec())],
    };
    for k in ["user3", "user1", "user2"] {
        assert_eq!(
            status(&app.execute(&put(k, b"v").encode())),
            Status::Ok as u8
        );
    }
    let read = app.execute(
        &Op::Read {
            key: "user9".into(),
            fields: None,
        }
        .encode(),
    );
    assert_eq!(status(&read), Status::NotFound as u8);
    let upd = app.execute(
        &Op::Update {
            key: "user9".into(),
            values: vec![],
        }
        .encode(),
    );
    assert_eq!(status(&upd), Status::NotFound as u8);
    // Scans walk keys in order from the start key.
    let scan = app.execute(
        &Op::Scan {
            start: "user2".into(),
            count: 5,
            fields: Some(vec!["f1".into()]),
        }
        .encode(),
    );
    assert_eq!(status(&scan), Status::Ok as u8);
    assert_eq!(scan[1], 0, "not cut");
    assert_eq!(
        u32::from_le_bytes(scan[2..6].try_into().unwrap()),
        2,
        "user2, user3"
    );
    // Read-modify-write returns the read and applies the write.
    let rmw = Op::ReadModifyWrite {
        key: "user1".into(),
        fields: None,
        values: vec![("f0".into(), b"new".to_vec())],
    };
    assert_eq!(status(&app.execute(&rmw.encode())), Status::Ok as u8);
    assert_eq!(app.get("user1").unwrap()["f0"], *b"new");
    assert_eq!(
        app.get("user1").unwrap()["f1"],
        *b"1",
        "update keeps other fields"
    );
}

#[test]
fn oversized_and_malformed_operations_are_clear_errors() {
    let mut app = KvApp::new();
    let long_key = Op::Insert {
        key: "k".repeat(KEY_BYTES_MAX + 1),
        values: vec![],
    };
    let r = app.execute(&long_key.encode());
    assert_eq!(status(&r), Status::Error as u8);
    assert!(
        String::from_utf8_lossy(&r).contains("key"),
        "{}",
        String::from_utf8_lossy(&r)
    );
    let r = app.execute(b"\x09junk");
    assert_eq!(status(&r), Status::Error as u8);
    assert!(app.is_empty());
    // The store refuses to grow past its bound, and says so.
    let big = vec![b'x'; 60 << 10];
    let mut full = None;
    for i in 0..(STORE_BYTES_MAX / big.len() + 2) {
        let r = app.execute(
            &Op::Insert {
                key: format!("user{i}"),
                values: vec![("f".into(), big.clone())],
            }
            .encode(),
        );
        if status(&r) == Status::Error as u8 {
            full = Some(String::from_utf8_lossy(&r).into_owned());
            break;
        }
    }
    assert!(full.unwrap().contains("store full"));
    assert_eq!(app.digest(), restored(&app).digest());
}

#[test]
fn a_loaded_ycsb_store_answers_the_run_phase() {
    let p = properties("a", None, &[]).unwrap();
    let mut w = Workload::new(&p, 1).unwrap();
    let mut app = KvApp::new();
    while let Some(op) = w.load_op() {
        assert_eq!(status(&app.execute(&op.encode())), Status::Ok as u8);
    }
    assert_eq!(app.len(), 1000);
    for _ in 0..2000 {
        let (op, _) = w.run_op();
        assert_eq!(
            status(&app.execute(&op.encode())),
            Status::Ok as u8,
            "{}",
            op.name()
        );
    }
    let mut e = Workload::new(&properties("e", None, &[]).unwrap(), 1).unwrap();
    let mut app = KvApp::new();
    while let Some(op) = e.load_op() {
        app.execute(&op.encode());
    }
    for _ in 0..500 {
        let (op, ins) = e.run_op();
        let r = app.execute(&op.encode());
        assert_eq!(status(&r), Status::Ok as u8);
        assert!(
            r.len() <= bft_core::limits::RESULT_BYTES_MAX,
            "a scan result fits a reply"
        );
        if let Some(k) = ins {
            e.ack_insert(k).unwrap();
        }
    }
}

/// A read result: status, field count, then each field's name and value.
fn encoded(fields: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = bft_core::codec::Writer::new();
    w.u8(Status::Ok as u8);
    w.len(fields.len());
    for (n, v) in fields {
        w.bytes(n.as_bytes());
        w.bytes(v);
    }
    w.finish()
}

/// Records are stored as their read encoding; whatever the order of
/// insertion and whether an update keeps a value's length (in place) or not
/// (re-encoded), a read returns the fields in name order, a later duplicate
/// name wins, and the digest matches one recomputed from scratch.
#[test]
fn reads_return_fields_in_name_order_after_in_place_and_resizing_updates() {
    let mut app = KvApp::new();
    let read = |app: &mut KvApp, fields: Option<Vec<String>>| {
        let op = Op::Read {
            key: "k".into(),
            fields,
        };
        app.execute(&op.encode())
    };
    let insert = Op::Insert {
        key: "k".into(),
        values: vec![
            ("f2".into(), b"cc".to_vec()),
            ("f0".into(), b"a".to_vec()),
            ("f2".into(), b"c".to_vec()),
        ],
    };
    app.execute(&insert.encode());
    assert_eq!(read(&mut app, None), encoded(&[("f0", b"a"), ("f2", b"c")]));
    let update = |app: &mut KvApp, n: &str, v: &[u8]| {
        let op = Op::Update {
            key: "k".into(),
            values: vec![(n.into(), v.to_vec())],
        };
        app.execute(&op.encode())
    };
    update(&mut app, "f2", b"z"); // same length: in place
    update(&mut app, "f0", b"longer"); // resized
    update(&mut app, "f1", b"new"); // a new field, between the others
    let all = encoded(&[("f0", b"longer"), ("f1", b"new"), ("f2", b"z")]);
    assert_eq!(read(&mut app, None), all);
    let some = read(
        &mut app,
        Some(vec!["f2".into(), "nope".into(), "f0".into()]),
    );
    assert_eq!(some, encoded(&[("f2", b"z"), ("f0", b"longer")]));
    assert_eq!(app.digest(), restored(&app).digest());
    // Several values in one update: the later of a name's two wins.
    let op = Op::Update {
        key: "k".into(),
        values: vec![
            ("f1".into(), b"x".to_vec()),
            ("f3".into(), b"q".to_vec()),
            ("f1".into(), b"yy".to_vec()),
        ],
    };
    app.execute(&op.encode());
    let all = encoded(&[("f0", b"longer"), ("f1", b"yy"), ("f2", b"z"), ("f3", b"q")]);
    assert_eq!(read(&mut app, None), all);
    assert_eq!(app.digest(), restored(&app).digest());
    let mut copy = KvApp::new();
    copy.restore(&app.snapshot()).unwrap();
    assert_eq!(read(&mut copy, None), all);
    assert_eq!(copy.digest(), app.digest());
}

/// The digest commits to every byte of the state (a SHA-256 tree over the
/// records): a value, a field name or a key changed anywhere changes it.
#[test]
fn the_digest_changes_with_any_byte_of_the_state() {
    let (app, _) = run(&random_ops(7, 300));
    let snap = app.snapshot();
    let d = app.digest();
    let mut changed = 0;
    for at in 4..snap.len() {
        let mut forged = snap.clone();
        forged[at] ^= 0x20;
        let mut other = KvApp::new();
        if other.restore(&forged).is_ok() {
            assert_ne!(other.digest(), d, "byte {at}");
            changed += 1;
        }
    }
    assert!(changed > 20, "only {changed} forged snapshots restored");
}
