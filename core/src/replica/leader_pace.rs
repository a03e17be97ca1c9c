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
//! slowness). When the median of the last `PACE_SAMPLES` has exceeded
//! `request_timeout / PACE_FRACTION` for a timeout, it asks for a leader
//! change.
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
    gaps: VecDeque<Span>,
    /// Since when the median has been too slow, and since when it has
    /// been brisk again (a timeout of that clears the first).
    slow_since: Option<Time>,
    brisk_since: Option<Time>,
}

impl LeaderPace {
    /// A new regency, a new leader: nothing is known of its pace.
    pub fn reset(&mut self) {
        self.gaps.clear();
        self.slow_since = None;
        self.brisk_since = None;
    }

    /// Notes one PROPOSE's gap; true once the leader is too slow: the
    /// median turned too slow a timeout ago (and was not brisk for a whole
    /// timeout since), and it and this gap are too slow now. A host that
    /// stalled a moment (a burst of PROPOSEs, all late) is forgiven;
    /// slowness that lasts is caught however often the leader proposes.
    pub fn too_slow(&mut self, now: Time, gap: Span, timeout: Span) -> bool {
        if self.gaps.len() == PACE_SAMPLES {
            self.gaps.pop_front();
        }
        self.gaps.push_back(gap);
        if self.gaps.len() < PACE_SAMPLES {
            return false;
        }
        let limit = Span(timeout.0 / PACE_FRACTION);
        let mut sorted: Vec<Span> = self.gaps.iter().copied().collect();
        sorted.sort_unstable();
        if sorted[PACE_SAMPLES / 2] <= limit {
            // Brisk for a whole timeout before slowness is forgotten: a
            // leader cannot hide behind a few quick PROPOSEs now and then.
            let brisk = *self.brisk_since.get_or_insert(now);
            if now - brisk >= timeout {
                self.slow_since = None;
            }
            return false;
        }
        // A brisk stretch of a whole timeout, even one that ended unseen
        // (nothing proposed since), forgave what came before.
        if self.brisk_since.take().is_some_and(|b| now - b >= timeout) {
            self.slow_since = None;
        }
        let since = *self.slow_since.get_or_insert(now);
        gap > limit && now - since >= timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Span = Span::from_millis(100);

    #[test]
    fn a_lasting_slow_median_is_caught_and_a_few_slow_proposals_are_not() {
        let mut p = LeaderPace::default();
        let ms = |k: u64| Time(Span::from_millis(k).0);
        for k in 0..100 {
            let gap = if k % 3 == 0 { 90 } else { 2 };
            assert!(!p.too_slow(ms(5 * k), Span::from_millis(gap), T), "{k}");
        }
        // Slow from t0 on, a PROPOSE every 5 ms: caught one timeout later.
        let t0 = 1_000;
        let first = (0..100u64)
            .find(|k| p.too_slow(ms(t0 + 5 * k), Span::from_millis(60), T))
            .expect("caught");
        let at = 5 * first;
        assert!(
            (100..=130).contains(&at),
            "caught {at} ms after it turned slow"
        );
        p.reset();
        assert!(
            !p.too_slow(ms(t0 + 900), Span::from_millis(60), T),
            "a new leader starts afresh"
        );
    }

    #[test]
    fn a_burst_of_late_proposals_within_a_timeout_is_not_slowness() {
        let mut p = LeaderPace::default();
        let ms = |k: u64| Time(Span::from_millis(k).0);
        for k in 0..2 * PACE_SAMPLES as u64 {
            assert!(!p.too_slow(ms(500 + k), Span::from_millis(90), T));
        }
        // Idle, then a brisk PROPOSE: the burst is forgiven.
        assert!(!p.too_slow(ms(2_000), Span::from_millis(2), T));
        // A moment's stall long after another one is forgiven too.
        let mut p = LeaderPace::default();
        for k in 0..PACE_SAMPLES as u64 {
            p.too_slow(ms(k), Span::from_millis(90), T); // stall: slow since 0
        }
        for k in 0..5 {
            assert!(!p.too_slow(ms(10 + k), Span::from_millis(2), T)); // brisk, briefly
        }
        for k in 0..3 {
            assert!(!p.too_slow(ms(20 + k), Span::from_millis(90), T)); // median stays brisk
        }
        assert!(
            !p.too_slow(ms(600_000), Span::from_millis(90), T),
            "ten minutes on"
        );
        // A leader alternating bursts of quick PROPOSEs with slow ones is
        // not forgiven by the quick ones.
        let mut p = LeaderPace::default();
        let caught = (0..40u64).any(|k| {
            let gap = if k % 10 < 5 { 2 } else { 90 };
            p.too_slow(ms(10 * k), Span::from_millis(gap), T)
        });
        assert!(caught, "alternating");
        // Control: the same gaps spread over a timeout are caught.
        let mut p = LeaderPace::default();
        let caught =
            (0..2 * PACE_SAMPLES as u64).any(|k| p.too_slow(ms(20 * k), Span::from_millis(90), T));
        assert!(caught);
    }
}
