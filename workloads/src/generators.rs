//! Number generators with Java YCSB's arithmetic, seeded and deterministic.
//!
//! Only the distributions match Java (its `ThreadLocalRandom` stream cannot be
//! reproduced); every formula, constant and edge case follows YCSB's code,
//! including its quirks, which are noted where they occur.

use crate::keys::fnvhash64;
use bft_core::rng::Rng;

/// YCSB's Zipfian constant θ.
pub const ZIPFIAN_CONSTANT: f64 = 0.99;
/// Items of the inner Zipfian behind ScrambledZipfian.
pub const SCRAMBLED_ITEM_COUNT: u64 = 10_000_000_000;
/// ζ(10^10, 0.99), precomputed by YCSB.
pub const SCRAMBLED_ZETAN: f64 = 26.469_028_201_783_02;

/// Σ_{i=st}^{n-1} 1/(i+1)^θ added to `initial`.
pub fn zeta_from(st: u64, n: u64, theta: f64, initial: f64) -> f64 {
    (st..n).fold(initial, |sum, i| sum + 1.0 / ((i + 1) as f64).powf(theta))
}

pub fn zeta(n: u64, theta: f64) -> f64 {
    zeta_from(0, n, theta, 0.0)
}

/// Gray et al.'s Zipfian over `[base, base + items)`, with ζ extended
/// incrementally when the item count grows.
#[derive(Clone, Debug)]
pub struct Zipfian {
    items: u64,
    base: u64,
    theta: f64,
    zeta2theta: f64,
    alpha: f64,
    zetan: f64,
    eta: f64,
    count_for_zeta: u64,
}

impl Zipfian {
    /// Over `[min, max]`, computing ζ(max − min + 1) (O(n)).
    pub fn new(min: u64, max: u64) -> Zipfian {
        let n = max - min + 1;
        Zipfian::with_zetan(min, max, ZIPFIAN_CONSTANT, zeta(n, ZIPFIAN_CONSTANT))
    }

    pub fn with_zetan(min: u64, max: u64, theta: f64, zetan: f64) -> Zipfian {
        let items = max - min + 1;
        let zeta2theta = zeta(2, theta);
        Zipfian {
            items,
            base: min,
            theta,
            zeta2theta,
            alpha: 1.0 / (1.0 - theta),
            zetan,
            eta: Self::eta(items, theta, zeta2theta, zetan),
            count_for_zeta: items,
        }
    }

    fn eta(items: u64, theta: f64, zeta2theta: f64, zetan: f64) -> f64 {
        (1.0 - (2.0 / items as f64).powf(1.0 - theta)) / (1.0 - zeta2theta / zetan)
    }

    pub fn items(&self) -> u64 {
        self.items
    }

    /// The draw for a given u ∈ [0, 1) over `itemcount` items.
    ///
    /// Java quirk kept: when ζ grows, η is recomputed with the constructor's
    /// item count (`2.0 / items`), not the new one.
    pub fn next_with_u(&mut self, u: f64, itemcount: u64) -> u64 {
        if itemcount > self.count_for_zeta {
            self.zetan = zeta_from(self.count_for_zeta, itemcount, self.theta, self.zetan);
            self.count_for_zeta = itemcount;
            self.eta = Self::eta(self.items, self.theta, self.zeta2theta, self.zetan);
        }
        let uz = u * self.zetan;
        if uz < 1.0 {
            return self.base;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return self.base + 1;
        }
        let x = (self.eta * u - self.eta + 1.0).powf(self.alpha);
        self.base + (itemcount as f64 * x) as u64
    }

    pub fn next_count(&mut self, rng: &mut Rng, itemcount: u64) -> u64 {
        self.next_with_u(rng.unit(), itemcount)
    }

    pub fn next(&mut self, rng: &mut Rng) -> u64 {
        self.next_count(rng, self.items)
    }
}

/// What `requestdistribution=zipfian` uses: popular items scattered over the
/// key space by hashing the draw of a Zipfian over 10^10 items.
#[derive(Clone, Debug)]
pub struct ScrambledZipfian {
    min: u64,
    item_count: u64,
    inner: Zipfian,
}

impl ScrambledZipfian {
    pub fn new(min: u64, max: u64) -> ScrambledZipfian {
        ScrambledZipfian {
            min,
            item_count: max - min + 1,
            inner: Zipfian::with_zetan(0, SCRAMBLED_ITEM_COUNT, ZIPFIAN_CONSTANT, SCRAMBLED_ZETAN),
        }
    }

    /// Maps an inner draw onto the key space (Java's `%` on a signed hash).
    pub fn scramble(&self, z: u64) -> u64 {
        let h = fnvhash64(z as i64) % self.item_count as i64;
        self.min.wrapping_add_signed(h)
    }

    pub fn next(&mut self, rng: &mut Rng) -> u64 {
        let z = self.inner.next(rng);
        self.scramble(z)
    }
}

/// Favours the most recently acknowledged inserts: `max − zipfian(max)`.
/// (As in Java, key 0 is never drawn once max > 0.)
#[derive(Clone, Debug)]
pub struct SkewedLatest {
    zipfian: Option<Zipfian>,
}

