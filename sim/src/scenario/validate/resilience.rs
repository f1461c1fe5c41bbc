//! A client's resilience keys → [`Resilience`]: `fail_mode` and the
//! `[clients.retry]`, `[clients.breaker]`, `[clients.budget]`, `[clients.hedge]`
//! tables. Each table becomes core's own config type, filled from its
//! `Default` for the keys not given, and is then checked with that type's
//! `validate()`, so the scenario accepts exactly what the client would; a
//! `ConfigError` is reported at the line of the key it names.

use std::collections::BTreeSet;
use std::ops::Range;
use std::time::Duration;

use squall::resilience::ConfigError;
use squall::resilience::HedgeDelay;
use squall::{
    Backoff, BreakerConfig, BudgetConfig, Code, FailMode, HedgePolicy, Jitter, RetryPolicy,
};
use toml::Spanned;

use super::fields::{fraction, integer, positive_duration};
use crate::scenario::error::{did_you_mean_or_list, Locator, ScenarioError};
use crate::scenario::raw::{RawBackoff, RawBreaker, RawBudget, RawClientGroup, RawHedge, RawRetry};
use crate::scenario::schema::{MethodWeight, Resilience};

/// Most attempts per call (core's limit).
pub const MAX_ATTEMPTS_MAX: i64 = squall::resilience::retry::MAX_ATTEMPTS_LIMIT as i64;

/// The resilience keys of one `[[clients]]` table; `mix` is the validated call
/// mix (hedging needs an idempotent method).
pub(crate) fn check_resilience(
    loc: &Locator<'_>,
    raw: &RawClientGroup,
    mix: &[MethodWeight],
) -> Result<Resilience, ScenarioError> {
    let fail_mode = fail_mode(loc, raw.fail_mode.as_ref())?;
    let retry = match &raw.retry {
        Some(table) => check_retry(loc, table)?,
        None => RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        },
    };
    check_mode_fits_attempts(loc, raw, fail_mode, retry.max_attempts)?;
    let breaker = raw
        .breaker
        .as_ref()
        .map(|t| check_breaker(loc, t))
        .transpose()?;
    let budget = match &raw.budget {
        Some(table) if retry.max_attempts == 1 => {
            return Err(loc.at(
                table.span(),
                "a retry budget without retries bounds nothing",
                Some("set [clients.retry] max_attempts = 3, or remove [clients.budget]".into()),
            ));
        }
        Some(table) => Some(check_budget(loc, table)?),
        None => None,
    };
    let hedge = match &raw.hedge {
        Some(table) => {
            if !mix.iter().any(|m| m.idempotent) {
                return Err(loc.at(
                    table.span(),
                    "hedging sends a second copy: declare the method idempotent",
                    Some("add idempotent = true next to method (or on a mix entry); only idempotent calls are hedged".into()),
                ));
            }
            Some(check_hedge(loc, table)?)
        }
        None => None,
    };
    Ok(Resilience {
        fail_mode,
        retry,
        breaker,
        budget,
        hedge,
    })
}

/// `fail_mode`: failfast (default), failover, failtry.
fn fail_mode(loc: &Locator<'_>, raw: Option<&Spanned<String>>) -> Result<FailMode, ScenarioError> {
    let Some(raw) = raw else {
        return Ok(FailMode::FailFast);
    };
    raw.get_ref().parse().map_err(|_| {
        let names: Vec<&str> = FailMode::ALL.iter().map(|m| m.as_str()).collect();
        loc.at(
            raw.span(),
            format!("unknown fail_mode \"{}\"", raw.get_ref()),
            Some(did_you_mean_or_list(raw.get_ref(), &names)),
        )
    })
}

/// failfast makes one attempt; failover and failtry exist to retry. A mismatch
/// is a scenario that does not do what it says.
fn check_mode_fits_attempts(
    loc: &Locator<'_>,
    raw: &RawClientGroup,
    mode: FailMode,
    max_attempts: u32,
) -> Result<(), ScenarioError> {
    let retries = max_attempts > 1;
    if mode.retries() == retries {
        return Ok(());
    }
    let span = raw
        .fail_mode
        .as_ref()
        .map(Spanned::span)
        .or_else(|| raw.retry.as_ref().map(Spanned::span))
        .unwrap_or_else(|| raw.group.span());
    if retries {
        return Err(loc.at(
            span,
            format!("max_attempts = {max_attempts} but fail_mode is failfast, which never retries"),
            Some(
                "set fail_mode = \"failover\" (another endpoint) or \"failtry\" (the same one)"
                    .into(),
            ),
        ));
    }
    Err(loc.at(
        span,
        format!("fail_mode {mode} retries, but max_attempts is 1"),
        Some("add [clients.retry] with max_attempts = 3, or use fail_mode = \"failfast\"".into()),
    ))
}

