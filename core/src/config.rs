//! Replica configuration, validated once at construction.

use crate::limits::*;
use crate::message::ReplicaId;
use crate::time::Span;
use thiserror::Error;

#[derive(Clone, Debug)]
pub struct Config {
    /// Number of replicas, n = 3f + 1.
    pub n: usize,
    pub me: ReplicaId,
    pub batch_max_requests: usize,
    pub batch_max_bytes: usize,
    /// How long a leader may wait for a batch to fill (0: propose at once, as BFT-SMaRt's default).
    pub batch_delay: Span,
    /// Consensus instances in flight, W. W = 1 is BFT-SMaRt's behaviour.
    pub pipeline: u64,
    /// Instances between checkpoints, K.
    pub checkpoint_interval: u64,
    /// First expiry forwards pending requests to the leader; the second starts a leader change.
    pub request_timeout: Span,
    /// How long a new regency may take to synchronise before the next one; doubles per failure.
    pub view_change_timeout: Span,
    pub state_transfer_timeout: Span,
    /// Test-only: overrides the 2f+1 quorum to show the checkers catch a broken quorum.
    pub broken_quorum_for_tests: Option<usize>,
    /// Test-only: never strike a client (`replica::must_sign`), to show the
    /// simulator's latency bound catches clients stalling regency after regency.
    pub no_strikes_for_tests: bool,
    /// Test-only: never time the leader's pace (`replica::leader_pace`), to
    /// show the simulator's tenure bound catches a slow leader.
    pub no_pace_for_tests: bool,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("n = {0} replicas: BFT needs n = 3f+1 with f ≥ 1 and n ≤ {REPLICAS_MAX}")]
    BadN(usize),
    #[error("replica id {me} is not below n = {n}")]
    BadId { me: ReplicaId, n: usize },
    #[error(
        "2 × checkpoint_interval × batch_max_bytes = {bytes} exceeds {max} bytes: a leader change could not carry the log window; lower one of them"
    )]
    WindowTooLarge { bytes: usize, max: usize },
    #[error(
        "a SYNC's reports (n × 2 × checkpoint_interval × the report size at n) = {bytes} exceed {max} bytes; lower checkpoint_interval"
    )]
    ReportsTooLarge { bytes: usize, max: usize },
    #[error("{what} = {value} is outside 1..={max}")]
    OutOfRange {
        what: &'static str,
        value: u64,
        max: u64,
    },
}

impl Config {
    pub fn new(n: usize, me: ReplicaId) -> Config {
        Config {
            n,
            me,
            batch_max_requests: 1024,
            batch_max_bytes: 128 << 10,
            batch_delay: Span::ZERO,
            pipeline: 4,
            checkpoint_interval: 128,
            request_timeout: Span::from_millis(500),
            view_change_timeout: Span::from_millis(500),
            state_transfer_timeout: Span::from_millis(500),
            broken_quorum_for_tests: None,
            no_strikes_for_tests: false,
            no_pace_for_tests: false,
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.n < 4 || self.n > REPLICAS_MAX || (self.n - 1) % 3 != 0 {
            return Err(ConfigError::BadN(self.n));
        }
        if self.me as usize >= self.n {
            return Err(ConfigError::BadId {
                me: self.me,
                n: self.n,
            });
        }
        let ranges = [
            (
                "batch_max_requests",
                self.batch_max_requests as u64,
                BATCH_REQUESTS_MAX as u64,
            ),
            (
                "batch_max_bytes",
                self.batch_max_bytes as u64,
                BATCH_BYTES_MAX as u64,
            ),
            (
                "pipeline",
                self.pipeline,
                PIPELINE_MAX.min(self.checkpoint_interval),
            ),
            (
                "checkpoint_interval",
                self.checkpoint_interval,
                CHECKPOINT_INTERVAL_MAX,
            ),
        ];
        for (what, value, max) in ranges {
            if value == 0 || value > max {
                return Err(ConfigError::OutOfRange { what, value, max });
            }
        }
        let bytes = (self.log_window() as usize).saturating_mul(self.batch_max_bytes);
        if bytes > LEADER_CHANGE_BATCH_BYTES_MAX {
            return Err(ConfigError::WindowTooLarge {
                bytes,
                max: LEADER_CHANGE_BATCH_BYTES_MAX,
            });
        }
        // A SYNC carries up to n STOPDATA (all the leader holds), each with a
        // report per window instance (its accepted value and complete
        // write-set): with the batches, it must fit in one frame.
        let report_bytes = 8 + 1 + 40 + 4 + 40 * self.writeset_max();
        let reports = (self.log_window() as usize)
            .saturating_mul(report_bytes)
            .saturating_mul(self.n);
        let max = FRAME_BYTES_MAX - LEADER_CHANGE_BATCH_BYTES_MAX - (1 << 20);
        if reports > max {
            return Err(ConfigError::ReportsTooLarge {
                bytes: reports,
                max,
            });
        }
        Ok(())
    }

    pub fn f(&self) -> usize {
        (self.n - 1) / 3
    }

    /// Distinct digests a replica can write at one instance: the no-op and
    /// at most one first value per correct replica, and all n may be correct
    /// (see `limits::WRITESET_MAX`).
    pub fn writeset_max(&self) -> usize {
        self.n + 1
    }

    /// 2f + 1: any two quorums share a correct replica.
    pub fn quorum(&self) -> usize {
        self.broken_quorum_for_tests.unwrap_or(2 * self.f() + 1)
    }

    pub fn leader_of(&self, regency: u64) -> ReplicaId {
        (regency % self.n as u64) as ReplicaId
    }

    /// Instances kept above the stable checkpoint (the high watermark).
    pub fn log_window(&self) -> u64 {
        2 * self.checkpoint_interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        assert_eq!(Config::new(4, 0).validate(), Ok(()));
        assert_eq!(Config::new(5, 0).validate(), Err(ConfigError::BadN(5)));
        assert!(matches!(
            Config::new(4, 4).validate(),
            Err(ConfigError::BadId { .. })
        ));
        let mut c = Config::new(4, 0);
        c.pipeline = 0;
        assert!(c.validate().unwrap_err().to_string().contains("pipeline"));
        let mut c = Config::new(4, 0);
        c.batch_max_bytes = 1 << 20; // 256 instances × 1 MiB cannot cross a leader change
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("checkpoint_interval"));
        c.checkpoint_interval = 16;
        assert_eq!(c.validate(), Ok(()));
        // At n = 64, a window of 2 × 4096 instances of reports overflows a SYNC.
        let mut c = Config::new(64, 0);
        c.batch_max_bytes = 1024;
        c.checkpoint_interval = 4096;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::ReportsTooLarge { .. })
        ));
        c.checkpoint_interval = 64;
        assert_eq!(c.validate(), Ok(()));
    }
}
