//! The `bftbench sim` command as a user runs it.

#![allow(clippy::unwrap_used)]

use std::process::Command;

fn bftbench(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bftbench"))
        .args(args)
        .output()
        .expect("bftbench runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn seeds_print_one_summary_line_and_exit_zero() {
    let (code, out, _) = bftbench(&[
        "sim",
        "--protocol",
        "bft",
        "--replicas",
        "4",
        "--seeds",
        "1..=10",
    ]);
    assert_eq!(code, 0, "{out}");
    let last = out.lines().last().unwrap();
    assert!(last.ends_with("10 passed, 0 failed"), "{last}");
}

#[test]
fn a_failing_seed_prints_its_settings_and_replays_byte_for_byte() {
    let (code, out, _) = bftbench(&["sim", "--twins", "2", "--seeds", "1..=20"]);
    assert_eq!(code, 1);
    let line = out
        .lines()
        .find(|l| l.starts_with("SEED="))
        .expect("a failing seed");
    assert!(line.contains("twins=[0, 1]"), "{line}");
    let seed = line
        .trim_start_matches("SEED=")
        .split(' ')
        .next()
        .unwrap()
        .to_string();
    let replay = out.lines().find(|l| l.contains("replay:")).unwrap();
    assert!(
        replay.ends_with(&format!("--seed {seed} --replicas 4 --twins 2")),
        "{replay}"
    );
    let a = bftbench(&["sim", "--twins", "2", "--seed", &seed]);
    let b = bftbench(&["sim", "--twins", "2", "--seed", &seed]);
    assert_eq!(a.0, 1);
    assert_eq!(a.1, b.1, "replay is byte for byte");
    assert!(a.1.contains("violation: agreement"));
    assert!(a.1.trim_end().ends_with("0 passed, 1 failed"));
}

#[test]
fn bad_arguments_are_named() {
    let (code, _, err) = bftbench(&["sim", "--replicas", "5"]);
    assert_eq!(code, 2);
    assert!(err.contains("--replicas 5"), "{err}");
    let (code, _, err) = bftbench(&["sim", "--seeds", "9..=3"]);
    assert_eq!(code, 2);
    assert!(err.contains("--seeds"), "{err}");
}
