//! Resilience policies: pure, synchronous state machines the client's call path
//! drives — circuit breaker, backoff, retry budget, retry decisions, fail modes and
//! hedging.
//!
//! Every type here is a pure function of its inputs: time arrives as a
//! [`tokio::time::Instant`] argument and randomness as an injected [`Rng`], so the
//! same calls in the same order give the same answers on any machine and every
//! policy is unit-tested on a virtual clock. None of them spawns, sleeps or locks;
//! the caller owns them (typically one breaker per endpoint, one budget per client)
//! and decides how to share them.
//!
//! # Layout
//! - [`breaker`]: [`CircuitBreaker`] (closed → open → half-open probes).
//! - [`backoff`]: [`Backoff`] exponential delays with [`Jitter`].
//! - [`budget`]: [`RetryBudget`], the Finagle/tower token bucket that bounds retries
//!   (and hedges) to a fraction of real traffic.
//! - [`retry`]: [`RetryPolicy`] and its [`RetryDecision`].
//! - [`policy`]: [`FailMode`] (failfast, failover, failtry).
//! - [`hedge`]: [`HedgePolicy`] and the [`LatencyWindow`] it reads percentiles from.
//!
//! Defaults and the reasons for them are in `docs/RESILIENCE.md`.
//!
//! [`Rng`]: crate::rng::Rng

pub mod backoff;
pub mod breaker;
pub mod budget;
pub mod hedge;
pub mod policy;
pub mod retry;

pub use backoff::{Backoff, Jitter};
pub use breaker::{
    counts_as_breaker_failure, BreakerConfig, BreakerOpen, BreakerOutcome, BreakerState,
    CircuitBreaker, Permit, Transition, TransitionReason,
};
pub use budget::{BudgetConfig, RetryBudget};
pub use hedge::{HedgeDelay, HedgePolicy, LatencyWindow};
pub use policy::{FailMode, ParseFailModeError};
pub use retry::{RetryDecision, RetryPolicy, StopReason};

/// A policy configuration value is out of range.
///
/// Configurations come from code and from scenario files; `validate()` on each
/// config returns this so a loader can report the file and line. Constructors
/// panic on an invalid config: reaching them with one is a programmer error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct ConfigError {
    /// The offending field, as named in the config struct (`open_max`).
    field: &'static str,
    /// What is wrong and what would be accepted.
    problem: String,
}

impl ConfigError {
    /// An error about `field`.
    pub(crate) fn new(field: &'static str, problem: impl Into<String>) -> ConfigError {
        ConfigError {
            field,
            problem: problem.into(),
        }
    }

    /// The offending field, as named in the config struct.
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// What is wrong and what would be accepted.
    pub fn problem(&self) -> &str {
        &self.problem
    }
}

/// A duration as whole nanoseconds, saturating at `u64::MAX` (584 years): every
/// duration this module handles is capped far below that by validation.
pub(crate) fn duration_nanos(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}
