//! `[[expect]]` → [`Expectation`]s.

use std::time::Duration;

use toml::Spanned;

use super::fields::method_name;
use super::names::{Context, Role};
use crate::scenario::duration::{format_duration, parse_duration};
use crate::scenario::error::{did_you_mean_or_list, Locator, ScenarioError};
use crate::scenario::raw::RawExpect;
use crate::scenario::schema::{Check, Expectation, Filter, OutcomeFilter};

/// Every expectation kind with the kind-specific keys it takes and requires.
/// `name`, `client`, `method`, `from`, `to` are accepted by all (except `method`
/// by the breaker kinds). A new kind goes here, in [`check_kind`] and in `crate::expect`.
const KINDS: [(&str, &[&str], &[&str]); 15] = [
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
    ("breaker_opened", &["endpoint", "min"], &["endpoint"]),
    ("breaker_closed", &["endpoint"], &["endpoint"]),
    (
        "breaker_min_open",
        &["endpoint", "min"],
        &["endpoint", "min"],
    ),
    ("retry_amplification", &["max"], &["max"]),
    ("executions_per_call", &["max"], &["max"]),
    ("key_affinity", &["max_endpoints"], &[]),
    (
        "keys_moved_only_from",
        &["endpoint", "at"],
        &["endpoint", "at"],
    ),
    ("handlers_end_by_deadline", &["slack"], &["slack"]),
    ("event", &["text", "on", "min", "max"], &["text"]),
];

/// The kinds that read breaker transitions: per endpoint, never per method.
const BREAKER_KINDS: [&str; 3] = ["breaker_opened", "breaker_closed", "breaker_min_open"];

/// The kinds that read hash keys.
const KEY_KINDS: [&str; 2] = ["key_affinity", "keys_moved_only_from"];

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
    check_kind_fits_clients(cx, kind, raw, &filter)?;
    let check = check_kind(cx, kind, raw, &filter)?;
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

/// Breaker kinds need a client with a breaker (and take no method); key kinds
/// need a client that sends hash keys. Otherwise the check could never pass, or
/// would pass for the wrong reason.
fn check_kind_fits_clients(
    cx: &Context<'_>,
    kind: &str,
    raw: &RawExpect,
    filter: &Filter,
) -> Result<(), ScenarioError> {
    let loc = &cx.loc;
    let admitted = || {
        cx.clients
            .iter()
            .filter(|g| g.hosts.iter().any(|h| filter.admits_client(h)))
    };
    if BREAKER_KINDS.contains(&kind) {
        if let Some(method) = &raw.method {
            return Err(loc.at(
                method.span(),
                format!("{kind} takes no method: a breaker guards an endpoint for every method"),
                Some("remove method".into()),
            ));
        }
        if !admitted().any(|g| g.resilience.breaker.is_some()) {
            return Err(loc.at(
                raw.kind.span(),
                format!("{kind}: no client it looks at has a [clients.breaker]"),
                Some("add a [clients.breaker] table to the client group".into()),
            ));
        }
    }
    if KEY_KINDS.contains(&kind) && !admitted().any(|g| g.hash_keys.is_some()) {
        return Err(loc.at(
            raw.kind.span(),
            format!("{kind}: no client it looks at sends hash keys"),
            Some("add hash_keys = 200 to the client group".into()),
        ));
    }
    Ok(())
}

/// `endpoint` for the kinds that follow one server host (breakers, keys): a
/// group is refused, since "the breaker of server" is not one breaker.
fn one_endpoint(cx: &Context<'_>, kind: &str, raw: &RawExpect) -> Result<String, ScenarioError> {
    let Some(endpoint) = &raw.endpoint else {
        return Ok(String::new());
    };
    let hosts = cx
        .names
        .resolve(&cx.loc, endpoint, "endpoint", &[Role::Server])?;
    match hosts.as_slice() {
        [host] if !cx.names.is_group(endpoint.get_ref()) => Ok(host.clone()),
        _ => Err(cx.loc.at(
            endpoint.span(),
            format!(
                "{kind} follows one server host, not the group \"{}\"",
                endpoint.get_ref()
            ),
            Some(format!(
                "name one of: {}; add an expectation per host",
                hosts.join(", ")
            )),
        )),
    }
}

