//! Clients that must sign their requests, for a while, at this replica.
//!
//! A request authenticated by MACs only is checked by each replica against
//! its own entry, and a client can make one entry good and another bad. A
//! follower that finds its entry bad in a PROPOSE cannot tell a Byzantine
//! client (who made the request valid at the leader only) from a Byzantine
//! leader (who forged or altered it): either way it cannot write it, the
//! instance waits, and the leader is replaced. Striking the client, this
//! replica then holds only its signed requests (which every replica checks
//! alike), so as a later leader it proposes nothing of that client's that
//! the followers cannot check, and the client cannot stall the next regency
//! the same way. A strike lasts `STRIKE_TIMEOUTS × request_timeout × 2^k` for the client's
//! k-th strike (at most one per regency), so a client that keeps attacking
//! is held to signatures for ever longer, and an honest one framed by a
//! Byzantine leader signs for a while (its MAC requests here go unanswered,
//! it retransmits them signed; see `Client`).

use crate::limits::{STRIKES_PER_REGENCY, STRIKE_EXP_MAX, STRUCK_CLIENTS_MAX};
use crate::message::{ClientId, Regency};
use crate::time::{Span, Time};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy)]
struct Strike {
    until: Time,
    count: u32,
    regency: Regency,
}

/// Struck clients, at most `STRUCK_CLIENTS_MAX` (a first-time strike ending
/// soonest makes room: repeat offenders stay), at most
/// `STRIKES_PER_REGENCY` new ones per regency (a Byzantine leader naming
/// made-up clients cannot flush the table in one regency, and loses the
/// regency for each batch it stalls).
#[derive(Debug, Default)]
pub struct MustSign {
    struck: BTreeMap<ClientId, Strike>,
    /// Strikes made in the regency named.
    this_regency: (Regency, usize),
}

impl MustSign {
    /// Strikes `client` in `regency` (once per regency); true if it was.
    /// A strike lasts `base × 2^k`; k counts earlier strikes, less one per
    /// `base` the client went unstruck since the last one ended.
    pub fn strike(&mut self, client: ClientId, regency: Regency, now: Time, base: Span) -> bool {
        let prior = self.struck.get(&client).copied();
        if prior.is_some_and(|s| s.regency >= regency) {
            return false;
        }
        if self.this_regency.0 != regency {
            self.this_regency = (regency, 0);
        }
        if self.this_regency.1 >= STRIKES_PER_REGENCY {
            return false;
        }
        if prior.is_none() && self.struck.len() >= STRUCK_CLIENTS_MAX {
            let evict = self
                .struck
                .iter()
                .min_by_key(|(_, s)| (s.count, s.until))
                .map(|(c, _)| *c);
            if let Some(c) = evict {
                self.struck.remove(&c);
            }
        }
        let count = prior.map_or(0, |s| {
            let quiet = now.0.saturating_sub(s.until.0) / base.0.max(1);
            let quiet = u32::try_from(quiet).unwrap_or(u32::MAX);
            s.count.saturating_add(1).saturating_sub(quiet)
        });
        let until = now + base.backoff(count.min(STRIKE_EXP_MAX));
        self.struck.insert(
            client,
            Strike {
                until,
                count,
                regency,
            },
        );
        self.this_regency.1 += 1;
        debug_assert!(self.struck.len() <= STRUCK_CLIENTS_MAX);
        true
    }

    /// Whether `client`'s requests with MACs only are refused here now.
    pub fn applies(&self, client: ClientId, now: Time) -> bool {
        self.struck.get(&client).is_some_and(|s| now < s.until)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.struck.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Span = Span::from_millis(800);

    #[test]
    fn a_strike_lasts_longer_each_regency_and_counts_once_per_regency() {
        let mut m = MustSign::default();
        assert!(m.strike(7, 1, Time::ZERO, BASE));
        assert!(!m.strike(7, 1, Time::ZERO, BASE), "twice in one regency");
        assert!(m.applies(7, Time(BASE.0 - 1)) && !m.applies(7, Time(BASE.0)));
        assert!(!m.applies(8, Time::ZERO));
        assert!(m.strike(7, 2, Time::ZERO, BASE));
        assert!(m.applies(7, Time(2 * BASE.0 - 1)) && !m.applies(7, Time(2 * BASE.0)));
        for r in 3..40 {
            m.strike(7, r, Time::ZERO, BASE);
        }
        let cap = BASE.backoff(STRIKE_EXP_MAX).0;
        assert!(m.applies(7, Time(cap - 1)) && !m.applies(7, Time(cap)));
    }

    #[test]
    fn the_table_stays_bounded_and_keeps_repeat_offenders() {
        let mut m = MustSign::default();
        for c in 0..STRUCK_CLIENTS_MAX as ClientId {
            let regency = 1 + c / STRIKES_PER_REGENCY as u64;
            assert!(m.strike(c, regency, Time(c), BASE));
        }
        assert!(m.strike(0, 1_000, Time(5), BASE), "client 0 again");
        assert!(m.strike(1 << 40, 1_000, Time(1 << 20), BASE));
        assert_eq!(m.len(), STRUCK_CLIENTS_MAX);
        assert!(m.applies(0, Time(6)), "a repeat offender stays");
        assert!(
            !m.applies(1, Time(7)),
            "the first-time strike ending first made room"
        );
        assert!(m.applies(2, Time(8)));
    }

    #[test]
    fn strikes_per_regency_are_bounded_and_counts_decay() {
        let mut m = MustSign::default();
        for c in 0..STRIKES_PER_REGENCY as ClientId {
            assert!(m.strike(c, 1, Time::ZERO, BASE));
        }
        assert!(
            !m.strike(9_999, 1, Time::ZERO, BASE),
            "a regency's share is spent"
        );
        assert!(m.strike(9_999, 2, Time::ZERO, BASE));
        // Struck again at once: twice as long. After a long quiet: as new.
        assert!(m.strike(0, 2, Time::ZERO, BASE));
        assert!(m.applies(0, Time(2 * BASE.0 - 1)));
        let later = Time(2 * BASE.0 + 10 * BASE.0);
        assert!(m.strike(0, 3, later, BASE));
        assert!(!m.applies(0, later + BASE), "the count decayed");
    }
}
