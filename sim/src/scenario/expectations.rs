//! `[[expect]]` → [`Expectation`]s.

use std::time::Duration;

use toml::Spanned;

use super::duration::{format_duration, parse_duration};
use super::error::{did_you_mean_or_list, Locator, ScenarioError};
use super::raw::RawExpect;
use super::schema::{Check, Expectation, Filter, OutcomeFilter};
use super::validate::{method_name, Context, Role};

/// Every expectation kind with the kind-specific keys it takes and requires.
/// `name`, `client`, `method`, `from`, `to` are accepted by all. Extension point:
/// breaker_opened_within, breaker_closed_after, retry_amplification,
/// executions_per_call go here, in [`check_kind`] and in `crate::expect`.
const KINDS: [(&str, &[&str], &[&str]); 6] = [
    ("success_rate", &["min"], &["min"]),
    (
        "latency",
        &["percentile", "min", "max", "outcome"],
        &["percentile"],
    ),
    ("call_count", &["endpoint", "min", "max"], &["endpoint"]),
    ("call_share", &["endpoint", "min", "max"], &["endpoint"]),
    ("no_calls", &["endpoint"], &["endpoint"]),
    ("max_failed_calls", &["max"], &["max"]),
];

/// Validates every expectation, keeping file order.
pub(crate) fn check_expectations(
    cx: &Context<'_>,
    raw: &[Spanned<RawExpect>],
) -> Result<Vec<Expectation>, ScenarioError> {
    raw.iter().map(|e| check_expectation(cx, e)).collect()
}

/// One `[[expect]]` entry.
fn check_expectation(
    cx: &Context<'_>,
    spanned: &Spanned<RawExpect>,
) -> Result<Expectation, ScenarioError> {
    let raw = spanned.get_ref();
    let loc = &cx.loc;
    let kind = raw.kind.get_ref().as_str();
    let Some(&(kind, allowed, required)) = KINDS.iter().find(|(name, _, _)| *name == kind) else {
        let names: Vec<&str> = KINDS.iter().map(|(n, _, _)| *n).collect();
        return Err(loc.at(
            raw.kind.span(),
            format!("unknown expectation kind \"{kind}\""),
            Some(did_you_mean_or_list(kind, &names)),
        ));
    };
    for (key, span) in raw.present_keys() {
        if !allowed.contains(&key) {
            return Err(loc.at(
                span,
                format!("expectation kind \"{kind}\" does not take \"{key}\""),
                Some(format!(
                    "{kind} takes: {}, plus name, client, method, from, to",
                    allowed.join(", ")
                )),
            ));
        }
    }
    let present: Vec<&str> = raw.present_keys().iter().map(|(k, _)| *k).collect();
    if let Some(missing) = required.iter().find(|k| !present.contains(k)) {
        return Err(loc.at(
            raw.kind.span(),
            format!("expectation kind \"{kind}\" needs \"{missing}\""),
            Some(format!("{kind} takes: {}", allowed.join(", "))),
        ));
    }
    let filter = check_filter(cx, raw)?;
    let check = check_kind(cx, kind, raw)?;
    if matches!(check, Check::NoCalls { .. }) && (raw.from.is_none() || raw.to.is_none()) {
        return Err(loc.at(
            raw.kind.span(),
            "no_calls needs a window: from and to",
            Some("e.g. from = \"10s\", to = \"15s\"".into()),
        ));
    }
    let name = raw
        .name
        .clone()
        .unwrap_or_else(|| generated_name(kind, raw));
    Ok(Expectation {
        name,
        check,
        filter,
        line: loc.line_of(spanned.span().start),
    })
}

/// The check itself, for a known kind whose required keys are present.
fn check_kind(cx: &Context<'_>, kind: &str, raw: &RawExpect) -> Result<Check, ScenarioError> {
    let loc = &cx.loc;
    let endpoints = || match &raw.endpoint {
        Some(e) => cx.names.resolve(loc, e, "endpoint", &[Role::Server]),
        None => Ok(Vec::new()),
    };
    Ok(match kind {
        "success_rate" => Check::SuccessRate {
            min: fraction_value(loc, raw.min.as_ref(), "min")?.unwrap_or(1.0),
        },
        "latency" => {
            let percentile = raw.percentile.as_ref().map(|p| (*p.get_ref(), p.span()));
            let percentile = match percentile {
                Some((p, _)) if p > 0.0 && p <= 100.0 => p,
                Some((p, span)) => return Err(loc.at(
                    span,
                    format!("percentile {p} is out of range"),
                    Some(
                        "a percentile is above 0 and at most 100 (99 for p99, 100 for the maximum)"
                            .into(),
                    ),
                )),
                None => 99.0,
            };
            let min = duration_value(loc, raw.min.as_ref(), "min")?;
            let max = duration_value(loc, raw.max.as_ref(), "max")?;
            bounds_present(loc, raw, min.is_some() || max.is_some())?;
            bounds_ordered(loc, raw, min.zip(max).is_none_or(|(a, b)| a <= b))?;
            Check::Latency {
                percentile,
                min,
                max,
                outcome: outcome(loc, raw.outcome.as_ref())?,
            }
        }
        "call_count" => {
            let min = count_value(loc, raw.min.as_ref(), "min")?;
            let max = count_value(loc, raw.max.as_ref(), "max")?;
            bounds_present(loc, raw, min.is_some() || max.is_some())?;
            bounds_ordered(loc, raw, min.zip(max).is_none_or(|(a, b)| a <= b))?;
            Check::CallCount {
                endpoints: endpoints()?,
                min,
                max,
            }
        }
        "call_share" => {
            let min = fraction_value(loc, raw.min.as_ref(), "min")?;
            let max = fraction_value(loc, raw.max.as_ref(), "max")?;
            bounds_present(loc, raw, min.is_some() || max.is_some())?;
            bounds_ordered(loc, raw, min.zip(max).is_none_or(|(a, b)| a <= b))?;
            Check::CallShare {
                endpoints: endpoints()?,
                min,
                max,
            }
        }
        "no_calls" => Check::NoCalls {
            endpoints: endpoints()?,
        },
        "max_failed_calls" => Check::MaxFailedCalls {
            max: count_value(loc, raw.max.as_ref(), "max")?.unwrap_or(0),
        },
        // KINDS and this match list the same names; an unlisted one is a programmer error.
        other => unreachable!("expectation kind {other} is in KINDS but has no arm"),
    })
}

