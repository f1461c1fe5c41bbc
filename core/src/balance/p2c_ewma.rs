//! Power of two choices over peak-EWMA load (Finagle's `p2cPeakEwma`, tower's
//! `balance::p2c` + `load::PeakEwma`).
//!
//! A pick draws two *distinct* available endpoints uniformly at random and sends
//! to the one with the lower cost (the first drawn on a tie, as tower does; the
//! draw order is itself random). With one available endpoint it is chosen; with
//! none the answer is `None`. Two random choices avoid both the herd behaviour of
//! "always the least loaded" across many clients and the blindness of pure random.
//!
//! **Cost** = RTT estimate × (outstanding calls + 1).
//!
//! **RTT estimate** (updated when a call finishes, in [`Balancer::on_finish`]):
//! - before the first sample it is the lower of `default_rtt` and the best
//!   current estimate among sampled endpoints — a newcomer is assumed as good as
//!   the best known endpoint, so it is probed at once instead of being starved
//!   whenever real RTTs sit below the default (Finagle starts new nodes at cost 0
//!   for the same reason; the outstanding-calls factor stops a burst) — and the
//!   first sample replaces it;
//! - a sample *above* the estimate replaces it at once (the peak: react to a
//!   slowdown within one call);
//! - otherwise `est = est·e^(−Δt/τ) + rtt·(1 − e^(−Δt/τ))`, Δt = time since the
//!   previous sample, τ = `decay`: recovery is gradual, weighted by time, not by
//!   the number of calls.
//!
//! **Idle decay.** When computing a cost at time `now`, the estimate is read as
//! `est·e^(−(now − last sample)/τ)`, i.e. it decays toward zero while no samples
//! arrive. Finagle and tower do the same (they observe a zero RTT on every read),
//! and it is what lets an endpoint that was once slow — and so stopped getting
//! calls and samples — be tried again after a few τ. Unlike tower, the read does
//! not write back: the stored estimate changes only on samples, so the estimate
//! does not depend on how often (or by which random draws) an endpoint was looked at.
//!
//! Failures are sampled like successes (the trait carries no outcome): an endpoint
//! that fails fast looks cheap. The circuit breaker, through [`Pick::available`],
//! is what keeps such an endpoint out.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::Rng as _;
use tokio::time::Instant;

use super::{assert_normalized, collect_available, Balancer, Endpoint, Pick};
use crate::rng::Rng;

/// Knobs of the peak-EWMA estimate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeakEwmaConfig {
    /// The RTT assumed for an endpoint until its first call finishes. Default
    /// 30 ms, linkerd2-proxy's `EWMA_DEFAULT_RTT` (tower itself has no default). A
    /// higher value keeps new endpoints cold longer; a lower one floods them.
    pub default_rtt: Duration,
    /// τ, the time constant of the exponential decay: after τ an old estimate
    /// keeps weight e^(−1) ≈ 37%. Default 1 s, shorter than Finagle's and
    /// linkerd2-proxy's 10 s, on measured evidence (`scenarios/balance-p2c.toml`,
    /// `slow-instance-p2c.toml`, seeds 1–3): with 10 s one outlier sample (the
    /// peak replaces the estimate at once) keeps an equal server avoided for
    /// seconds and three equal servers got 0.28–0.38 of the calls; with 1 s they
    /// get 0.317–0.349, while a 10× slower server still gets 1.5% of the calls
    /// either way (its slow replies re-assert the peak on every sample).
    pub decay: Duration,
}

impl Default for PeakEwmaConfig {
    fn default() -> PeakEwmaConfig {
        PeakEwmaConfig {
            default_rtt: Duration::from_millis(30),
            decay: Duration::from_secs(1),
        }
    }
}

/// Load state of one endpoint, kept by address across updates.
#[derive(Clone, Copy, Debug, Default)]
struct Load {
    /// Calls started and not yet finished.
    outstanding: u64,
    /// The peak-EWMA RTT estimate in seconds, as of `sampled_at`.
    estimate_secs: f64,
    /// When the last sample arrived; `None` until the first, meaning "use the default".
    sampled_at: Option<Instant>,
}