impl SkewedLatest {
    pub fn new(last: u64) -> SkewedLatest {
        SkewedLatest {
            zipfian: (last > 0).then(|| Zipfian::new(0, last - 1)),
        }
    }

    pub fn next(&mut self, rng: &mut Rng, last: u64) -> u64 {
        match &mut self.zipfian {
            Some(z) if last > 0 => last - z.next_count(rng, last).min(last),
            _ => {
                if last > 0 {
                    self.zipfian = Some(Zipfian::new(0, last - 1));
                }
                last
            }
        }
    }
}

/// A hot set (the lowest `hot_data` fraction of keys) drawn with probability `hot_ops`.
#[derive(Clone, Debug)]
pub struct Hotspot {
    lower: u64,
    hot: u64,
    cold: u64,
    hot_ops: f64,
}

impl Hotspot {
    pub fn new(lower: u64, upper: u64, hot_data: f64, hot_ops: f64) -> Hotspot {
        let interval = upper - lower + 1;
        let hot = (interval as f64 * hot_data) as u64;
        Hotspot {
            lower,
            hot,
            cold: interval - hot,
            hot_ops,
        }
    }

    pub fn hot_keys(&self) -> u64 {
        self.hot
    }

    pub fn next(&mut self, rng: &mut Rng) -> u64 {
        let hot = rng.unit() < self.hot_ops;
        if (hot && self.hot > 0) || self.cold == 0 {
            self.lower + rng.below(self.hot.max(1))
        } else {
            self.lower + self.hot + rng.below(self.cold)
        }
    }
}

#[derive(Clone, Debug)]
pub struct Uniform {
    lower: u64,
    interval: u64,
}

impl Uniform {
    pub fn new(lower: u64, upper: u64) -> Uniform {
        Uniform {
            lower,
            interval: upper - lower + 1,
        }
    }
    pub fn next(&mut self, rng: &mut Rng) -> u64 {
        self.lower + rng.below(self.interval)
    }
}

/// start, start+1, …, wrapping around the interval.
#[derive(Clone, Debug)]
pub struct Sequential {
    start: u64,
    interval: u64,
    counter: u64,
}

impl Sequential {
    pub fn new(start: u64, end: u64) -> Sequential {
        Sequential {
            start,
            interval: end - start + 1,
            counter: 0,
        }
    }
    pub fn next_value(&mut self) -> u64 {
        let v = self.start + self.counter % self.interval;
        self.counter += 1;
        v
    }
}

/// Exponential with `percentile`% of draws below `range`.
#[derive(Clone, Debug)]
pub struct Exponential {
    gamma: f64,
}

impl Exponential {
    pub fn new(percentile: f64, range: f64) -> Exponential {
        Exponential {
            gamma: -(1.0 - percentile / 100.0).ln() / range,
        }
    }
    pub fn next(&mut self, rng: &mut Rng) -> f64 {
        -(1.0 - rng.unit()).ln() / self.gamma
    }
}

/// Picks among weighted values (Java's DiscreteGenerator).
#[derive(Clone, Debug)]
pub struct Discrete<T: Copy> {
    values: Vec<(f64, T)>,
    sum: f64,
}

impl<T: Copy> Discrete<T> {
    pub fn new(values: Vec<(f64, T)>) -> Discrete<T> {
        let values: Vec<_> = values.into_iter().filter(|(w, _)| *w > 0.0).collect();
        let sum = values.iter().map(|(w, _)| w).sum();
        Discrete { values, sum }
    }
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
    pub fn next(&mut self, rng: &mut Rng) -> T {
        let mut val = rng.unit();
        for (w, v) in &self.values {
            let pw = w / self.sum;
            if val < pw {
                return *v;
            }
            val -= pw;
        }
        self.values
            .last()
            .expect("a discrete generator has values")
            .1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeta_sums() {
        assert_eq!(zeta(1, 0.99), 1.0);
        assert!((zeta(2, 0.99) - (1.0 + 0.5f64.powf(0.99))).abs() < 1e-15);
    }

    #[test]
    fn one_item_and_the_half_theta_branch() {
        let mut z = Zipfian::new(7, 7);
        for u in [0.0, 0.3, 0.999] {
            assert_eq!(z.next_with_u(u, 1), 7, "one item: always the base");
        }
        let mut z = Zipfian::new(0, 999);
        let zetan = zeta(1000, 0.99);
        let first = 1.0 / zetan;
        let second = (1.0 + 0.5f64.powf(0.99)) / zetan;
        assert_eq!(z.next_with_u(first * 0.999, 1000), 0);
        assert_eq!(z.next_with_u(first * 1.001, 1000), 1, "0.5^θ branch");
        assert_eq!(z.next_with_u(second * 0.999, 1000), 1);
        assert!(z.next_with_u(second * 1.001, 1000) >= 1);
    }

    #[test]
    fn sequential_wraps_and_discrete_skips_zero_weights() {
        let mut s = Sequential::new(5, 7);
        let v: Vec<_> = (0..5).map(|_| s.next_value()).collect();
        assert_eq!(v, [5, 6, 7, 5, 6]);
        let mut d = Discrete::new(vec![(0.0, 'a'), (1.0, 'b')]);
        let mut rng = Rng::new(1);
        assert!((0..100).all(|_| d.next(&mut rng) == 'b'));
    }
}
