//! Random: uniform over the available endpoints, drawn from the injected RNG.
//!
//! Weights are ignored. Random needs no shared state, which makes it the baseline
//! the load-aware balancers are measured against.

use rand::Rng as _;

use super::{assert_normalized, collect_available, Balancer, Endpoint, Pick};
use crate::rng::Rng;

/// Uniform random choice among available endpoints.
#[derive(Debug)]
pub struct Random {
    /// How many endpoints the last update held.
    len: usize,
    /// Reused buffer of available indices, so a pick does not allocate.
    available: Vec<usize>,
    /// The injected, seeded generator: same seed, same picks.
    rng: Rng,
}

impl Random {
    /// A random balancer drawing from `rng`.
    pub fn new(rng: Rng) -> Random {
        Random {
            len: 0,
            available: Vec::new(),
            rng,
        }
    }
}

impl Balancer for Random {
    fn name(&self) -> &'static str {
        "random"
    }

    fn update(&mut self, endpoints: &[Endpoint]) {
        assert_normalized(endpoints);
        self.len = endpoints.len();
    }

    fn pick(&mut self, pick: &Pick<'_>) -> Option<usize> {
        collect_available(self.len, pick, &mut self.available);
        if self.available.is_empty() {
            return None;
        }
        let chosen = self.rng.gen_range(0..self.available.len());
        Some(self.available[chosen])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::test_support::{all_available, endpoints, pick_with, t0};
    use rand::SeedableRng;

    #[test]
    fn random_spreads_within_five_percent_of_uniform_for_seed_7() {
        // Proves the picks are uniform: 40,000 picks over 4 endpoints with seed 7
        // give each 10,000 ± 500 (the binomial standard deviation is ~87, so the
        // bound is ~5.8σ: a real bias fails it, sampling noise does not).
        let mut balancer = Random::new(Rng::seed_from_u64(7));
        balancer.update(&endpoints(4));
        let mut counts = [0usize; 4];
        for _ in 0..40_000 {
            counts[balancer.pick(&pick_with(t0(), &all_available)).unwrap()] += 1;
        }
        for count in counts {
            assert!((9_500..=10_500).contains(&count), "{counts:?}");
        }
    }

    #[test]
    fn random_never_picks_unavailable_and_returns_none_when_all_are() {
        // Proves availability is respected on every draw and that an empty
        // choice is None rather than a panic or an out-of-range index.
        let mut balancer = Random::new(Rng::seed_from_u64(7));
        balancer.update(&endpoints(5));
        let odd_only = |index: usize| index % 2 == 1;
        for _ in 0..1000 {
            let index = balancer.pick(&pick_with(t0(), &odd_only)).unwrap();
            assert!(index == 1 || index == 3, "picked {index}");
        }
        let none = |_: usize| false;
        assert_eq!(balancer.pick(&pick_with(t0(), &none)), None);
    }
}
