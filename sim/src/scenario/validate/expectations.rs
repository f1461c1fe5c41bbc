//! `[[expect]]` → [`Expectation`]s: each kind with the keys it takes, checked
//! against the clients and servers it names. The shared filter is in
//! `expectation_filter.rs`, the typed `min`/`max` values in `expectation_values.rs`.

use std::time::Duration;

use toml::Spanned;

use super::expectation_filter::check_filter;
use super::expectation_values::{
    amplification, at_least_one, bounds_ordered, bounds_present, count_value, duration_value,
    fraction_value, outcome,
};
use super::names::{Context, Role};
use crate::scenario::duration::format_duration;
use crate::scenario::error::{did_you_mean_or_list, ScenarioError};
use crate::scenario::raw::RawExpect;
use crate::scenario::schema::{Check, Expectation, Filter};

/// Every expectation kind with the kind-specific keys it takes and requires.
/// `name`, `client`, `method`, `from`, `to` are accepted by all (except `method`
/// by the breaker kinds). A new kind goes here, in [`check_kind`] and in `crate::expect`.
const KINDS: [(&str, &[&str], &[&str]); 16] = [
    ("success_rate", &["min", "max"], &[]),
    ("failed_calls", &["min", "max"], &[]),
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
                    "{kind} takes: {}, plus name, client, method, from, to, may_have_executed",
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
        "success_rate" => {
            let min = fraction_value(loc, raw.min.as_ref(), "min")?;
            let max = fraction_value(loc, raw.max.as_ref(), "max")?;
            if min.is_none() && max.is_none() {
                return Err(loc.at(
                    raw.kind.span(),
                    "success_rate needs a bound: min, max or both",
                    Some(
                        "min = 0.99 (a floor), or max = 0.9 to prove a fault had an effect".into(),
                    ),
                ));
            }
            if let (Some(min), Some(max)) = (min, max) {
                if min > max {
                    return Err(loc.at(
                        raw.kind.span(),
                        format!("success_rate min {min} is above max {max}"),
                        Some("no rate can satisfy both".into()),
                    ));
                }
            }
            Check::SuccessRate {
                min: min.unwrap_or(0.0),
                max,
            }
        }
        "failed_calls" => {
            let min = count_value(loc, raw.min.as_ref(), "min")?;
            let max = count_value(loc, raw.max.as_ref(), "max")?;
            match (min, max) {
                (None, None) => {
                    return Err(loc.at(
                        raw.kind.span(),
                        "failed_calls needs a bound: min, max or both",
                        Some("min = 1 proves the fault failed some calls".into()),
                    ))
                }
                (Some(min), Some(max)) if min > max => {
                    return Err(loc.at(
                        raw.kind.span(),
                        format!("failed_calls min {min} is above max {max}"),
                        Some("no count can satisfy both".into()),
                    ))
                }
                _ => Check::FailedCalls { min, max },
            }
        }
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
