//! `[[faults]]` → the sorted [`Fault`] timeline.

use toml::Spanned;

use super::fields::{fraction, latency};
use super::names::{Context, Role};
use super::timeline;
use crate::scenario::duration::format_duration;
use crate::scenario::error::{count, did_you_mean_or_list, ScenarioError};
use crate::scenario::raw::RawFault;
use crate::scenario::schema::{Fault, FaultAction, Link};

/// Every fault kind, with the keys it takes besides `at` and `kind`, and which of
/// them are required. (A join is a server's `start_at`, not a fault.)
const KINDS: [(&str, &[&str], &[&str]); 13] = [
    ("partition", &["between"], &["between"]),
    ("partition_oneway", &["from", "to"], &["from", "to"]),
    ("heal", &["between"], &["between"]),
    ("heal_oneway", &["from", "to"], &["from", "to"]),
    ("hold", &["between"], &["between"]),
    ("release", &["between"], &["between"]),
    ("crash", &["host"], &["host"]),
    ("restart", &["host"], &["host"]),
    ("silent_death", &["host"], &["host"]),
    ("leave", &["host"], &["host"]),
    (
        "link_latency",
        &["between", "latency"],
        &["between", "latency"],
    ),
    ("loss", &["between", "rate"], &["rate"]),
    (
        "server_behaviour",
        &["host", "latency", "error_rate"],
        &["host"],
    ),
];

/// Accepted spellings that are not canonical kinds.
const ALIASES: [(&str, &str); 3] = [
    ("repair", "heal"),
    ("repair_oneway", "heal_oneway"),
    ("server_behavior", "server_behaviour"),
];

/// An example for each key, for "needs key" hints.
fn example(key: &str) -> &'static str {
    match key {
        "between" => "between = [\"client-1\", \"server-1\"]",
        "from" => "from = \"client-1\"",
        "to" => "to = \"server-1\"",
        "host" => "host = \"server-2\"",
        "latency" => "latency = \"200ms\"",
        "rate" => "rate = 0.05",
        _ => "see docs/SCENARIOS.md",
    }
}

/// Validates every fault and sorts them by time (stable).
pub(crate) fn check_faults(
    cx: &Context<'_>,
    raw: &[Spanned<RawFault>],
) -> Result<Vec<Fault>, ScenarioError> {
    let mut faults = Vec::with_capacity(raw.len());
    for fault in raw {
        faults.push(check_fault(cx, fault)?);
    }
    faults.sort_by_key(|f| f.at);
    timeline::check_not_before_start(cx, &faults)?;
    timeline::check_crash_sequence(cx, &faults)?;
    timeline::check_hold_and_oneway(cx, &faults)?;
    Ok(faults)
}

/// One `[[faults]]` entry.
fn check_fault(cx: &Context<'_>, spanned: &Spanned<RawFault>) -> Result<Fault, ScenarioError> {
    let raw = spanned.get_ref();
    let loc = &cx.loc;
    let written = raw.kind.get_ref().as_str();
    let kind = ALIASES
        .iter()
        .find(|(alias, _)| *alias == written)
        .map(|(_, k)| *k)
        .unwrap_or(written);
    let Some(&(kind, allowed, required)) = KINDS.iter().find(|(name, _, _)| *name == kind) else {
        let names: Vec<&str> = KINDS.iter().map(|(n, _, _)| *n).collect();
        return Err(loc.at(
            raw.kind.span(),
            format!("unknown fault kind \"{written}\""),
            Some(did_you_mean_or_list(written, &names)),
        ));
    };
    for (key, span) in raw.present_keys() {
        if !allowed.contains(&key) {
            return Err(loc.at(
                span,
                format!("fault kind \"{kind}\" does not take \"{key}\""),
                Some(format!("{kind} takes: {}", allowed.join(", "))),
            ));
        }
    }
    let present: Vec<&str> = raw.present_keys().iter().map(|(k, _)| *k).collect();
    if let Some(missing) = required.iter().find(|k| !present.contains(k)) {
        return Err(loc.at(
            raw.kind.span(),
            format!("fault kind \"{kind}\" needs \"{missing}\""),
            Some(format!("add {}", example(missing))),
        ));
    }
    let at = raw.at.get_ref().0;
    if at > cx.duration {
        return Err(loc.at(
            raw.at.span(),
            format!(
                "fault at {} is after the end of the scenario ({})",
                format_duration(at),
                format_duration(cx.duration)
            ),
            Some("move it earlier or lengthen duration".into()),
        ));
    }
    let action = check_action(cx, kind, raw)?;
    let description = describe(kind, raw);
    Ok(Fault {
        at,
        action,
        description,
        line: loc.line_of(spanned.span().start),
    })
}