/// P2C over peak-EWMA cost.
#[derive(Debug)]
pub struct PeakEwma {
    /// Default RTT and decay constant.
    config: PeakEwmaConfig,
    /// The current endpoint set, to map indices to addresses.
    endpoints: Vec<Endpoint>,
    /// Load per address of the current set.
    loads: BTreeMap<String, Load>,
    /// Reused buffer of available indices, so a pick does not allocate.
    available: Vec<usize>,
    /// Draws the two candidates.
    rng: Rng,
}

impl PeakEwma {
    /// A P2C peak-EWMA balancer with `config`, drawing candidates from `rng`.
    pub fn new(config: PeakEwmaConfig, rng: Rng) -> PeakEwma {
        PeakEwma {
            config,
            endpoints: Vec::new(),
            loads: BTreeMap::new(),
            available: Vec::new(),
            rng,
        }
    }

    /// The stored RTT estimate of `addr` as of its last sample (the default before
    /// any), or `None` if `addr` is not in the current set.
    pub fn rtt_estimate(&self, addr: &str) -> Option<Duration> {
        let load = self.loads.get(addr)?;
        Some(match load.sampled_at {
            None => self.config.default_rtt,
            Some(_) => Duration::try_from_secs_f64(load.estimate_secs).unwrap_or(Duration::MAX),
        })
    }

    /// The cost of `addr` at `now` (estimate decayed to `now`, in seconds, ×
    /// (outstanding + 1)), or `None` if `addr` is not in the current set.
    pub fn cost(&self, addr: &str, now: Instant) -> Option<f64> {
        self.loads.get(addr).map(|load| self.load_cost(load, now))
    }

    /// The prior for an endpoint with no sample yet: the default RTT, or the
    /// best decayed estimate among sampled endpoints if that is lower.
    fn prior_secs(&self, now: Instant) -> f64 {
        self.loads
            .values()
            .filter_map(|load| {
                let sampled_at = load.sampled_at?;
                Some(load.estimate_secs * self.weight_of_old(sampled_at, now))
            })
            .fold(self.config.default_rtt.as_secs_f64(), f64::min)
    }

    fn load_cost(&self, load: &Load, now: Instant) -> f64 {
        let estimate_secs = match load.sampled_at {
            None => self.prior_secs(now),
            Some(sampled_at) => load.estimate_secs * self.weight_of_old(sampled_at, now),
        };
        // u64 → f64 loses precision only above 2^53 calls in flight.
        estimate_secs * (load.outstanding as f64 + 1.0)
    }

    /// e^(−Δt/τ): how much of an estimate made at `then` still counts at `now`.
    fn weight_of_old(&self, then: Instant, now: Instant) -> f64 {
        let elapsed_secs = now.saturating_duration_since(then).as_secs_f64();
        let decay_secs = self.config.decay.as_secs_f64();
        if decay_secs == 0.0 {
            return 0.0;
        }
        (-elapsed_secs / decay_secs).exp()
    }

    fn cost_of_index(&self, index: usize, now: Instant) -> f64 {
        self.loads
            .get(&self.endpoints[index].addr)
            .map_or(0.0, |load| self.load_cost(load, now))
    }
}

