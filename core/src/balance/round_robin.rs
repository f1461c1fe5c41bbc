//! Round robin: each available endpoint in turn, skipping unavailable ones.
//!
//! As in gRPC's `round_robin`, the first position is random so that many clients
//! started together do not all send their first call to the same endpoint. After
//! an update the rotation continues with the first endpoint whose address sorts
//! after the last one chosen, so a membership change neither restarts nor skips
//! the cycle.

use rand::Rng as _;

use super::{assert_normalized, Balancer, Endpoint, Pick};
use crate::rng::Rng;

/// Round robin over available endpoints.
#[derive(Debug)]
pub struct RoundRobin {
    /// The current endpoint set, to map the last choice to a position after updates.
    endpoints: Vec<Endpoint>,
    /// Index at which the next pick starts looking.
    next: usize,
    /// Address of the last endpoint picked; `None` until the first pick, when the
    /// first update draws a random start instead.
    last_addr: Option<String>,
    /// Draws the random starting position.
    rng: Rng,
}

impl RoundRobin {
    /// A round robin balancer whose starting position is drawn from `rng`.
    pub fn new(rng: Rng) -> RoundRobin {
        RoundRobin {
            endpoints: Vec::new(),
            next: 0,
            last_addr: None,
            rng,
        }
    }
}

impl Balancer for RoundRobin {
    fn name(&self) -> &'static str {
        "round_robin"
    }

    fn update(&mut self, endpoints: &[Endpoint]) {
        assert_normalized(endpoints);
        self.endpoints = endpoints.to_vec();
        self.next = match &self.last_addr {
            // Continue after the last choice: the first address sorting after it.
            Some(last) => endpoints.partition_point(|endpoint| endpoint.addr <= *last),
            None if endpoints.is_empty() => 0,
            None => self.rng.gen_range(0..endpoints.len()),
        };
    }

    fn pick(&mut self, pick: &Pick<'_>) -> Option<usize> {
        let len = self.endpoints.len();
        let chosen = (0..len)
            .map(|offset| (self.next + offset) % len)
            .find(|&index| (pick.available)(index))?;
        self.next = (chosen + 1) % len;
        self.last_addr = Some(self.endpoints[chosen].addr.clone());
        Some(chosen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::test_support::{all_available, endpoints, pick_with, t0};
    use rand::SeedableRng;

    #[test]
    fn round_robin_gives_every_endpoint_exactly_equal_picks() {
        // Proves the distribution is exact, not statistical: 4 endpoints × 250
        // rounds gives each exactly 250 picks, and consecutive picks cycle in order.
        let mut balancer = RoundRobin::new(Rng::seed_from_u64(3));
        balancer.update(&endpoints(4));
        let mut counts = [0usize; 4];
        let mut previous: Option<usize> = None;
        for _ in 0..1000 {
            let index = balancer.pick(&pick_with(t0(), &all_available)).unwrap();
            if let Some(previous) = previous {
                assert_eq!(index, (previous + 1) % 4, "picks must cycle in order");
            }
            previous = Some(index);
            counts[index] += 1;
        }
        assert_eq!(counts, [250; 4]);
    }

    #[test]
    fn round_robin_skips_unavailable_and_returns_none_when_all_are() {
        // Proves an unavailable endpoint is never picked, the others still share
        // equally, and with nothing available the answer is None.
        let mut balancer = RoundRobin::new(Rng::seed_from_u64(3));
        balancer.update(&endpoints(3));
        let without_1 = |index: usize| index != 1;
        let mut counts = [0usize; 3];
        for _ in 0..100 {
            counts[balancer.pick(&pick_with(t0(), &without_1)).unwrap()] += 1;
        }
        assert_eq!(counts, [50, 0, 50]);
        let none = |_: usize| false;
        assert_eq!(balancer.pick(&pick_with(t0(), &none)), None);
    }

    #[test]
    fn round_robin_continues_after_last_choice_across_updates() {
        // Proves membership changes keep the rotation going: after picking "b"
        // from {a,b,c}, adding "bb" makes it next, then "c".
        let mut balancer = RoundRobin::new(Rng::seed_from_u64(3));
        balancer.update(&endpoints(3));
        while balancer.pick(&pick_with(t0(), &all_available)) != Some(1) {}
        let mut grown = endpoints(3);
        grown.push(Endpoint::new("bb", 1));
        Endpoint::normalize(&mut grown);
        balancer.update(&grown);
        let next: Vec<_> = (0..2)
            .map(|_| balancer.pick(&pick_with(t0(), &all_available)).unwrap())
            .map(|index| grown[index].addr.clone())
            .collect();
        assert_eq!(next, ["bb", "c"]);
    }
}
