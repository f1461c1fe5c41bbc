//! Load balancers: choose which endpoint of a service the next call goes to.
//!
//! # The contract
//!
//! A [`Balancer`] is a small, synchronous state machine owned by one client. The
//! client drives it with four kinds of event:
//!
//! - [`Balancer::update`] — the endpoint set changed. The new set arrives whole,
//!   sorted by address and deduplicated ([`Endpoint::normalize`] does that). Indices
//!   returned by [`Balancer::pick`] refer to the slice of the *last* update. Load
//!   state (outstanding calls, latency estimates, smooth-WRR credit) is keyed by
//!   address, so an endpoint that stays in the set keeps its history.
//! - [`Balancer::pick`] — choose one endpoint for a call (or an attempt of it). The
//!   caller says which endpoints may be chosen through [`Pick::available`]: an
//!   endpoint whose breaker is open, or on which a previous attempt of this call
//!   failed, is not available. Every balancer returns `None` exactly when no
//!   endpoint is available (weighted round robin and consistent hash also treat
//!   an endpoint of weight 0 as drained: never chosen).
//! - [`Balancer::on_start`] / [`Balancer::on_finish`] — a call started / finished.
//!   Only the load-aware balancers (least outstanding, P2C + peak EWMA) use them;
//!   the others ignore them.
//!
//! Balancers read no clock and no OS randomness: time arrives as a
//! [`tokio::time::Instant`] (virtual in the simulation) and every random choice comes
//! from the [`Rng`](crate::rng::Rng) handed to [`build`], so a seeded run picks the same endpoints
//! every time. The trait is object safe; clients hold a `Box<dyn Balancer>`.
//!
//! # Layout
//! - [`kind`]: [`BalancerKind`] (stable names, `FromStr`/`Display`), [`build`], [`BalanceConfig`].
//! - [`round_robin`]: [`RoundRobin`] — each available endpoint in turn.
//! - [`weighted_round_robin`]: [`WeightedRoundRobin`] — nginx's smooth weighted round robin.
//! - [`random`]: [`Random`] — uniform over available endpoints.
//! - [`consistent_hash`]: [`ConsistentHash`] — a ring with virtual nodes, keyed per call.
//! - [`least_outstanding`]: [`LeastOutstanding`] — fewest calls in flight, random tie-break.
//! - [`p2c_ewma`]: [`PeakEwma`] — power of two choices over peak-EWMA latency × load.
//!
//! `docs/BALANCING.md` explains each algorithm, its defaults and how to choose.

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

pub mod consistent_hash;
pub mod kind;
pub mod least_outstanding;
pub mod p2c_ewma;
pub mod random;
pub mod round_robin;
pub mod weighted_round_robin;

pub use consistent_hash::{ConsistentHash, ConsistentHashConfig};
pub use kind::{build, build_with, BalanceConfig, BalancerKind, UnknownBalancer};
pub use least_outstanding::LeastOutstanding;
pub use p2c_ewma::{PeakEwma, PeakEwmaConfig};
pub use random::Random;
pub use round_robin::RoundRobin;
pub use weighted_round_robin::WeightedRoundRobin;

/// One candidate endpoint of a service.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    /// Where to connect (`host:port`); also the key under which load state is kept.
    pub addr: String,
    /// Relative share of traffic for weighted balancers (weighted round robin,
    /// consistent hash); 0 means drained. The others ignore it.
    pub weight: u32,
}

impl Endpoint {
    /// An endpoint at `addr` with relative `weight`.
    pub fn new(addr: impl Into<String>, weight: u32) -> Endpoint {
        Endpoint {
            addr: addr.into(),
            weight,
        }
    }

    /// Sorts `endpoints` by address and keeps the first of each duplicate address,
    /// which is the form [`Balancer::update`] requires.
    pub fn normalize(endpoints: &mut Vec<Endpoint>) {
        endpoints.sort_by(|a, b| a.addr.cmp(&b.addr));
        endpoints.dedup_by(|later, earlier| later.addr == earlier.addr);
    }
}

/// Everything a balancer may consult to choose an endpoint for one call.
pub struct Pick<'a> {
    /// Per-call hash key (consistent hash); `None` means the balancer's fallback
    /// (consistent hash then picks a random point on its ring).
    pub key: Option<&'a str>,
    /// The current time, for latency estimates that decay (virtual in the simulation).
    pub now: Instant,
    /// Whether endpoint `i` (an index into the last [`Balancer::update`] slice) may
    /// be chosen: its breaker is not open and no earlier attempt of this call failed there.
    pub available: &'a dyn Fn(usize) -> bool,
}

impl fmt::Debug for Pick<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pick")
            .field("key", &self.key)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

/// A load balancer: chooses an endpoint per call from the last endpoint set.
pub trait Balancer: Send + fmt::Debug {
    /// The stable name of the algorithm, as accepted by [`BalancerKind`]'s `FromStr`.
    fn name(&self) -> &'static str;

    /// The endpoint set changed: the full new list, sorted by `addr` and
    /// deduplicated. Load state is keyed by `addr` and survives for endpoints that remain.
    ///
    /// # Panics
    /// If `endpoints` is not sorted by address or holds a duplicate address: that
    /// is a bug in the caller (use [`Endpoint::normalize`]).
    fn update(&mut self, endpoints: &[Endpoint]);

    /// Chooses an index into the last update's slice, or `None` if no endpoint is available.
    fn pick(&mut self, pick: &Pick<'_>) -> Option<usize>;

    /// A call to `addr` started (load-aware balancers count outstanding calls).
    fn on_start(&mut self, _addr: &str, _now: Instant) {}

    /// A call to `addr` finished after `rtt`, successfully or not.
    fn on_finish(&mut self, _addr: &str, _rtt: Duration, _now: Instant) {}
}

/// Asserts the [`Balancer::update`] precondition: strictly increasing addresses.
pub(crate) fn assert_normalized(endpoints: &[Endpoint]) {
    for pair in endpoints.windows(2) {
        assert!(
            pair[0].addr < pair[1].addr,
            "balancer update: endpoints must be sorted by addr and deduplicated, \
             found {:?} before {:?} (use Endpoint::normalize)",
            pair[0].addr,
            pair[1].addr
        );
    }
}

/// Fills `into` with the indices of the available endpoints among the first `len`.
pub(crate) fn collect_available(len: usize, pick: &Pick<'_>, into: &mut Vec<usize>) {
    into.clear();
    into.extend((0..len).filter(|&index| (pick.available)(index)));
}

#[cfg(test)]
pub(crate) mod test_support;

#[cfg(test)]
mod tests;