/// `[clients.retry]`: max_attempts (default 1), backoff, codes.
fn check_retry(loc: &Locator<'_>, table: &Spanned<RawRetry>) -> Result<RetryPolicy, ScenarioError> {
    let raw = table.get_ref();
    let defaults = RetryPolicy::default();
    let policy = RetryPolicy {
        max_attempts: integer(
            loc,
            raw.max_attempts.as_ref(),
            "max_attempts",
            1,
            MAX_ATTEMPTS_MAX,
        )?
        .unwrap_or(1),
        backoff: match &raw.backoff {
            Some(backoff) => check_backoff(loc, backoff)?,
            None => defaults.backoff,
        },
        retryable_codes: match &raw.codes {
            Some(codes) => check_codes(loc, codes)?,
            None => defaults.retryable_codes,
        },
    };
    let keys = [
        ("max_attempts", "max_attempts", span(&raw.max_attempts)),
        ("retryable_codes", "codes", span(&raw.codes)),
        ("initial", "backoff", span(&raw.backoff)),
        ("max", "backoff", span(&raw.backoff)),
        ("multiplier", "backoff", span(&raw.backoff)),
        ("jitter", "backoff", span(&raw.backoff)),
    ];
    policy
        .validate()
        .map_err(|e| config_error(loc, "retry", table.span(), &e, &keys))?;
    Ok(policy)
}

/// `backoff = { initial, max, multiplier, jitter }`, defaults from [`Backoff`].
fn check_backoff(loc: &Locator<'_>, table: &Spanned<RawBackoff>) -> Result<Backoff, ScenarioError> {
    let raw = table.get_ref();
    let defaults = Backoff::default();
    let backoff = Backoff {
        initial: raw
            .initial
            .as_ref()
            .map_or(defaults.initial, |d| d.get_ref().0),
        max: raw.max.as_ref().map_or(defaults.max, |d| d.get_ref().0),
        multiplier: raw
            .multiplier
            .as_ref()
            .map_or(defaults.multiplier, |m| *m.get_ref()),
        jitter: match &raw.jitter {
            Some(jitter) => check_jitter(loc, jitter)?,
            None => defaults.jitter,
        },
    };
    let keys = [
        ("initial", "backoff.initial", span(&raw.initial)),
        ("max", "backoff.max", span(&raw.max)),
        ("multiplier", "backoff.multiplier", span(&raw.multiplier)),
        ("jitter", "backoff.jitter", span(&raw.jitter)),
    ];
    backoff
        .validate()
        .map_err(|e| config_error(loc, "retry", table.span(), &e, &keys))?;
    Ok(backoff)
}

/// `jitter`: `"full"`, `"none"`, or a fraction `f` for `base × U(1 − f, 1 + f)`.
fn check_jitter(loc: &Locator<'_>, raw: &Spanned<toml::Value>) -> Result<Jitter, ScenarioError> {
    let fraction = match raw.get_ref() {
        toml::Value::String(text) => {
            return match text.as_str() {
                "full" => Ok(Jitter::Full),
                "none" => Ok(Jitter::None),
                other => Err(loc.at(
                    raw.span(),
                    format!("unknown jitter \"{other}\""),
                    Some(format!(
                        "{}, or a fraction such as 0.2",
                        did_you_mean_or_list(other, &["full", "none"])
                    )),
                )),
            };
        }
        toml::Value::Float(f) => *f,
        toml::Value::Integer(i @ (0 | 1)) => *i as f64,
        other => {
            return Err(loc.at(
                raw.span(),
                format!("jitter must be \"full\", \"none\" or a fraction, got {other}"),
                Some("e.g. jitter = \"full\" or jitter = 0.2".into()),
            ))
        }
    };
    if !(0.0..=1.0).contains(&fraction) {
        return Err(loc.at(
            raw.span(),
            format!("jitter = {fraction} is out of range"),
            Some("a proportional jitter is a fraction from 0 to 1; 0.2 means ±20%".into()),
        ));
    }
    Ok(Jitter::Proportional(fraction))
}

/// `codes = ["Unavailable", …]`: status code names, not empty, never `Ok`.
fn check_codes(
    loc: &Locator<'_>,
    raw: &Spanned<Vec<Spanned<String>>>,
) -> Result<BTreeSet<Code>, ScenarioError> {
    if raw.get_ref().is_empty() {
        return Err(loc.at(
            raw.span(),
            "codes is empty: nothing would be retried",
            Some(
                "e.g. codes = [\"Unavailable\", \"DeadlineExceeded\"], or set max_attempts = 1"
                    .into(),
            ),
        ));
    }
    let names: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
    let mut codes = BTreeSet::new();
    for name in raw.get_ref() {
        let text = name.get_ref().as_str();
        let Some(code) = Code::ALL.into_iter().find(|c| c.as_str() == text) else {
            return Err(loc.at(
                name.span(),
                format!("unknown status code \"{text}\""),
                Some(did_you_mean_or_list(text, &names[1..])),
            ));
        };
        if code == Code::Ok {
            return Err(loc.at(
                name.span(),
                "Ok is not a failure and cannot be retried",
                Some("remove it".into()),
            ));
        }
        codes.insert(code);
    }
    Ok(codes)
}

