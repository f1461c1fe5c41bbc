//! [`ServiceClientConfig`]: every knob of a discovery-aware client, with its
//! default and the reason for it.

use std::fmt;

use super::DiscoveryObserver;
use crate::balance::{BalanceConfig, BalancerKind};
use crate::client::ChannelConfig;
use crate::resilience::{BreakerConfig, BudgetConfig, FailMode, HedgePolicy, RetryPolicy};
use crate::SeedSource;

/// The most channels per endpoint accepted: beyond this, more connections to one
/// server only cost memory on both sides.
pub const POOL_SIZE_LIMIT: usize = 64;

/// How a [`ServiceClient`](super::ServiceClient) balances, connects, retries and
/// reports. `docs/DISCOVERY.md` explains the defaults.
#[derive(Clone)]
pub struct ServiceClientConfig {
    /// The load balancer. Default [`BalancerKind::P2cEwma`]: it reacts to a slow
    /// or overloaded instance within a few calls, which round robin never does
    /// (Finagle's and Linkerd's default for the same reason).
    pub balancer: BalancerKind,
    /// Knobs of the balancers that have any (ring size, EWMA decay).
    pub balance: BalanceConfig,
    /// Channels per endpoint, in 1..=[`POOL_SIZE_LIMIT`]. Default 1: one
    /// multiplexed connection carries many concurrent calls; raise it only when
    /// one connection's parsing is the bottleneck.
    pub pool_size: usize,
    /// Connect timeout, keepalive and limits of each channel.
    pub channel: ChannelConfig,
    /// A circuit breaker per endpoint; `None` disables breaking. Default
    /// `Some(BreakerConfig::default())`: five consecutive failures cut an endpoint
    /// off for 2.5–5 s, so a dead instance costs five calls, not every tenth.
    pub breaker: Option<BreakerConfig>,
    /// When a failed attempt is retried. Default [`RetryPolicy::default`] (3
    /// attempts, 100 ms exponential backoff with full jitter, transient codes only).
    pub retry: RetryPolicy,
    /// Where retries go. Default [`FailMode::FailOver`]: to another endpoint, the
    /// one that just failed being the likeliest to fail again.
    pub fail_mode: FailMode,
    /// The retry budget; `None` means retries are bounded only by the policy.
    /// Default `Some(BudgetConfig::default())` (20% of calls + 10/s, Finagle's):
    /// without it, a fleet-wide outage multiplies the load by `max_attempts`.
    pub budget: Option<BudgetConfig>,
    /// Hedged (backup) requests for idempotent calls; `None` (the default)
    /// disables them: hedging trades extra load for tail latency, a choice the
    /// service owner should make knowingly.
    pub hedge: Option<HedgePolicy>,
    /// The request metadata key whose value is the consistent-hash key. Default
    /// `"hash-key"`. Absent from a request, the balancer falls back (consistent
    /// hash picks a random point on its ring).
    pub hash_key: String,
    /// The request metadata key carrying a caller-chosen call id (a decimal
    /// `u64`) used in [`DiscoveryEvent`](super::DiscoveryEvent)s. Default
    /// `"call-id"`. Absent or unparsable, the client numbers calls itself from 1.
    pub call_id_key: String,
    /// The root of every random stream: balancer picks (`"balancer"`), backoff
    /// jitter (`"retry"`), each endpoint's breaker (`"breaker/<addr>"`). Default
    /// [`SeedSource::from_os`]; the simulation passes its run's seed.
    pub seed: SeedSource,
    /// Whether a call made while the client knows no instance waits for one
    /// (up to the call's deadline) instead of failing at once with `Unavailable`
    /// — gRPC's wait-for-ready. Default `true`: the set is empty only before the
    /// first instance is known (the resolver never trades a known list for an
    /// empty one), so waiting cannot hide an outage of instances the client
    /// knew; it covers the start-up race between a client's first calls and the
    /// servers' first registrations. A call with no deadline then waits as long
    /// as it takes. `false` fails such calls as soon as the resolver has
    /// answered (calls made before its first answer still wait for it).
    pub wait_for_ready: bool,
    /// Hears every event. Default `None`.
    pub observer: Option<DiscoveryObserver>,
}

impl Default for ServiceClientConfig {
    fn default() -> ServiceClientConfig {
        ServiceClientConfig {
            balancer: BalancerKind::P2cEwma,
            balance: BalanceConfig::default(),
            pool_size: 1,
            channel: ChannelConfig::default(),
            breaker: Some(BreakerConfig::default()),
            retry: RetryPolicy::default(),
            fail_mode: FailMode::FailOver,
            budget: Some(BudgetConfig::default()),
            hedge: None,
            hash_key: "hash-key".to_owned(),
            call_id_key: "call-id".to_owned(),
            seed: SeedSource::from_os(),
            wait_for_ready: true,
            observer: None,
        }
    }
}

impl fmt::Debug for ServiceClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceClientConfig")
            .field("balancer", &self.balancer)
            .field("balance", &self.balance)
            .field("pool_size", &self.pool_size)
            .field("channel", &self.channel)
            .field("breaker", &self.breaker)
            .field("retry", &self.retry)
            .field("fail_mode", &self.fail_mode)
            .field("budget", &self.budget)
            .field("hedge", &self.hedge)
            .field("hash_key", &self.hash_key)
            .field("call_id_key", &self.call_id_key)
            .field("seed", &self.seed)
            .field("wait_for_ready", &self.wait_for_ready)
            .field("observer", &self.observer.is_some())
            .finish()
    }
}

impl ServiceClientConfig {
    /// Checks every field against its documented range; the message names the
    /// field. Constructors panic on an invalid config (a programmer error).
    pub fn validate(&self) -> Result<(), String> {
        if self.pool_size == 0 || self.pool_size > POOL_SIZE_LIMIT {
            return Err(format!(
                "pool_size: {} is outside 1..={POOL_SIZE_LIMIT}",
                self.pool_size
            ));
        }
        if let Some(breaker) = &self.breaker {
            breaker.validate().map_err(|e| format!("breaker.{e}"))?;
        }
        self.retry.validate().map_err(|e| format!("retry.{e}"))?;
        if let Some(budget) = &self.budget {
            budget.validate().map_err(|e| format!("budget.{e}"))?;
        }
        if let Some(hedge) = &self.hedge {
            hedge.validate().map_err(|e| format!("hedge.{e}"))?;
        }
        Ok(())
    }
}