/// Builds the action for a known kind whose keys are present.
fn check_action(
    cx: &Context<'_>,
    kind: &str,
    raw: &RawFault,
) -> Result<FaultAction, ScenarioError> {
    let loc = &cx.loc;
    Ok(match kind {
        "partition" => FaultAction::Partition {
            links: between(cx, raw)?,
        },
        "heal" => FaultAction::Heal {
            links: between(cx, raw)?,
        },
        "hold" => FaultAction::Hold {
            links: between(cx, raw)?,
        },
        "release" => FaultAction::Release {
            links: between(cx, raw)?,
        },
        "partition_oneway" => FaultAction::PartitionOneway {
            links: from_to(cx, raw)?,
        },
        "heal_oneway" => FaultAction::HealOneway {
            links: from_to(cx, raw)?,
        },
        "crash" => FaultAction::Crash {
            hosts: crashable(cx, raw)?,
        },
        "restart" => FaultAction::Restart {
            hosts: crashable(cx, raw)?,
        },
        "silent_death" => FaultAction::SilentDeath {
            hosts: crashable(cx, raw)?,
        },
        "leave" => {
            if !cx.registry {
                return Err(loc.at(
                    raw.kind.span(),
                    "leave deregisters from the registry, but there is none",
                    Some("add a [registry] table, or use crash".into()),
                ));
            }
            FaultAction::Leave {
                hosts: servers(cx, raw)?,
            }
        }
        "link_latency" => FaultAction::LinkLatency {
            links: between(cx, raw)?,
            // Presence was checked against the kind's required keys.
            latency: latency(loc, raw.latency.as_ref(), "latency")?.unwrap_or(
                crate::scenario::schema::LatencyRange::fixed(Default::default()),
            ),
        },
        "loss" => FaultAction::Loss {
            links: if raw.between.is_some() {
                Some(between(cx, raw)?)
            } else {
                None
            },
            rate: fraction(loc, raw.rate.as_ref(), "rate")?.unwrap_or(0.0),
        },
        "server_behaviour" => {
            let latency = latency(loc, raw.latency.as_ref(), "latency")?;
            let error_rate = fraction(loc, raw.error_rate.as_ref(), "error_rate")?;
            if latency.is_none() && error_rate.is_none() {
                return Err(loc.at(
                    raw.kind.span(),
                    "server_behaviour changes nothing",
                    Some("set latency, error_rate or both".into()),
                ));
            }
            FaultAction::ServerBehaviour {
                hosts: servers(cx, raw)?,
                latency,
                error_rate,
            }
        }
        // KINDS and this match list the same names; an unlisted one is a programmer error.
        other => unreachable!("fault kind {other} is in KINDS but has no arm"),
    })
}

/// `between = [a, b]`: every host of `a` with every host of `b`, self-pairs skipped.
fn between(cx: &Context<'_>, raw: &RawFault) -> Result<Vec<Link>, ScenarioError> {
    let Some(between) = &raw.between else {
        return Ok(Vec::new());
    };
    let [a, b] = between.get_ref().as_slice() else {
        return Err(cx.loc.at(
            between.span(),
            format!(
                "between has {}, not 2",
                count(between.get_ref().len(), "name")
            ),
            Some("name exactly two hosts or groups: between = [\"client-1\", \"server-1\"]".into()),
        ));
    };
    links(cx, a, b, "between", between.span())
}

/// `from = a, to = b`: directed links.
fn from_to(cx: &Context<'_>, raw: &RawFault) -> Result<Vec<Link>, ScenarioError> {
    let (Some(from), Some(to)) = (&raw.from, &raw.to) else {
        return Ok(Vec::new());
    };
    links(cx, from, to, "from/to", from.span())
}

/// The product of two resolved names, without self-pairs or duplicates.
fn links(
    cx: &Context<'_>,
    a: &Spanned<String>,
    b: &Spanned<String>,
    what: &str,
    span: std::ops::Range<usize>,
) -> Result<Vec<Link>, ScenarioError> {
    let any = [Role::Server, Role::Client, Role::Registry];
    let left = cx.names.resolve(&cx.loc, a, what, &any)?;
    let right = cx.names.resolve(&cx.loc, b, what, &any)?;
    let mut out = Vec::new();
    for from in &left {
        for to in &right {
            let link = Link {
                from: from.clone(),
                to: to.clone(),
            };
            if from != to && !out.contains(&link) {
                out.push(link);
            }
        }
    }
    if out.is_empty() {
        return Err(cx.loc.at(
            span,
            format!("{what} names the same host on both sides"),
            Some("a link needs two different hosts".into()),
        ));
    }
    Ok(out)
}

/// `host`: server hosts only (clients are the workload drivers; they do not crash).
/// Hosts a crash, restart or silent death may name: servers, and the registry
/// (it runs in the simulation like any server, and loses its state on a crash).
/// Clients are excluded: their in-flight calls would have no caller to resolve.
fn crashable(cx: &Context<'_>, raw: &RawFault) -> Result<Vec<String>, ScenarioError> {
    let Some(host) = &raw.host else {
        return Ok(Vec::new());
    };
    cx.names
        .resolve(&cx.loc, host, "host", &[Role::Server, Role::Registry])
}

fn servers(cx: &Context<'_>, raw: &RawFault) -> Result<Vec<String>, ScenarioError> {
    let Some(host) = &raw.host else {
        return Ok(Vec::new());
    };
    cx.names.resolve(&cx.loc, host, "host", &[Role::Server])
}

/// The trace text for a fault: its kind and arguments as written.
fn describe(kind: &str, raw: &RawFault) -> String {
    let mut parts = vec![kind.to_string()];
    if let Some(between) = &raw.between {
        parts.extend(between.get_ref().iter().map(|s| s.get_ref().clone()));
    }
    if let (Some(from), Some(to)) = (&raw.from, &raw.to) {
        parts.push(format!("{}->{}", from.get_ref(), to.get_ref()));
    }
    if let Some(host) = &raw.host {
        parts.push(host.get_ref().clone());
    }
    if kind == "loss" && raw.between.is_none() {
        parts.push("network".into());
    }
    if let Some(latency) = &raw.latency {
        let spec = latency.get_ref();
        let range = crate::scenario::schema::LatencyRange {
            min: spec.min,
            max: spec.max,
        };
        parts.push(format!("latency={range}"));
    }
    if let Some(rate) = &raw.rate {
        parts.push(format!("rate={}", rate.get_ref()));
    }
    if let Some(rate) = &raw.error_rate {
        parts.push(format!("error_rate={}", rate.get_ref()));
    }
    parts.join(" ")
}