impl Balancer for PeakEwma {
    fn name(&self) -> &'static str {
        "p2c_ewma"
    }

    fn update(&mut self, endpoints: &[Endpoint]) {
        assert_normalized(endpoints);
        let mut loads = BTreeMap::new();
        for endpoint in endpoints {
            let load = self.loads.get(&endpoint.addr).copied().unwrap_or_default();
            loads.insert(endpoint.addr.clone(), load);
        }
        self.loads = loads;
        self.endpoints = endpoints.to_vec();
    }

    fn pick(&mut self, pick: &Pick<'_>) -> Option<usize> {
        collect_available(self.endpoints.len(), pick, &mut self.available);
        let count = self.available.len();
        match count {
            0 => None,
            1 => Some(self.available[0]),
            _ => {
                let first = self.rng.gen_range(0..count);
                let mut second = self.rng.gen_range(0..count - 1);
                if second >= first {
                    second += 1;
                }
                let (first, second) = (self.available[first], self.available[second]);
                let cheaper =
                    self.cost_of_index(first, pick.now) <= self.cost_of_index(second, pick.now);
                Some(if cheaper { first } else { second })
            }
        }
    }

    fn on_start(&mut self, addr: &str, _now: Instant) {
        if let Some(load) = self.loads.get_mut(addr) {
            load.outstanding += 1;
        }
    }

    fn on_finish(&mut self, addr: &str, rtt: Duration, now: Instant) {
        let Some(mut load) = self.loads.get(addr).copied() else {
            return;
        };
        load.outstanding = load.outstanding.saturating_sub(1);
        let rtt_secs = rtt.as_secs_f64();
        load.estimate_secs = match load.sampled_at {
            None => rtt_secs,
            Some(_) if rtt_secs > load.estimate_secs => rtt_secs,
            Some(sampled_at) => {
                let old = self.weight_of_old(sampled_at, now);
                load.estimate_secs * old + rtt_secs * (1.0 - old)
            }
        };
        load.sampled_at = Some(now);
        self.loads.insert(addr.to_owned(), load);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::test_support::{all_available, endpoints, pick_with, t0};
    use rand::SeedableRng;

    fn balancer(count: usize) -> PeakEwma {
        let mut balancer = PeakEwma::new(PeakEwmaConfig::default(), Rng::seed_from_u64(5));
        balancer.update(&endpoints(count));
        balancer
    }

    fn millis(duration: Option<Duration>) -> f64 {
        duration.unwrap().as_secs_f64() * 1e3
    }

    #[test]
    fn peak_ewma_takes_a_higher_sample_at_once_and_decays_a_lower_one() {
        // Proves the estimate's arithmetic: default 30 ms before any sample; the
        // first sample (100 ms) replaces it; a peak (300 ms) replaces at once; a
        // lower sample (100 ms) τ = 10 s later gives 300·e⁻¹ + 100·(1 − e⁻¹)
        // = 173.5759 ms; read τ later still, the cost has decayed to ×e⁻¹ = 63.8550 ms.
        let start = t0();
        let config = PeakEwmaConfig {
            decay: Duration::from_secs(10),
            ..PeakEwmaConfig::default()
        };
        let mut balancer = PeakEwma::new(config, Rng::seed_from_u64(5));
        balancer.update(&endpoints(1));
        assert_eq!(balancer.rtt_estimate("a"), Some(Duration::from_millis(30)));
        balancer.on_finish("a", Duration::from_millis(100), start);
        assert!((millis(balancer.rtt_estimate("a")) - 100.0).abs() < 1e-9);
        balancer.on_finish(
            "a",
            Duration::from_millis(300),
            start + Duration::from_secs(1),
        );
        assert!((millis(balancer.rtt_estimate("a")) - 300.0).abs() < 1e-9);
        balancer.on_finish(
            "a",
            Duration::from_millis(100),
            start + Duration::from_secs(11),
        );
        let estimate = millis(balancer.rtt_estimate("a"));
        assert!((estimate - 173.575_888_2).abs() < 1e-6, "{estimate}");
        let cost_ms = balancer.cost("a", start + Duration::from_secs(21)).unwrap() * 1e3;
        assert!((cost_ms - 63.855_000_8).abs() < 1e-6, "{cost_ms}");
    }

    #[test]
    fn cost_multiplies_the_estimate_by_outstanding_plus_one() {
        // Proves load counts: 3 calls in flight on the default 30 ms make the cost
        // 120 ms, and finishing one (with a 30 ms sample) brings it to 90 ms.
        let now = t0();
        let mut balancer = balancer(1);
        (0..3).for_each(|_| balancer.on_start("a", now));
        assert!((balancer.cost("a", now).unwrap() - 0.120).abs() < 1e-12);
        balancer.on_finish("a", Duration::from_millis(30), now);
        assert!((balancer.cost("a", now).unwrap() - 0.090).abs() < 1e-12);
    }

    /// Runs `calls` calls, one per millisecond; a call to endpoint `i` takes
    /// `rtt_ms[i]`. Returns the picks per endpoint.
    fn simulate(balancer: &mut PeakEwma, rtt_ms: &[u64], calls: usize) -> Vec<usize> {
        let set = endpoints(rtt_ms.len());
        let start = t0();
        let mut in_flight: Vec<(Instant, Instant, usize)> = Vec::new();
        let mut counts = vec![0; rtt_ms.len()];
        for call in 0..calls {
            let now = start + Duration::from_millis(call as u64);
            in_flight.sort_by_key(|&(finish, _, _)| finish);
            let due = in_flight.partition_point(|&(finish, _, _)| finish <= now);
            for (finish, started, index) in in_flight.drain(..due) {
                balancer.on_finish(&set[index].addr, finish - started, finish);
            }
            let index = balancer.pick(&pick_with(now, &all_available)).unwrap();
            balancer.on_start(&set[index].addr, now);
            in_flight.push((now + Duration::from_millis(rtt_ms[index]), now, index));
            counts[index] += 1;
        }
        counts
    }

    #[test]
    fn p2c_sends_far_less_traffic_to_a_slow_endpoint() {
        // Proves latency awareness: of 10,000 calls over endpoints answering in
        // 10, 10, 10 and 200 ms, the slow one gets under 2% (random would give 25%).
        let counts = simulate(&mut balancer(4), &[10, 10, 10, 200], 10_000);
        assert!(counts[3] < 200, "{counts:?}");
        for count in &counts[..3] {
            assert!(*count > 3_000, "{counts:?}");
        }
    }

    #[test]
    fn p2c_avoids_an_endpoint_with_many_calls_in_flight() {
        // Proves load awareness without any latency difference: with 50 calls
        // stuck on "a", all at the default RTT, a is picked in under 1% of
        // 3,000 picks.
        let now = t0();
        let mut balancer = balancer(3);
        (0..50).for_each(|_| balancer.on_start("a", now));
        let on_a = (0..3_000)
            .filter(|_| balancer.pick(&pick_with(now, &all_available)) == Some(0))
            .count();
        assert!(on_a < 30, "a picked {on_a} times");
    }

    #[test]
    fn p2c_picks_the_only_available_endpoint_and_none_without_any() {
        // Proves the edge cases of "two choices": one available endpoint is always
        // chosen, even when its cost is the highest; none available gives None.
        let now = t0();
        let mut balancer = balancer(3);
        (0..50).for_each(|_| balancer.on_start("b", now));
        let only_b = |index: usize| index == 1;
        assert_eq!(balancer.pick(&pick_with(now, &only_b)), Some(1));
        let none = |_: usize| false;
        assert_eq!(balancer.pick(&pick_with(now, &none)), None);
    }

    #[test]
    fn p2c_retries_a_once_slow_endpoint_after_its_estimate_decays() {
        // Proves idle decay: an endpoint whose estimate peaked at 1 s is avoided
        // while fresh, but after 60 s without samples (6τ) its cost has decayed
        // (to ~2.5 ms) below a steady 30 ms neighbour and it wins again.
        let start = t0();
        let mut balancer = balancer(2);
        balancer.on_finish("a", Duration::from_secs(1), start);
        balancer.on_finish("b", Duration::from_millis(30), start);
        let fresh = pick_with(start, &all_available);
        assert!((0..100).all(|_| balancer.pick(&fresh) == Some(1)));
        let later = start + Duration::from_secs(60);
        balancer.on_finish("b", Duration::from_millis(30), later);
        let later = pick_with(later, &all_available);
        assert!((0..100).all(|_| balancer.pick(&later) == Some(0)));
    }

    #[test]
    fn p2c_probes_a_new_endpoint_at_once_when_known_ones_beat_the_default() {
        // Proves a newcomer is not starved: with two endpoints answering in 2 ms
        // (far below the 30 ms default RTT), a third with no sample yet is costed
        // like the best known one, so it gets a fair share of picks right away.
        let now = t0();
        let mut balancer = balancer(3);
        for _ in 0..10 {
            balancer.on_finish("a", Duration::from_millis(2), now);
            balancer.on_finish("b", Duration::from_millis(2), now);
        }
        let picks = pick_with(now, &all_available);
        let on_c = (0..3000)
            .filter(|_| balancer.pick(&picks) == Some(2))
            .count();
        assert!(on_c > 600, "the new endpoint got {on_c} of 3000 picks");
    }
}
