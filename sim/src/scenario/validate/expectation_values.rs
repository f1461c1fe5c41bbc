//! The typed values of an `[[expect]]` entry. `min` and `max` mean a fraction,
//! a duration, a count or attempts per call depending on the kind, so they are
//! read as any TOML value and typed here, one function per meaning.

use std::time::Duration;

use toml::Spanned;

use crate::scenario::duration::parse_duration;
use crate::scenario::error::{did_you_mean_or_list, Locator, ScenarioError};
use crate::scenario::raw::RawExpect;
use crate::scenario::schema::OutcomeFilter;

/// A value of the wrong type for `key`. A number in quotes (`min = "0.99"`) is
/// the same mistake as `rate = "100"`, which serde reports for typed keys (see
/// `error.rs`); min/max take any TOML value, so it is caught here and gets the
/// same message: the key, what it must be, and the line without the quotes.
fn wrong_type(
    loc: &Locator<'_>,
    raw: &Spanned<toml::Value>,
    key: &str,
    wanted: &str,
    example: String,
) -> ScenarioError {
    if let toml::Value::String(text) = raw.get_ref() {
        if text.parse::<f64>().is_ok() {
            return loc.at(
                raw.span(),
                format!("\"{key}\" must be {wanted}, not the string \"{text}\""),
                Some(format!("write {key} = {text}, without quotes")),
            );
        }
    }
    loc.at(
        raw.span(),
        format!("{key} must be {wanted}, got {}", raw.get_ref()),
        Some(example),
    )
}

/// At least one of `min`/`max`.
pub(super) fn bounds_present(
    loc: &Locator<'_>,
    raw: &RawExpect,
    ok: bool,
) -> Result<(), ScenarioError> {
    if ok {
        return Ok(());
    }
    Err(loc.at(
        raw.kind.span(),
        format!(
            "expectation \"{}\" sets neither min nor max",
            raw.kind.get_ref()
        ),
        Some("set min, max or both".into()),
    ))
}

/// `min ≤ max` when both are set.
pub(super) fn bounds_ordered(
    loc: &Locator<'_>,
    raw: &RawExpect,
    ok: bool,
) -> Result<(), ScenarioError> {
    if ok {
        return Ok(());
    }
    let span = raw
        .min
        .as_ref()
        .map(Spanned::span)
        .unwrap_or_else(|| raw.kind.span());
    Err(loc.at(span, "min is above max", Some("swap them".into())))
}

/// `outcome`: any (default), ok, failed.
pub(super) fn outcome(
    loc: &Locator<'_>,
    raw: Option<&Spanned<String>>,
) -> Result<OutcomeFilter, ScenarioError> {
    let Some(raw) = raw else {
        return Ok(OutcomeFilter::Any);
    };
    match raw.get_ref().as_str() {
        "any" => Ok(OutcomeFilter::Any),
        "ok" => Ok(OutcomeFilter::Ok),
        "failed" => Ok(OutcomeFilter::Failed),
        other => Err(loc.at(
            raw.span(),
            format!("unknown outcome \"{other}\""),
            Some(did_you_mean_or_list(other, &["any", "ok", "failed"])),
        )),
    }
}

/// A `min`/`max` that must be a fraction 0..=1.
pub(super) fn fraction_value(
    loc: &Locator<'_>,
    raw: Option<&Spanned<toml::Value>>,
    key: &str,
) -> Result<Option<f64>, ScenarioError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let value = match raw.get_ref() {
        toml::Value::Float(f) => *f,
        toml::Value::Integer(i @ (0 | 1)) => *i as f64,
        _ => {
            return Err(wrong_type(
                loc,
                raw,
                key,
                "a fraction from 0 to 1",
                format!("e.g. {key} = 0.999"),
            ))
        }
    };
    if !(0.0..=1.0).contains(&value) {
        return Err(loc.at(
            raw.span(),
            format!("{key} = {value} is out of range"),
            Some(format!(
                "{key} is a fraction from 0 to 1; 0.999 means 99.9%"
            )),
        ));
    }
    Ok(Some(value))
}

/// A `min`/`max` that must be a duration string.
pub(super) fn duration_value(
    loc: &Locator<'_>,
    raw: Option<&Spanned<toml::Value>>,
    key: &str,
) -> Result<Option<Duration>, ScenarioError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    match raw.get_ref() {
        toml::Value::String(text) => parse_duration(text)
            .map(Some)
            .map_err(|e| loc.at(raw.span(), format!("{key}: {e}"), None)),
        other => Err(loc.at(
            raw.span(),
            format!("{key} must be a duration, got {other}"),
            Some(format!("e.g. {key} = \"50ms\"")),
        )),
    }
}

/// A `min`/`max` count that must be at least 1 (0 would make the check
/// meaningless: "at least zero openings", "at most zero executions per call").
pub(super) fn at_least_one(
    loc: &Locator<'_>,
    raw: Option<&Spanned<toml::Value>>,
    key: &str,
) -> Result<Option<u64>, ScenarioError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    match raw.get_ref() {
        toml::Value::Integer(i) if *i >= 1 => Ok(Some(i.unsigned_abs())),
        _ => Err(wrong_type(
            loc,
            raw,
            key,
            "a whole number ≥ 1",
            format!("e.g. {key} = 1"),
        )),
    }
}

/// retry_amplification's `max`: attempts per call, a number ≥ 1 (every call
/// makes at least one attempt), at most 100.
pub(super) fn amplification(
    loc: &Locator<'_>,
    raw: Option<&Spanned<toml::Value>>,
) -> Result<Option<f64>, ScenarioError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let value = match raw.get_ref() {
        toml::Value::Float(f) => *f,
        toml::Value::Integer(i) => *i as f64,
        _ => {
            return Err(wrong_type(
                loc,
                raw,
                "max",
                "attempts per call",
                "e.g. max = 1.25 (at most 25% extra attempts)".into(),
            ))
        }
    };
    if !(1.0..=100.0).contains(&value) {
        return Err(loc.at(
            raw.span(),
            format!("max = {value} is out of range"),
            Some("attempts per call is at least 1 (no retries); 1.2 allows 20% extra".into()),
        ));
    }
    Ok(Some(value))
}

/// A `min`/`max` that must be a count ≥ 0.
pub(super) fn count_value(
    loc: &Locator<'_>,
    raw: Option<&Spanned<toml::Value>>,
    key: &str,
) -> Result<Option<u64>, ScenarioError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    match raw.get_ref() {
        toml::Value::Integer(i) if *i >= 0 => Ok(Some(i.unsigned_abs())),
        _ => Err(wrong_type(
            loc,
            raw,
            key,
            "a whole number ≥ 0",
            format!("e.g. {key} = 100"),
        )),
    }
}
