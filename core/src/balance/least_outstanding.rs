//! Least outstanding requests: the available endpoint with the fewest calls in flight.
//!
//! Every available endpoint is compared (an exact minimum, unlike gRPC's
//! `least_request`, which compares `choice_count` = 2 random samples); the client
//! sees tens of endpoints, so the scan is cheap. Ties — common when the service is
//! idle, where every count is 0 — are broken uniformly at random with the injected
//! RNG (reservoir sampling: the k-th tied endpoint replaces the choice with
//! probability 1/k), so an idle service is not always hit at its first endpoint.
//!
//! Counts are keyed by address and survive updates. A call that finishes after its
//! endpoint left the set is ignored; counts never go below zero.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::Rng as _;
use tokio::time::Instant;

use super::{assert_normalized, Balancer, Endpoint, Pick};
use crate::rng::Rng;

/// Fewest outstanding calls, random among ties.
#[derive(Debug)]
pub struct LeastOutstanding {
    /// The current endpoint set, to map indices to addresses.
    endpoints: Vec<Endpoint>,
    /// Calls in flight per address of the current set.
    outstanding: BTreeMap<String, u64>,
    /// Breaks ties between equally loaded endpoints.
    rng: Rng,
}

impl LeastOutstanding {
    /// A least-outstanding balancer breaking ties with `rng`.
    pub fn new(rng: Rng) -> LeastOutstanding {
        LeastOutstanding {
            endpoints: Vec::new(),
            outstanding: BTreeMap::new(),
            rng,
        }
    }

    /// Calls in flight to `addr`, or `None` if it is not in the current set.
    pub fn outstanding(&self, addr: &str) -> Option<u64> {
        self.outstanding.get(addr).copied()
    }
}

impl Balancer for LeastOutstanding {
    fn name(&self) -> &'static str {
        "least_outstanding"
    }

    fn update(&mut self, endpoints: &[Endpoint]) {
        assert_normalized(endpoints);
        let mut outstanding = BTreeMap::new();
        for endpoint in endpoints {
            let count = self.outstanding.get(&endpoint.addr).copied().unwrap_or(0);
            outstanding.insert(endpoint.addr.clone(), count);
        }
        self.outstanding = outstanding;
        self.endpoints = endpoints.to_vec();
    }

    fn pick(&mut self, pick: &Pick<'_>) -> Option<usize> {
        let mut best: Option<(usize, u64)> = None;
        let mut ties: u32 = 0;
        for (index, endpoint) in self.endpoints.iter().enumerate() {
            if !(pick.available)(index) {
                continue;
            }
            let load = self.outstanding.get(&endpoint.addr).copied().unwrap_or(0);
            match best {
                Some((_, best_load)) if load > best_load => {}
                Some((_, best_load)) if load == best_load => {
                    ties += 1;
                    if self.rng.gen_range(0..ties) == 0 {
                        best = Some((index, load));
                    }
                }
                _ => {
                    best = Some((index, load));
                    ties = 1;
                }
            }
        }
        best.map(|(index, _)| index)
    }

    fn on_start(&mut self, addr: &str, _now: Instant) {
        if let Some(count) = self.outstanding.get_mut(addr) {
            *count += 1;
        }
    }

    fn on_finish(&mut self, addr: &str, _rtt: Duration, _now: Instant) {
        if let Some(count) = self.outstanding.get_mut(addr) {
            *count = count.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::test_support::{all_available, endpoints, pick_with, t0};
    use rand::SeedableRng;

    #[test]
    fn least_outstanding_picks_the_endpoint_with_fewest_calls_in_flight() {
        // Proves the minimum wins: with 3, 1 and 2 calls in flight on a, b, c,
        // every pick is b until b's count rises above the others.
        let now = t0();
        let mut balancer = LeastOutstanding::new(Rng::seed_from_u64(1));
        balancer.update(&endpoints(3));
        for (addr, calls) in [("a", 3), ("b", 1), ("c", 2)] {
            (0..calls).for_each(|_| balancer.on_start(addr, now));
        }
        assert_eq!(balancer.pick(&pick_with(now, &all_available)), Some(1));
        balancer.on_start("b", now);
        balancer.on_start("b", now);
        assert_eq!(balancer.pick(&pick_with(now, &all_available)), Some(2));
        balancer.on_finish("a", Duration::from_millis(1), now);
        balancer.on_finish("a", Duration::from_millis(1), now);
        assert_eq!(balancer.pick(&pick_with(now, &all_available)), Some(0));
    }

    #[test]
    fn least_outstanding_breaks_ties_uniformly_at_random() {
        // Proves ties do not favour the first endpoint: with nothing in flight,
        // 30,000 picks over 3 endpoints give each 10,000 ± 500 (seed 1).
        let mut balancer = LeastOutstanding::new(Rng::seed_from_u64(1));
        balancer.update(&endpoints(3));
        let mut counts = [0usize; 3];
        for _ in 0..30_000 {
            counts[balancer.pick(&pick_with(t0(), &all_available)).unwrap()] += 1;
        }
        for count in counts {
            assert!((9_500..=10_500).contains(&count), "{counts:?}");
        }
    }

    #[test]
    fn least_outstanding_keeps_counts_for_endpoints_that_stay() {
        // Proves load state is keyed by address: after an update that adds "aa"
        // before "b", b's 2 in-flight calls are still counted, and a finish for a
        // removed endpoint is ignored rather than corrupting another count.
        let now = t0();
        let mut balancer = LeastOutstanding::new(Rng::seed_from_u64(1));
        balancer.update(&endpoints(2));
        balancer.on_start("b", now);
        balancer.on_start("b", now);
        balancer.on_start("a", now);
        let mut next = vec![Endpoint::new("aa", 1), Endpoint::new("b", 1)];
        Endpoint::normalize(&mut next);
        balancer.update(&next);
        assert_eq!(balancer.outstanding("b"), Some(2));
        assert_eq!(balancer.outstanding("aa"), Some(0));
        assert_eq!(balancer.outstanding("a"), None);
        balancer.on_finish("a", Duration::from_millis(1), now);
        assert_eq!(balancer.pick(&pick_with(now, &all_available)), Some(0));
    }
}
