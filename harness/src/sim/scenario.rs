//! A scenario: every fault setting of one simulated run, derived from its seed.

use bft_core::message::ReplicaId;
use bft_core::rng::Rng;
use bft_core::time::{Span, Time};
use std::fmt;

/// What the user asked for (flags); the seed fills in the rest.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Raft replicas (raft-rs) instead of BFT ones; crash and network faults only.
    pub raft: bool,
    pub replicas: usize,
    /// Replicas run as twins (two copies under one identity), ids 0..twins.
    pub twins: usize,
    /// One replica's messages are mutated in some rounds (ByzzFuzz-style);
    /// with `equivocate` (BFT), the equivocating leader's own.
    pub mutate: bool,
    /// The leader equivocates: replica 0 for BFT (regency 0's leader), the
    /// first elected leader for Raft ([`super::equivocate`]).
    pub equivocate: bool,
    /// Replicas crashed (and restarted before the heal).
    pub crash: usize,
    /// Crash them all at one instant (the "more than f down" experiment).
    pub crash_together: bool,
    /// Crashed BFT replicas restart without their durable state (kept in
    /// memory only) and rejoin under the rule of `Replica::amnesiac`.
    pub amnesia: bool,
    /// Test-only, with `amnesia`: restart them as fresh replicas instead, with
    /// no rejoin rule, to show the checkers catch what the rule prevents.
    pub amnesia_without_rule: bool,
    /// Test-only: replicas never strike a client whose MACs a PROPOSE showed
    /// bad, to show the latency bound catches what strikes prevent.
    pub no_strikes: bool,
    /// Test-only: the simulated disk loses every ACCEPT record, to show the
    /// durability check catches a journal that forgets.
    pub lossy_journal_for_tests: bool,
    /// Network faults (loss, duplication, reordering, partitions) before the heal.
    pub network_faults: bool,
    pub clients: usize,
    /// Byzantine clients beside them ([`super::byzantine_client`]).
    pub byzantine_clients: usize,
    /// Replica 0 is a slow, stale or censoring leader ([`super::slow_leader`]).
    pub slow_leader: bool,
    /// Test-only: followers do not time the leader's pace, to show the
    /// tenure bound catches a slow leader that pace would replace.
    pub no_pace: bool,
    pub requests_per_client: u64,
    /// Fixed batch size and pipeline depth; None draws them from the seed.
    pub batch: Option<usize>,
    pub pipeline: Option<u64>,
    pub checkpoint_interval: Option<u64>,
    pub crypto: CryptoKind,
    /// Test-only: a wrong quorum size, to show the checkers catch it.
    pub broken_quorum: Option<usize>,
    /// Print each run's event trace (for debugging a seed).
    pub trace: bool,
    /// The App the replicas run and the operations clients send.
    pub app: SimApp,
}