/// `[clients.breaker]`, defaults from [`BreakerConfig`]. `consecutive_failures
/// = 0` disables that rule.
fn check_breaker(
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

/// `[clients.budget]`, defaults from [`BudgetConfig`].
fn check_budget(
    loc: &Locator<'_>,
    table: &Spanned<RawBudget>,
) -> Result<BudgetConfig, ScenarioError> {
    let raw = table.get_ref();
    let defaults = BudgetConfig::default();
    let config = BudgetConfig {
        ttl: positive_duration(loc, raw.ttl.as_ref(), "ttl")?.unwrap_or(defaults.ttl),
        min_per_sec: integer(
            loc,
            raw.min_per_sec.as_ref(),
            "min_per_sec",
            0,
            i64::from(squall::resilience::budget::MIN_PER_SEC_LIMIT),
        )?
        .unwrap_or(defaults.min_per_sec),
        retry_ratio: raw
            .ratio
            .as_ref()
            .map_or(defaults.retry_ratio, |r| *r.get_ref()),
    };
    let keys = [
        ("ttl", "ttl", span(&raw.ttl)),
        ("min_per_sec", "min_per_sec", span(&raw.min_per_sec)),
        ("retry_ratio", "ratio", span(&raw.ratio)),
    ];
    config
        .validate()
        .map_err(|e| config_error(loc, "budget", table.span(), &e, &keys))?;
    Ok(config)
}

/// `[clients.hedge]`: `delay` (fixed) or `percentile` (of recent latencies,
/// 0 < p ≤ 100; default 95), `max_extra`, `min_samples`; defaults from [`HedgePolicy`].
fn check_hedge(loc: &Locator<'_>, table: &Spanned<RawHedge>) -> Result<HedgePolicy, ScenarioError> {
    let raw = table.get_ref();
    let defaults = HedgePolicy::default();
    let delay = match (&raw.delay, &raw.percentile) {
        (Some(delay), None) => {
            HedgeDelay::Fixed(positive_duration(loc, Some(delay), "delay")?.unwrap_or_default())
        }
        (None, Some(percentile)) => {
            let p = *percentile.get_ref();
            if !(p > 0.0 && p <= 100.0) {
                return Err(loc.at(
                    percentile.span(),
                    format!("percentile {p} is out of range"),
                    Some(
                        "a percentile is above 0 and at most 100; 95 hedges the slowest 5%".into(),
                    ),
                ));
            }
            HedgeDelay::Percentile(p / 100.0)
        }
        (None, None) => defaults.delay,
        (Some(delay), Some(_)) => {
            return Err(loc.at(
                delay.span(),
                "both delay and percentile are set",
                Some(
                    "hedge after a fixed delay or after a percentile of recent latencies: keep one"
                        .into(),
                ),
            ))
        }
    };
    let policy = HedgePolicy {
        delay,
        max_extra_ratio: fraction(loc, raw.max_extra.as_ref(), "max_extra")?
            .unwrap_or(defaults.max_extra_ratio),
        min_samples: integer(
            loc,
            raw.min_samples.as_ref(),
            "min_samples",
            1,
            squall::resilience::hedge::LATENCY_WINDOW_LIMIT as i64,
        )?
        .map_or(defaults.min_samples, |n| n as usize),
    };
    let keys = [
        ("delay", "percentile", span(&raw.percentile)),
        ("max_extra_ratio", "max_extra", span(&raw.max_extra)),
        ("min_samples", "min_samples", span(&raw.min_samples)),
    ];
    policy
        .validate()
        .map_err(|e| config_error(loc, "hedge", table.span(), &e, &keys))?;
    Ok(policy)
}

/// The span of an optional spanned key.
fn span<T>(value: &Option<Spanned<T>>) -> Option<Range<usize>> {
    value.as_ref().map(Spanned::span)
}

/// A core `ConfigError` as a located scenario error: at the key it names (core
/// field → file key), or at the table when that key was not written (a default
/// that conflicts with a written key).
fn config_error(
    loc: &Locator<'_>,
    table: &str,
    table_span: Range<usize>,
    error: &ConfigError,
    keys: &[(&str, &str, Option<Range<usize>>)],
) -> ScenarioError {
    let found = keys.iter().find(|(field, _, _)| *field == error.field());
    let key = found.map_or(error.field(), |(_, key, _)| key);
    let at = found
        .and_then(|(_, _, span)| span.clone())
        .unwrap_or(table_span);
    loc.at(
        at,
        format!("[clients.{table}] {key}: {}", error.problem()),
        Some(format!(
            "keys not written take core's defaults; see [clients.{table}] in docs/SCENARIOS.md"
        )),
    )
}