/// `client`, `method`, `from`, `to`.
fn check_filter(cx: &Context<'_>, raw: &RawExpect) -> Result<Filter, ScenarioError> {
    let loc = &cx.loc;
    let clients = match &raw.client {
        Some(c) => Some(cx.names.resolve(loc, c, "client", &[Role::Client])?),
        None => None,
    };
    let method = match &raw.method {
        Some(m) => {
            let method = method_name(loc, m)?;
            if !cx.methods.contains(&method) {
                let called: Vec<&str> = cx.methods.iter().map(String::as_str).collect();
                return Err(loc.at(
                    m.span(),
                    format!("no client calls method \"{method}\""),
                    Some(did_you_mean_or_list(&method, &called)),
                ));
            }
            Some(method)
        }
        None => None,
    };
    let from = raw.from.as_ref().map(|f| f.get_ref().0).unwrap_or_default();
    let to = raw.to.as_ref().map(|t| t.get_ref().0);
    for (key, value) in [("from", raw.from.as_ref()), ("to", raw.to.as_ref())] {
        if let Some(value) = value {
            if value.get_ref().0 > cx.duration {
                return Err(loc.at(
                    value.span(),
                    format!(
                        "{key} {} is after the end of the scenario ({})",
                        format_duration(value.get_ref().0),
                        format_duration(cx.duration)
                    ),
                    Some(format!("omit {key} to mean the end of the run")),
                ));
            }
        }
    }
    if let (Some(to), Some(to_span)) = (to, raw.to.as_ref()) {
        if to <= from {
            return Err(loc.at(
                to_span.span(),
                format!(
                    "empty window: to {} is not after from {}",
                    format_duration(to),
                    format_duration(from)
                ),
                Some("the window is [from, to)".into()),
            ));
        }
    }
    Ok(Filter {
        clients,
        method,
        from,
        to,
    })
}

/// At least one of `min`/`max`.
fn bounds_present(loc: &Locator<'_>, raw: &RawExpect, ok: bool) -> Result<(), ScenarioError> {
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
fn bounds_ordered(loc: &Locator<'_>, raw: &RawExpect, ok: bool) -> Result<(), ScenarioError> {
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
fn outcome(
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
fn fraction_value(
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
        other => {
            return Err(loc.at(
                raw.span(),
                format!("{key} must be a fraction from 0 to 1, got {other}"),
                Some(format!("e.g. {key} = 0.999")),
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
fn duration_value(
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

/// A `min`/`max` that must be a count ≥ 0.
fn count_value(
    loc: &Locator<'_>,
    raw: Option<&Spanned<toml::Value>>,
    key: &str,
) -> Result<Option<u64>, ScenarioError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    match raw.get_ref() {
        toml::Value::Integer(i) if *i >= 0 => Ok(Some(i.unsigned_abs())),
        other => Err(loc.at(
            raw.span(),
            format!("{key} must be a whole number ≥ 0, got {other}"),
            Some(format!("e.g. {key} = 100")),
        )),
    }
}

/// `kind endpoint=… client=… method=… [from, to)` — what the check looks at.
fn generated_name(kind: &str, raw: &RawExpect) -> String {
    let mut name = kind.to_string();
    if let Some(p) = &raw.percentile {
        name.push_str(&format!(" p{}", p.get_ref()));
    }
    for (key, value) in [
        ("endpoint", &raw.endpoint),
        ("client", &raw.client),
        ("method", &raw.method),
    ] {
        if let Some(value) = value {
            name.push_str(&format!(" {key}={}", value.get_ref()));
        }
    }
    if let Some(outcome) = &raw.outcome {
        name.push_str(&format!(" outcome={}", outcome.get_ref()));
    }
    if raw.from.is_some() || raw.to.is_some() {
        let from = raw
            .from
            .as_ref()
            .map(|f| format_duration(f.get_ref().0))
            .unwrap_or_else(|| "0s".into());
        let to = raw
            .to
            .as_ref()
            .map(|t| format_duration(t.get_ref().0))
            .unwrap_or_else(|| "end".into());
        name.push_str(&format!(" [{from}, {to})"));
    }
    name
}
