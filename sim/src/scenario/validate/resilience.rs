//! A client's resilience keys → [`Resilience`]: `fail_mode` and the
//! `[clients.retry]`, `[clients.breaker]`, `[clients.budget]`, `[clients.hedge]`
//! tables. Each table becomes core's own config type, filled from its
//! `Default` for the keys not given, and is then checked with that type's
//! `validate()`, so the scenario accepts exactly what the client would; a
//! `ConfigError` is reported at the line of the key it names (`core_config`).
//! The retry and breaker tables have their own files; the budget and hedge
//! tables, short, are here.

use squall::resilience::HedgeDelay;
use squall::{BudgetConfig, FailMode, HedgePolicy, RetryPolicy};
use toml::Spanned;

use super::breaker::check_breaker;
use super::core_config::{config_error, span};
use super::fields::{fraction, integer, positive_duration};
use super::retry::check_retry;
use crate::scenario::error::{did_you_mean_or_list, Locator, ScenarioError};
use crate::scenario::raw::{RawBudget, RawClientGroup, RawHedge};
use crate::scenario::schema::{MethodWeight, Resilience};

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
