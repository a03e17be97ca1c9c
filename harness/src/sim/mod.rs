//! The deterministic simulator: `bftbench sim` and the simulation tests.

pub mod byzantine_client;
pub mod checker;
pub mod equivocate;
pub mod mutate;
pub mod node;
pub mod scenario;
pub mod slow_leader;
pub mod world;

pub use scenario::{CryptoKind, Scenario, SimApp, SimOptions};
pub use world::{run, RunResult};

impl RunResult {
    /// One line a failing seed can be replayed from.
    pub fn report(&self) -> String {
        let sim_s = self.last_completion.0.max(1) as f64 / 1e9;
        let mut s = format!(
            "SEED={} {}\n  {} decided={} completed={}/{} decisions_per_sim_s={:.0} requests_per_sim_s={:.0} mean_latency_ms={:.3} regency={} events={} trace={:016x}",
            self.scenario.seed,
            self.scenario,
            if self.passed() { "PASS" } else { "FAIL" },
            self.decided,
            self.completed,
            self.submitted,
            self.decided as f64 / sim_s,
            self.completed as f64 / sim_s,
            self.latency_sum.0 as f64 / 1e6 / self.completed.max(1) as f64,
            self.max_regency,
            self.events,
            self.trace,
        );
        s.push_str(&format!(
            " max_latency_after_heal_ms={:.0}",
            self.max_latency_after_heal.as_millis_f64()
        ));
        if self.equivocations > 0 {
            s.push_str(&format!(" equivocations_sent={}", self.equivocations));
        }
        for (k, v) in world::stats_map(&self.stats) {
            s.push_str(&format!(" {k}={v}"));
        }
        for v in &self.violations {
            s.push_str(&format!("\n  violation: {v}"));
        }
        s
    }
}