/// The App under simulation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SimApp {
    /// `ChainApp`: each operation is hashed into a chain (order shows in every digest).
    #[default]
    Chain,
    /// `KvApp` under YCSB's operations (insert, update, read, scan, delete)
    /// on a small key space, so records are written over and over.
    Kv,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CryptoKind {
    /// HMAC links, HMAC-based stand-in signatures: fast and deterministic.
    Sim,
    /// HMAC links, real ed25519 signatures.
    Ed25519,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            raft: false,
            replicas: 4,
            twins: 0,
            mutate: false,
            equivocate: false,
            crash: 0,
            crash_together: false,
            amnesia: false,
            amnesia_without_rule: false,
            no_strikes: false,
            lossy_journal_for_tests: false,
            network_faults: true,
            clients: 6,
            byzantine_clients: 0,
            slow_leader: false,
            no_pace: false,
            requests_per_client: 20,
            batch: None,
            pipeline: None,
            checkpoint_interval: None,
            crypto: CryptoKind::Sim,
            broken_quorum: None,
            trace: false,
            app: SimApp::Chain,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Partition {
    pub start: Time,
    pub end: Time,
    /// Replicas on side A; the others are on side B.
    pub side_a: Vec<ReplicaId>,
}

#[derive(Clone, Debug)]
pub struct Crash {
    pub replica: ReplicaId,
    pub at: Time,
    pub restart: Time,
}

#[derive(Clone, Debug)]
pub struct Scenario {
    pub seed: u64,
    pub n: usize,
    pub loss: f64,
    pub duplicate: f64,
    pub reorder: f64,
    pub delay_min: Span,
    pub delay_max: Span,
    pub partitions: Vec<Partition>,
    pub crashes: Vec<Crash>,
    pub twins: Vec<ReplicaId>,
    /// Length of a Twins / mutation round.
    pub round: Span,
    pub mutated: Option<ReplicaId>,
    pub mutate_rate: f64,
    pub heal: Time,
    pub batch: usize,
    pub pipeline: u64,
    pub checkpoint_interval: u64,
    pub request_timeout: Span,
    pub view_change_timeout: Span,
    pub signed_clients: bool,
    /// With `--slow-leader`: what replica 0 does to its PROPOSEs.
    pub slow_mode: Option<super::slow_leader::SlowMode>,
}

impl Scenario {
    pub fn derive(seed: u64, o: &SimOptions) -> Scenario {
        let mut rng = Rng::new(seed);
        let n = o.replicas;
        let faults = o.network_faults;
        let heal = Time(
            Span::from_millis(if faults || o.crash > 0 || o.twins > 0 || o.mutate {
                rng.range(800, 2500)
            } else {
                0
            })
            .0,
        );
        let pick = |rng: &mut Rng, p: f64| if faults { p * rng.unit() } else { 0.0 };
        let loss = pick(&mut rng, 0.15);
        let duplicate = pick(&mut rng, 0.1);
        let reorder = pick(&mut rng, 0.3);
        let delay_min = Span::from_micros(rng.range(50, 300));
        let delay_max = Span(delay_min.0 + Span::from_micros(rng.range(0, 2000)).0);
        let mut partitions = Vec::new();
        if faults {
            for _ in 0..rng.below(3) {
                let start = Time(rng.below(heal.0.max(1)));
                let end = start + Span::from_millis(rng.range(50, 600));
                let side_a = (0..n as ReplicaId).filter(|_| rng.chance(0.5)).collect();
                partitions.push(Partition { start, end, side_a });
            }
        }
        let mut crashes = Vec::new();
        let mut ids: Vec<ReplicaId> = (o.twins as ReplicaId..n as ReplicaId).collect();
        let together = Time(rng.below(heal.0 / 2 + 1));
        for _ in 0..o.crash.min(ids.len()) {
            let replica = ids.remove(rng.below(ids.len() as u64) as usize);
            let at = if o.crash_together {
                together
            } else {
                Time(rng.below(heal.0 / 2 + 1))
            };
            let restart = Time(rng.range(
                at.0 + Span::from_millis(100).0,
                heal.0.max(at.0 + Span::from_millis(100).0),
            ));
            crashes.push(Crash {
                replica,
                at,
                restart,
            });
        }
        let mutated = o.mutate.then(|| {
            if o.equivocate && !o.raft {
                return 0; // one Byzantine replica that equivocates and lies
            }
            let byz: Vec<ReplicaId> = (0..n as ReplicaId)
                .filter(|r| !crashes.iter().any(|c| c.replica == *r) && (*r as usize) >= o.twins)
                .collect();
            byz[rng.below(byz.len() as u64) as usize]
        });
        let mut sc = Scenario {
            seed,
            n,
            loss,
            duplicate,
            reorder,
            delay_min,
            delay_max,
            partitions,
            crashes,
            twins: (0..o.twins as ReplicaId).collect(),
            round: Span::from_millis(rng.range(20, 200)),
            mutated,
            mutate_rate: 0.1 + 0.5 * rng.unit(),
            heal,
            batch: o
                .batch
                .unwrap_or_else(|| [1, 4, 16, 64][rng.below(4) as usize]),
            pipeline: o.pipeline.unwrap_or_else(|| rng.range(1, 4)),
            checkpoint_interval: o
                .checkpoint_interval
                .unwrap_or_else(|| [4, 8, 16][rng.below(3) as usize]),
            request_timeout: Span::from_millis(100),
            view_change_timeout: Span::from_millis(150),
            signed_clients: rng.chance(0.25),
            slow_mode: None,
        };
        if o.slow_leader {
            use super::slow_leader::SlowMode::*;
            sc.slow_mode = Some([Slow, Few, Censor, Stale][rng.below(4) as usize]);
        }
        sc
    }

    /// Byzantine identities: twins, the mutated replica, the slow leader.
    pub fn byzantine(&self) -> Vec<ReplicaId> {
        let mut b = self.twins.clone();
        b.extend(self.mutated);
        if self.slow_mode.is_some() && !b.contains(&0) {
            b.push(0);
        }
        b
    }

    pub fn f(&self) -> usize {
        (self.n - 1) / 3
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "n={} loss={:.3} dup={:.3} reorder={:.3} delay={:.2}-{:.2}ms heal={:.0}ms batch={} W={} K={} auth={}",
            self.n,
            self.loss,
            self.duplicate,
            self.reorder,
            self.delay_min.as_millis_f64(),
            self.delay_max.as_millis_f64(),
            self.heal.0 as f64 / 1e6,
            self.batch,
            self.pipeline,
            self.checkpoint_interval,
            if self.signed_clients { "sig" } else { "mac" },
        )?;
        for p in &self.partitions {
            write!(
                f,
                " partition={:?}|rest@{:.0}-{:.0}ms",
                p.side_a,
                p.start.0 as f64 / 1e6,
                p.end.0 as f64 / 1e6
            )?;
        }
        for c in &self.crashes {
            write!(
                f,
                " crash=r{}@{:.0}ms->{:.0}ms",
                c.replica,
                c.at.0 as f64 / 1e6,
                c.restart.0 as f64 / 1e6
            )?;
        }
        if !self.twins.is_empty() {
            write!(
                f,
                " twins={:?} round={:.0}ms",
                self.twins,
                self.round.as_millis_f64()
            )?;
        }
        if let Some(m) = self.slow_mode {
            write!(f, " slow_leader=r0:{m:?}")?;
        }
        if let Some(m) = self.mutated {
            write!(
                f,
                " mutate=r{} rate={:.2} round={:.0}ms",
                m,
                self.mutate_rate,
                self.round.as_millis_f64()
            )?;
        }
        Ok(())
    }
}