/// The check itself, for a known kind whose required keys are present.
fn check_kind(
    cx: &Context<'_>,
    kind: &str,
    raw: &RawExpect,
    filter: &Filter,
) -> Result<Check, ScenarioError> {
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
        "event" => {
            let min = count_value(loc, raw.min.as_ref(), "min")?;
            let max = count_value(loc, raw.max.as_ref(), "max")?;
            bounds_ordered(loc, raw, min.zip(max).is_none_or(|(a, b)| a <= b))?;
            let text = raw
                .text
                .as_ref()
                .map(|t| t.get_ref().trim().to_owned())
                .unwrap_or_default();
            if text.is_empty() {
                let span = raw.text.as_ref().map_or(raw.kind.span(), Spanned::span);
                return Err(loc.at(
                    span,
                    "event text is empty".to_owned(),
                    Some("give part of a trace line, e.g. text = \"registry.expire instance=server-2\"".to_owned()),
                ));
            }
            let on = match &raw.on {
                None => None,
                Some(host) => {
                    let name = host.get_ref();
                    if !(cx.names.is_host(name)
                        || (cx.registry && name == crate::scenario::schema::REGISTRY_HOST))
                    {
                        return Err(loc.at(
                            host.span(),
                            format!("no host named \"{name}\""),
                            Some("`on` is the host that records the event: a server, client, `registry` or `sim`".to_owned()),
                        ));
                    }
                    Some(name.clone())
                }
            };
            Check::Event {
                text,
                on,
                min: if min.is_none() && max.is_none() {
                    Some(1)
                } else {
                    min
                },
                max,
            }
        }
        "no_calls" => Check::NoCalls {
            endpoints: endpoints()?,
        },
        "max_failed_calls" => Check::MaxFailedCalls {
            max: count_value(loc, raw.max.as_ref(), "max")?.unwrap_or(0),
        },
        "breaker_opened" => Check::BreakerOpened {
            endpoint: one_endpoint(cx, kind, raw)?,
            min: at_least_one(loc, raw.min.as_ref(), "min")?.unwrap_or(1),
        },
        "breaker_closed" => Check::BreakerClosed {
            endpoint: one_endpoint(cx, kind, raw)?,
        },
        "breaker_min_open" => Check::BreakerMinOpen {
            endpoint: one_endpoint(cx, kind, raw)?,
            min: duration_value(loc, raw.min.as_ref(), "min")?.unwrap_or_default(),
        },
        "retry_amplification" => Check::RetryAmplification {
            max: amplification(loc, raw.max.as_ref())?.unwrap_or(1.0),
        },
        "executions_per_call" => Check::ExecutionsPerCall {
            max: at_least_one(loc, raw.max.as_ref(), "max")?.unwrap_or(1),
        },
        "key_affinity" => Check::KeyAffinity {
            max_endpoints: match &raw.max_endpoints {
                Some(n) if *n.get_ref() >= 1 => n.get_ref().unsigned_abs(),
                Some(n) => {
                    return Err(loc.at(
                        n.span(),
                        format!("max_endpoints = {} is out of range", n.get_ref()),
                        Some("at least 1: 1 means each key sticks to one endpoint".into()),
                    ))
                }
                None => 1,
            },
        },
        "keys_moved_only_from" => Check::KeysMovedOnlyFrom {
            endpoint: one_endpoint(cx, kind, raw)?,
            at: moment(cx, raw, filter)?,
        },
        "handlers_end_by_deadline" => Check::HandlersEndByDeadline {
            slack: raw
                .slack
                .as_ref()
                .map(|s| s.get_ref().0)
                .unwrap_or_default(),
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

/// A `min`/`max` count that must be at least 1 (0 would make the check
/// meaningless: "at least zero openings", "at most zero executions per call").
fn at_least_one(
    loc: &Locator<'_>,
    raw: Option<&Spanned<toml::Value>>,
    key: &str,
) -> Result<Option<u64>, ScenarioError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    match raw.get_ref() {
        toml::Value::Integer(i) if *i >= 1 => Ok(Some(i.unsigned_abs())),
        other => Err(loc.at(
            raw.span(),
            format!("{key} must be a whole number ≥ 1, got {other}"),
            Some(format!("e.g. {key} = 1")),
        )),
    }
}

/// retry_amplification's `max`: attempts per call, a number ≥ 1 (every call
/// makes at least one attempt), at most 100.
fn amplification(
    loc: &Locator<'_>,
    raw: Option<&Spanned<toml::Value>>,
) -> Result<Option<f64>, ScenarioError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let value = match raw.get_ref() {
        toml::Value::Float(f) => *f,
        toml::Value::Integer(i) => *i as f64,
        other => {
            return Err(loc.at(
                raw.span(),
                format!("max must be attempts per call, got {other}"),
                Some("e.g. max = 1.25 (at most 25% extra attempts)".into()),
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

/// keys_moved_only_from's `at`: within the run and inside the window, so there
/// are calls on both sides of it.
fn moment(cx: &Context<'_>, raw: &RawExpect, filter: &Filter) -> Result<Duration, ScenarioError> {
    let Some(at) = &raw.at else {
        return Ok(Duration::ZERO);
    };
    let value = at.get_ref().0;
    let inside =
        value > filter.from && filter.to.is_none_or(|to| value < to) && value < cx.duration;
    if !inside {
        return Err(cx.loc.at(
            at.span(),
            format!(
                "at {} is not inside the window and the run",
                format_duration(value)
            ),
            Some("keys are compared before and after `at`: put it after from and before to and duration".into()),
        ));
    }
    Ok(value)
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
    if let Some(at) = &raw.at {
        name.push_str(&format!(" at={}", format_duration(at.get_ref().0)));
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
