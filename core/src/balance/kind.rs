//! Naming and building balancers: the stable names scenario files and configs use.

use std::fmt;
use std::str::FromStr;

use super::{
    Balancer, ConsistentHash, ConsistentHashConfig, LeastOutstanding, PeakEwma, PeakEwmaConfig,
    Random, RoundRobin, WeightedRoundRobin,
};
use crate::rng::Rng;

/// Which balancing algorithm to use. The string names are stable: they appear in
/// scenario files, configs and traces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BalancerKind {
    /// `round_robin`: each available endpoint in turn.
    RoundRobin,
    /// `weighted_round_robin`: nginx's smooth weighted round robin.
    WeightedRoundRobin,
    /// `random`: uniform over available endpoints.
    Random,
    /// `consistent_hash`: a ring with virtual nodes, keyed by [`super::Pick::key`].
    ConsistentHash,
    /// `least_outstanding`: fewest calls in flight, ties broken at random.
    LeastOutstanding,
    /// `p2c_ewma`: power of two choices over peak-EWMA latency × outstanding calls.
    P2cEwma,
}

impl BalancerKind {
    /// Every kind, in the order of the documentation.
    pub const ALL: [BalancerKind; 6] = [
        BalancerKind::RoundRobin,
        BalancerKind::WeightedRoundRobin,
        BalancerKind::Random,
        BalancerKind::ConsistentHash,
        BalancerKind::LeastOutstanding,
        BalancerKind::P2cEwma,
    ];

    /// The stable name (`round_robin`, `p2c_ewma`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            BalancerKind::RoundRobin => "round_robin",
            BalancerKind::WeightedRoundRobin => "weighted_round_robin",
            BalancerKind::Random => "random",
            BalancerKind::ConsistentHash => "consistent_hash",
            BalancerKind::LeastOutstanding => "least_outstanding",
            BalancerKind::P2cEwma => "p2c_ewma",
        }
    }
}

impl fmt::Display for BalancerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A balancer name that is not one of [`BalancerKind::ALL`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown balancer {name:?} (valid: round_robin, weighted_round_robin, random, \
     consistent_hash, least_outstanding, p2c_ewma)"
)]
pub struct UnknownBalancer {
    /// The name that was given, so the message can quote it.
    pub name: String,
}

impl FromStr for BalancerKind {
    type Err = UnknownBalancer;

    fn from_str(name: &str) -> Result<BalancerKind, UnknownBalancer> {
        BalancerKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
            .ok_or_else(|| UnknownBalancer {
                name: name.to_owned(),
            })
    }
}

/// The knobs of every balancer that has any; [`Default`] gives the documented defaults.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BalanceConfig {
    /// Ring shape for `consistent_hash`.
    pub consistent_hash: ConsistentHashConfig,
    /// Latency estimate for `p2c_ewma`.
    pub peak_ewma: PeakEwmaConfig,
}

/// Builds a balancer of `kind` with default knobs; `rng` drives its random choices
/// (derive it by name from the run's seed, e.g. `seeds.stream("client-1/balancer")`).
pub fn build(kind: BalancerKind, rng: Rng) -> Box<dyn Balancer> {
    build_with(kind, &BalanceConfig::default(), rng)
}

/// Builds a balancer of `kind` with the knobs in `config`.
pub fn build_with(kind: BalancerKind, config: &BalanceConfig, rng: Rng) -> Box<dyn Balancer> {
    match kind {
        BalancerKind::RoundRobin => Box::new(RoundRobin::new(rng)),
        BalancerKind::WeightedRoundRobin => Box::new(WeightedRoundRobin::new()),
        BalancerKind::Random => Box::new(Random::new(rng)),
        BalancerKind::ConsistentHash => {
            Box::new(ConsistentHash::new(config.consistent_hash.clone(), rng))
        }
        BalancerKind::LeastOutstanding => Box::new(LeastOutstanding::new(rng)),
        BalancerKind::P2cEwma => Box::new(PeakEwma::new(config.peak_ewma.clone(), rng)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn every_kind_round_trips_through_its_stable_name() {
        // Proves Display and FromStr agree for every kind and that the built
        // balancer reports the same name, so configs, traces and code never diverge.
        for kind in BalancerKind::ALL {
            let name = kind.to_string();
            assert_eq!(name.parse::<BalancerKind>(), Ok(kind));
            assert_eq!(build(kind, Rng::seed_from_u64(1)).name(), name);
        }
    }

    #[test]
    fn unknown_balancer_name_error_lists_the_valid_names() {
        // Proves a typo is rejected with a message that quotes it and names every
        // valid choice, so the user can fix the config without reading the source.
        let error = "p2c".parse::<BalancerKind>().unwrap_err();
        let message = error.to_string();
        assert!(message.contains("\"p2c\""), "{message}");
        for kind in BalancerKind::ALL {
            assert!(message.contains(kind.as_str()), "{message}");
        }
    }
}
