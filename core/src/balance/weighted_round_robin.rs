//! Smooth weighted round robin, exactly nginx's algorithm
//! (`ngx_http_upstream_get_peer` in `ngx_http_upstream_round_robin.c`).
//!
//! Each pick adds every taking-part endpoint's weight to its `current` credit,
//! chooses the endpoint with the largest credit (the first in address order on a
//! tie, as nginx's strict `>` does), and subtracts the total weight of the
//! taking-part endpoints from the chosen one. Over any window of `total` picks each
//! endpoint is chosen exactly `weight` times, and the choices are interleaved
//! (5:1:1 gives a,a,b,a,c,a,a rather than a,a,a,a,a,b,c).
//!
//! Only available endpoints with a non-zero weight take part; an unavailable
//! endpoint's credit is frozen until it returns. nginx's `effective_weight`
//! (lowered on failures) is left out on purpose: squall's circuit breaker removes
//! failing endpoints through [`Pick::available`] instead.

use super::{assert_normalized, Balancer, Endpoint, Pick};

/// nginx's smooth weighted round robin over available endpoints.
#[derive(Debug, Default)]
pub struct WeightedRoundRobin {
    /// The current endpoint set (weights are read on every pick).
    endpoints: Vec<Endpoint>,
    /// nginx's `current_weight` per endpoint, aligned with `endpoints`; carried
    /// over by address across updates so a membership change does not reset the
    /// interleaving of endpoints that stay.
    current: Vec<i64>,
}

impl WeightedRoundRobin {
    /// An empty balancer; call [`Balancer::update`] before picking.
    pub fn new() -> WeightedRoundRobin {
        WeightedRoundRobin::default()
    }
}

impl Balancer for WeightedRoundRobin {
    fn name(&self) -> &'static str {
        "weighted_round_robin"
    }

    fn update(&mut self, endpoints: &[Endpoint]) {
        assert_normalized(endpoints);
        let current = endpoints
            .iter()
            .map(|endpoint| {
                self.endpoints
                    .binary_search_by(|old| old.addr.cmp(&endpoint.addr))
                    .map_or(0, |old| self.current[old])
            })
            .collect();
        self.current = current;
        self.endpoints = endpoints.to_vec();
    }

    fn pick(&mut self, pick: &Pick<'_>) -> Option<usize> {
        let mut total: i64 = 0;
        let mut best: Option<usize> = None;
        for (index, endpoint) in self.endpoints.iter().enumerate() {
            if endpoint.weight == 0 || !(pick.available)(index) {
                continue;
            }
            let weight = i64::from(endpoint.weight);
            self.current[index] += weight;
            total += weight;
            if best.is_none_or(|best| self.current[index] > self.current[best]) {
                best = Some(index);
            }
        }
        let best = best?;
        self.current[best] -= total;
        Some(best)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::test_support::{all_available, pick_with, t0, weighted};

    fn sequence(balancer: &mut WeightedRoundRobin, picks: usize) -> String {
        (0..picks)
            .map(|_| balancer.pick(&pick_with(t0(), &all_available)).unwrap())
            .map(|index| (b'a' + index as u8) as char)
            .collect()
    }

    #[test]
    fn smooth_wrr_sequence_matches_nginx_for_5_1_1() {
        // Proves the algorithm is nginx's exactly: weights 5,1,1 give nginx's
        // documented sequence a,a,b,a,c,a,a, repeating every 7 picks.
        let mut balancer = WeightedRoundRobin::new();
        balancer.update(&weighted(&[5, 1, 1]));
        assert_eq!(sequence(&mut balancer, 14), "aabacaaaabacaa");
    }

    #[test]
    fn smooth_wrr_3_1_1_gives_exactly_60_20_20_in_every_window_of_5() {
        // Proves the shares are exact in every full cycle, not just on average:
        // each window of 5 consecutive picks holds a three times, b once, c once.
        let mut balancer = WeightedRoundRobin::new();
        balancer.update(&weighted(&[3, 1, 1]));
        for _ in 0..200 {
            let mut window: Vec<char> = sequence(&mut balancer, 5).chars().collect();
            window.sort_unstable();
            assert_eq!(window, ['a', 'a', 'a', 'b', 'c']);
        }
    }

    #[test]
    fn smooth_wrr_excludes_unavailable_and_zero_weight_endpoints() {
        // Proves only available, non-zero-weight endpoints take part: with b
        // unavailable and c drained (weight 0), a and d split 2:1; with nothing
        // eligible the answer is None.
        let mut balancer = WeightedRoundRobin::new();
        balancer.update(&weighted(&[2, 5, 0, 1]));
        let without_b = |index: usize| index != 1;
        let mut counts = [0usize; 4];
        for _ in 0..300 {
            counts[balancer.pick(&pick_with(t0(), &without_b)).unwrap()] += 1;
        }
        assert_eq!(counts, [200, 0, 0, 100]);
        let only_c = |index: usize| index == 2;
        assert_eq!(balancer.pick(&pick_with(t0(), &only_c)), None);
    }
}
