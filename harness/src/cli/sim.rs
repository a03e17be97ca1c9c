//! `bftbench sim`: run seeds of the deterministic simulator and report.

use crate::sim::{self, CryptoKind, SimApp, SimOptions};
use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use std::io::Write;
use std::ops::RangeInclusive;
use std::time::Instant;

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Protocol {
    Bft,
    Raft,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum CryptoArg {
    Sim,
    Ed25519,
}

#[derive(Args, Debug)]
pub struct SimArgs {
    #[arg(long, value_enum, default_value = "bft")]
    pub protocol: Protocol,
    /// Number of replicas (n = 3f+1).
    #[arg(long, default_value_t = 4)]
    pub replicas: usize,
    /// Seeds to run: `N`, `A..B` or `A..=B`.
    #[arg(long, default_value = "1..=100", conflicts_with = "seed")]
    pub seeds: String,
    /// Replay one seed, printing its full report.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Run K replicas as twins (two copies under one identity).
    #[arg(long, default_value_t = 0)]
    pub twins: usize,
    /// Mutate one Byzantine replica's messages (small-scope: ±1, payload, drop); with --equivocate, the equivocating leader's
    #[arg(long)]
    pub mutate: bool,
    /// The leader tells the upper half of its followers another story (BFT:
    /// replica 0 reorders its batches; Raft: the first leader alters entries).
    #[arg(long)]
    pub equivocate: bool,
    /// Crash K replicas (restarted before the heal).
    #[arg(long, default_value_t = 0)]
    pub crash: usize,
    /// Crash them at the same instant.
    #[arg(long)]
    pub crash_together: bool,
    /// Crashed BFT replicas restart without their durable state (memory
    /// storage) and rejoin under the amnesia rule.
    #[arg(long)]
    pub amnesia: bool,
    /// No loss, duplication, reordering or partitions.
    #[arg(long)]
    pub no_network_faults: bool,
    /// The App: `chain` (a hash chain of the operations) or `kv` (the
    /// key-value App under YCSB's operations).
    #[arg(long, default_value = "chain", value_parser = ["chain", "kv"])]
    pub app: String,
    #[arg(long, default_value_t = 6)]
    pub clients: usize,
    /// Byzantine clients beside the honest ones: MACs good at some replicas
    /// only, replays, two requests under one number, floods (BFT only).
    #[arg(long, default_value_t = 0)]
    pub byzantine_clients: usize,
    /// Replica 0 leads slowly, censors a client, or proposes stale or few
    /// requests (drawn per seed); reports throughput against the same
    /// seeds without it (BFT only).
    #[arg(long)]
    pub slow_leader: bool,
    /// Requests each client submits (closed loop).
    #[arg(long, default_value_t = 20)]
    pub requests: u64,
    /// Batch size (default: drawn per seed).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Pipeline depth W (default: drawn per seed from 1..=4).
    #[arg(long)]
    pub pipeline: Option<u64>,
    /// Checkpoint interval K (default: drawn per seed).
    #[arg(long)]
    pub checkpoint_interval: Option<u64>,
    #[arg(long, value_enum, default_value = "sim")]
    pub crypto: CryptoArg,
    /// Print every delivered message (with --seed).
    #[arg(long)]
    pub trace: bool,
}

pub fn parse_seeds(s: &str) -> anyhow::Result<RangeInclusive<u64>> {
    let num = |x: &str| {
        x.trim()
            .parse::<u64>()
            .with_context(|| format!("--seeds: `{x}` is not a number"))
    };
    let r = if let Some((a, b)) = s.split_once("..=") {
        num(a)?..=num(b)?
    } else if let Some((a, b)) = s.split_once("..") {
        let b = num(b)?;
        if b == 0 {
            bail!("--seeds: empty range `{s}`");
        }
        num(a)?..=b - 1
    } else {
        let n = num(s)?;
        n..=n
    };
    if r.is_empty() {
        bail!("--seeds: empty range `{s}`");
    }
    Ok(r)
}

impl SimArgs {
    /// The flags that, with `--seed N`, replay a run exactly.
    fn replay_flags(&self) -> String {
        let mut f = format!("--replicas {}", self.replicas);
        if self.protocol == Protocol::Raft {
            f += " --protocol raft";
        }
        let opt =
            |name: &str, v: Option<String>| v.map(|v| format!(" --{name} {v}")).unwrap_or_default();
        f += &opt("twins", (self.twins > 0).then(|| self.twins.to_string()));
        f += &opt("crash", (self.crash > 0).then(|| self.crash.to_string()));
        f += &opt(
            "clients",
            (self.clients != 6).then(|| self.clients.to_string()),
        );
        f += &opt(
            "byzantine-clients",
            (self.byzantine_clients > 0).then(|| self.byzantine_clients.to_string()),
        );
        f += &opt(
            "requests",
            (self.requests != 20).then(|| self.requests.to_string()),
        );
        f += &opt("batch", self.batch.map(|v| v.to_string()));
        f += &opt("pipeline", self.pipeline.map(|v| v.to_string()));
        f += &opt(
            "checkpoint-interval",
            self.checkpoint_interval.map(|v| v.to_string()),
        );
        f += &opt(
            "crypto",
            (self.crypto == CryptoArg::Ed25519).then(|| "ed25519".to_string()),
        );
        for (set, flag) in [
            (self.app == "kv", " --app kv"),
            (self.mutate, " --mutate"),
            (self.equivocate, " --equivocate"),
            (self.crash_together, " --crash-together"),
            (self.amnesia, " --amnesia"),
            (self.slow_leader, " --slow-leader"),
            (self.no_network_faults, " --no-network-faults"),
        ] {
            if set {
                f += flag;
            }
        }
        f
    }

    fn options(&self) -> anyhow::Result<SimOptions> {
        let raft = self.protocol == Protocol::Raft;
        if raft && (self.twins > 0 || self.mutate) {
            bail!("--protocol raft: Raft tolerates crashes, not lies, so --twins and --mutate do not apply (harness/tests/byzantine_leader.rs shows what an equivocating leader does to it)");
        }
        if raft && !(3..=64).contains(&self.replicas) {
            bail!("--replicas {}: Raft needs 3 to 64 replicas", self.replicas);
        }
        if !raft && (self.replicas < 4 || (self.replicas - 1) % 3 != 0 || self.replicas > 64) {
            bail!(
                "--replicas {}: BFT needs n = 3f+1 (4, 7, 10, …, ≤ 64)",
                self.replicas
            );
        }
        if self.twins + self.crash > self.replicas {
            bail!(
                "--twins {} plus --crash {} exceed --replicas {}",
                self.twins,
                self.crash,
                self.replicas
            );
        }
        if self.clients == 0 || self.requests == 0 {
            bail!("--clients and --requests must be positive");
        }
        if self.amnesia && (raft || self.crash == 0) {
            bail!("--amnesia: BFT replicas that --crash lose their state; give --crash K (Raft's log is always kept)");
        }
        if self.slow_leader && (raft || self.twins > 0 || self.mutate || self.equivocate) {
            bail!("--slow-leader: one Byzantine replica (replica 0) in BFT; drop --twins, --mutate and --equivocate");
        }
        if raft && self.byzantine_clients > 0 {
            bail!("--byzantine-clients: Raft trusts its clients' requests; the attack is on BFT's MAC authenticators");
        }
        if self.byzantine_clients > 64 {
            bail!("--byzantine-clients {}: at most 64", self.byzantine_clients);
        }
        if self.equivocate && self.twins > 0 {
            bail!("--equivocate: one Byzantine replica at a time; drop --twins");
        }
        Ok(SimOptions {
            raft,
            equivocate: self.equivocate,
            replicas: self.replicas,
            twins: self.twins,
            mutate: self.mutate,
            crash: self.crash,
            crash_together: self.crash_together,
            amnesia: self.amnesia,
            amnesia_without_rule: false,
            no_strikes: false,
            slow_leader: self.slow_leader,
            no_pace: false,
            lossy_journal_for_tests: false,
            network_faults: !self.no_network_faults,
            clients: self.clients,
            byzantine_clients: self.byzantine_clients,
            requests_per_client: self.requests,
            batch: self.batch,
            pipeline: self.pipeline,
            checkpoint_interval: self.checkpoint_interval,
            crypto: match self.crypto {
                CryptoArg::Sim => CryptoKind::Sim,
                CryptoArg::Ed25519 => CryptoKind::Ed25519,
            },
            broken_quorum: None,
            trace: self.trace,
            app: if self.app == "kv" {
                SimApp::Kv
            } else {
                SimApp::Chain
            },
        })
    }
}

/// Runs the seeds; the exit status is 0 only when every seed passed.
pub fn run(args: SimArgs) -> anyhow::Result<i32> {
    let opts = args.options()?;
    let mut out = std::io::stdout().lock();
    if let Some(seed) = args.seed {
        let r = sim::run(seed, &opts);
        writeln!(out, "{}", r.report())?;
        let (p, f) = if r.passed() { (1, 0) } else { (0, 1) };
        writeln!(out, "{p} passed, {f} failed")?;
        return Ok(if r.passed() { 0 } else { 1 });
    }
    let seeds = parse_seeds(&args.seeds)?;
    let started = Instant::now();
    let (mut passed, mut failed, mut beyond_f) = (0u64, 0u64, 0u64);
    let mut ratios: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    for seed in seeds.clone() {
        let r = sim::run(seed, &opts);
        beyond_f += r.beyond_f as u64;
        if let Some(mode) = r.scenario.slow_mode {
            let fault_free = sim::run(
                seed,
                &sim::SimOptions {
                    slow_leader: false,
                    ..opts.clone()
                },
            );
            let rate =
                |r: &sim::RunResult| r.completed as f64 / (r.last_completion.0.max(1) as f64);
            ratios
                .entry(format!("{mode:?}"))
                .or_default()
                .push(rate(&r) / rate(&fault_free));
        }
        if r.passed() {
            passed += 1;
        } else {
            failed += 1;
            writeln!(out, "{}", r.report())?;
            writeln!(
                out,
                "  replay: bftbench sim --seed {seed} {}",
                args.replay_flags()
            )?;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{} seeds in {:.2}s: {:.1} seeds/s",
        passed + failed,
        secs,
        (passed + failed) as f64 / secs.max(1e-9)
    );
    writeln!(
        out,
        "sim protocol={} app={:?} replicas={} seeds={}..={} twins={} mutate={} equivocate={} crash={} amnesia={} byzantine_clients={}: {passed} passed, {failed} failed; {beyond_f} ended with more than f faulty (safety checked, liveness not required)",
        if opts.raft { "raft" } else { "bft" },
        opts.app,
        opts.replicas,
        seeds.start(),
        seeds.end(),
        opts.twins,
        opts.mutate,
        opts.equivocate,
        opts.crash,
        opts.amnesia,
        opts.byzantine_clients
    )?;
    for (mode, mut v) in ratios {
        v.sort_by(f64::total_cmp);
        writeln!(
            out,
            "slow leader {mode}: throughput under attack / fault-free, median {:.2} (min {:.2}, {} seeds)",
            v[v.len() / 2],
            v[0],
            v.len()
        )?;
    }
    Ok(if failed == 0 { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_ranges_parse_and_bad_ones_are_named() {
        assert_eq!(parse_seeds("1..=500").unwrap(), 1..=500);
        assert_eq!(parse_seeds("1..5").unwrap(), 1..=4);
        assert_eq!(parse_seeds("7").unwrap(), 7..=7);
        assert!(parse_seeds("x..3")
            .unwrap_err()
            .to_string()
            .contains("--seeds"));
        assert!(parse_seeds("5..=2").is_err());
    }
}
