//! `[clients.breaker]` into core's [`BreakerConfig`], checked by its `validate()`.

use std::time::Duration;

use squall::BreakerConfig;
use toml::Spanned;

use super::core_config::{config_error, span};
use super::fields::{integer, positive_duration};
use crate::scenario::error::{Locator, ScenarioError};
use crate::scenario::raw::RawBreaker;

/// `[clients.breaker]`, defaults from [`BreakerConfig`]. `consecutive_failures
/// = 0` disables that rule.
pub(super) fn check_breaker(
    loc: &Locator<'_>,
    table: &Spanned<RawBreaker>,
) -> Result<BreakerConfig, ScenarioError> {
    let raw = table.get_ref();
    let defaults = BreakerConfig::default();
    let count = |value: &Option<Spanned<i64>>, key: &str, min: i64, max: u32| {
        integer(loc, value.as_ref(), key, min, i64::from(max))
    };
    let consecutive_failures =
        match count(&raw.consecutive_failures, "consecutive_failures", 0, 10_000)? {
            None => defaults.consecutive_failures,
            Some(0) => None,
            Some(n) => Some(n),
        };
    let config = BreakerConfig {
        consecutive_failures,
        failure_rate_threshold: raw
            .failure_rate
            .as_ref()
            .map_or(defaults.failure_rate_threshold, |r| *r.get_ref()),
        window_size: count(
            &raw.window,
            "window",
            1,
            squall::resilience::breaker::WINDOW_SIZE_LIMIT,
        )?
        .unwrap_or(defaults.window_size),
        minimum_calls: count(
            &raw.minimum_calls,
            "minimum_calls",
            1,
            squall::resilience::breaker::WINDOW_SIZE_LIMIT,
        )?
        .unwrap_or(defaults.minimum_calls),
        slow_call_threshold: positive_duration(loc, raw.slow_call.as_ref(), "slow_call")?
            .or(defaults.slow_call_threshold),
        open_base: positive_duration(loc, raw.open.as_ref(), "open")?.unwrap_or(defaults.open_base),
        open_max: positive_duration(loc, raw.open_max.as_ref(), "open_max")?.unwrap_or(
            defaults
                .open_max
                .max(raw.open.as_ref().map_or(Duration::ZERO, |o| o.get_ref().0)),
        ),
        half_open_probes: count(
            &raw.half_open_probes,
            "half_open_probes",
            1,
            squall::resilience::breaker::HALF_OPEN_PROBES_LIMIT,
        )?
        .unwrap_or(defaults.half_open_probes),
    };
    let keys = [
        (
            "consecutive_failures",
            "consecutive_failures",
            span(&raw.consecutive_failures),
        ),
        (
            "failure_rate_threshold",
            "failure_rate",
            span(&raw.failure_rate),
        ),
        ("window_size", "window", span(&raw.window)),
        ("minimum_calls", "minimum_calls", span(&raw.minimum_calls)),
        ("slow_call_threshold", "slow_call", span(&raw.slow_call)),
        ("open_base", "open", span(&raw.open)),
        ("open_max", "open_max", span(&raw.open_max)),
        (
            "half_open_probes",
            "half_open_probes",
            span(&raw.half_open_probes),
        ),
    ];
    config
        .validate()
        .map_err(|e| config_error(loc, "breaker", table.span(), &e, &keys))?;
    Ok(config)
}
