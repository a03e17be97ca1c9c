//! How long the leader keeps requests before proposing them, as a follower
//! sees it: a defence against a leader that is slow but stays just under
//! the request timers (Aardvark's slow primary).
//!
//! The request timer alone lets a leader hold each request for almost two
//! timeouts and stay; closed-loop clients then run at one request per two
//! timeouts. A follower that holds a request itself knows when it came; when
//! the request shows up in a PROPOSE, the gap bounds what the leader added
//! (batching, its queue, any delay it chose, and any lateness of the
//! client's copy to the leader). Per PROPOSE the follower takes the gap of
//! the request it holds that came last, counted from when this regency
//! began, and only for a PROPOSE made with room to spare (batch and
//! pipeline not full: a queue being worked through is load, not
//! slowness). When the median of the last `PACE_SAMPLES`, spanning at
//! least a timeout, exceeds `request_timeout / PACE_FRACTION`, it asks for
//! a leader change.
//!
//! Aardvark instead compares throughput with what earlier views achieved,
//! and forces view changes to learn it; the gap needs no history and costs
//! one lookup a follower already makes to authenticate a request. What it
//! leaves open (ARCHITECTURE.md, "Stale and slow leaders"): a Byzantine
//! client that sends its requests to followers first and to the leader
//! late, and fills most PROPOSEs of an idle cluster with them, makes
//! followers change leaders (each change costs the view change, and honest
//! requests in the same PROPOSEs keep the gap small); and a slow leader can
//! dilute the median with quick single-request PROPOSEs for some clients.

use crate::time::{Span, Time};
use std::collections::VecDeque;

/// PROPOSEs whose gaps are weighed (the median of these).
pub const PACE_SAMPLES: usize = 8;
/// The median gap allowed is `request_timeout / PACE_FRACTION`.
pub const PACE_FRACTION: u64 = 2;

#[derive(Debug, Default)]
pub struct LeaderPace {
    /// (when, gap) of the last `PACE_SAMPLES` PROPOSEs.
    gaps: VecDeque<(Time, Span)>,
}

impl LeaderPace {
    /// A new regency, a new leader: nothing is known of its pace.
    pub fn reset(&mut self) {
        self.gaps.clear();
    }

    /// Notes one PROPOSE's gap; true once the leader is too slow. The
    /// samples must span a timeout: a host that stalled for a moment (a
    /// burst of PROPOSEs, all late) is not a slow leader.
    pub fn too_slow(&mut self, now: Time, gap: Span, timeout: Span) -> bool {
        if self.gaps.len() == PACE_SAMPLES {
            self.gaps.pop_front();
        }
        self.gaps.push_back((now, gap));
        let span = self
            .gaps
            .front()
            .map_or(Span::ZERO, |(t, _)| Span(now.0 - t.0));
        if self.gaps.len() < PACE_SAMPLES || span < timeout {
            return false;
        }
        let mut sorted: Vec<Span> = self.gaps.iter().map(|(_, g)| *g).collect();
        sorted.sort_unstable();
        sorted[PACE_SAMPLES / 2] > Span(timeout.0 / PACE_FRACTION)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Span = Span::from_millis(100);

    #[test]
    fn a_slow_median_is_caught_and_a_few_slow_proposals_are_not() {
        let mut p = LeaderPace::default();
        let ms = |k: u64| Time(Span::from_millis(k).0);
        for k in 0..100 {
            let gap = if k % 3 == 0 { 90 } else { 2 };
            assert!(!p.too_slow(ms(20 * k), Span::from_millis(gap), T), "{k}");
        }
        for k in 100..100 + PACE_SAMPLES as u64 {
            assert!(!p.too_slow(ms(20 * k), Span::from_millis(2), T));
        }
        let t0 = 20 * (100 + PACE_SAMPLES as u64);
        let slow: Vec<bool> = (0..PACE_SAMPLES as u64)
            .map(|k| p.too_slow(ms(t0 + 20 * k), Span::from_millis(60), T))
            .collect();
        // The upper median: half the window slow is too slow.
        assert_eq!(
            slow.iter().position(|s| *s),
            Some(PACE_SAMPLES / 2 - 1),
            "{slow:?}"
        );
        p.reset();
        assert!(
            !p.too_slow(ms(t0 + 500), Span::from_millis(60), T),
            "a new leader starts afresh"
        );
    }

    #[test]
    fn a_burst_of_late_proposals_within_a_timeout_is_not_slowness() {
        let mut p = LeaderPace::default();
        for k in 0..2 * PACE_SAMPLES as u64 {
            let at = Time(Span::from_millis(500).0 + k * 1_000_000); // 1 ms apart
            assert!(!p.too_slow(at, Span::from_millis(90), T));
        }
        // Control: the same gaps spread over a timeout are.
        let mut p = LeaderPace::default();
        let caught = (0..2 * PACE_SAMPLES as u64)
            .any(|k| p.too_slow(Time(k * 20_000_000), Span::from_millis(90), T));
        assert!(caught);
    }
}
