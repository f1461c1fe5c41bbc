//! Scenario durations turned into the wall-clock durations core is configured
//! with, under a real run's time scale (`--time-scale`). In a simulated run, and
//! in a real one at scale 1, every function returns its input unchanged.
//!
//! What is scaled: everything the harness hands core or sleeps on — connect
//! and keepalive timeouts, core's reconnect backoff, call and attempt
//! timeouts, retry backoff, breaker
//! open periods and slow-call threshold, fixed hedge delays, registry TTL,
//! heartbeat and timeouts, server service times, link latencies, workload
//! inter-arrival times, the retry budget's TTL and reserve rate. What is not:
//! a budget TTL that would fall below core's 1 s minimum (it stays at 1 s, so
//! below scale 0.1 a 10 s budget window is wider than scaled), core's internal
//! constants, and timers in users' own code (which see wall time).

use squall::resilience::HedgeDelay;
use squall::{BreakerConfig, BudgetConfig, ChannelConfig, HedgePolicy, RetryPolicy};

use super::clock::{is_real, scale, to_wall, to_wall_opt};
use crate::scenario::ConnectionConfig;

/// Channel settings of `connection`, in wall time.
/// core's reconnect backoff (a core default, not a scenario key) is scaled
/// too, so a restarted server is found as soon in scenario time.
pub fn channel(connection: &ConnectionConfig) -> ChannelConfig {
    let defaults = ChannelConfig::default();
    ChannelConfig {
        connect_timeout: to_wall(connection.connect_timeout),
        keepalive_interval: to_wall(connection.keepalive_interval),
        keepalive_timeout: to_wall(connection.keepalive_timeout),
        reconnect_backoff_initial: to_wall(defaults.reconnect_backoff_initial),
        reconnect_backoff_max: to_wall(defaults.reconnect_backoff_max),
        write_stall_timeout: to_wall(defaults.write_stall_timeout),
        ..defaults
    }
}

/// core's default channel settings in wall time (for the hosts' own clients,
/// e.g. [`crate::ServerEnv::client_to`]).
pub fn default_channel() -> ChannelConfig {
    let defaults = ChannelConfig::default();
    ChannelConfig {
        connect_timeout: to_wall(defaults.connect_timeout),
        keepalive_interval: to_wall(defaults.keepalive_interval),
        keepalive_timeout: to_wall(defaults.keepalive_timeout),
        reconnect_backoff_initial: to_wall(defaults.reconnect_backoff_initial),
        reconnect_backoff_max: to_wall(defaults.reconnect_backoff_max),
        write_stall_timeout: to_wall(defaults.write_stall_timeout),
        ..defaults
    }
}

/// `retry` in wall time.
pub fn retry(retry: &RetryPolicy) -> RetryPolicy {
    let mut scaled = retry.clone();
    scaled.backoff.initial = to_wall(retry.backoff.initial);
    scaled.backoff.max = to_wall(retry.backoff.max);
    scaled.attempt_timeout = to_wall_opt(retry.attempt_timeout);
    scaled
}

/// `breaker` in wall time.
pub fn breaker(breaker: &Option<BreakerConfig>) -> Option<BreakerConfig> {
    breaker.as_ref().map(|b| {
        let mut scaled = b.clone();
        scaled.slow_call_threshold = to_wall_opt(b.slow_call_threshold);
        scaled.open_base = to_wall(b.open_base);
        scaled.open_max = to_wall(b.open_max);
        scaled
    })
}

/// The shortest retry-budget TTL core accepts.
const BUDGET_TTL_MIN: std::time::Duration = std::time::Duration::from_secs(1);

/// `budget` in wall time: the window shrinks with the scale and the reserve
/// (retries per second) grows by the same factor, so a scaled run allows the
/// same retries per scenario second.
pub fn budget(budget: Option<BudgetConfig>) -> Option<BudgetConfig> {
    if !is_real() {
        return budget;
    }
    budget.map(|mut b| {
        b.ttl = to_wall(b.ttl).max(BUDGET_TTL_MIN.min(b.ttl));
        b.min_per_sec = (f64::from(b.min_per_sec) / scale()).round() as u32;
        b
    })
}

/// `hedge` in wall time (a percentile delay is measured, so it scales itself).
pub fn hedge(hedge: Option<HedgePolicy>) -> Option<HedgePolicy> {
    hedge.map(|mut h| {
        if let HedgeDelay::Fixed(delay) = h.delay {
            h.delay = HedgeDelay::Fixed(to_wall(delay));
        }
        h
    })
}
