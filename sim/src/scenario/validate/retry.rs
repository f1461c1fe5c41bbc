//! `[clients.retry]`: max_attempts, backoff (with jitter) and retryable codes,
//! into core's [`RetryPolicy`] and checked by its `validate()`.

use std::collections::BTreeSet;

use squall::{Backoff, Code, Jitter, RetryPolicy};
use toml::Spanned;

use super::core_config::{config_error, span};
use super::fields::integer;
use crate::scenario::error::{did_you_mean_or_list, Locator, ScenarioError};
use crate::scenario::raw::{RawBackoff, RawRetry};

/// Most attempts per call (core's limit).
pub const MAX_ATTEMPTS_MAX: i64 = squall::resilience::retry::MAX_ATTEMPTS_LIMIT as i64;

/// `[clients.retry]`: max_attempts (default 1), backoff, codes.
pub(super) fn check_retry(
    loc: &Locator<'_>,
    table: &Spanned<RawRetry>,
) -> Result<RetryPolicy, ScenarioError> {
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
        attempt_timeout: super::fields::positive_duration(
            loc,
            raw.attempt_timeout.as_ref(),
            "attempt_timeout",
        )?,
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
