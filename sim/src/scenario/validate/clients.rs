//! `[[clients]]` tables → [`ClientGroup`]s: endpoints (static targets or a
//! discovered service), balancer, workload (open or closed loop, method mix,
//! timing), call and connection settings. The resilience tables are checked in
//! `resilience.rs`.

use std::collections::BTreeSet;
use std::time::Duration;

use squall::BalancerKind;
use toml::Spanned;

use crate::scenario::duration::format_duration;
use crate::scenario::error::{did_you_mean_or_list, Locator, ScenarioError};
use crate::scenario::raw::RawClientGroup;
use crate::scenario::schema::{CallConfig, ClientGroup, Load, MethodWeight, ServerGroup, Workload};

use super::fields::{
    check_connection, check_service_text, codec, integer, method_name, positive_duration,
    user_code, WEIGHT_MAX,
};
use super::names::{Names, Role};
use super::resilience;

/// Highest open-loop rate per client host, calls per second.
pub const RATE_MAX: f64 = 10_000.0;
/// Most outstanding calls per closed-loop client host.
pub const CONCURRENCY_MAX: i64 = 1000;
/// Largest request payload, bytes.
pub const PAYLOAD_BYTES_MAX: i64 = 65_536;
/// Most distinct hash keys a client may draw from.
pub const HASH_KEYS_MAX: i64 = 100_000;
/// Most connections per endpoint (core's limit).
pub const POOL_SIZE_MAX: i64 = squall::discovery::POOL_SIZE_LIMIT as i64;

/// What a client group's validation needs to know.
pub(super) struct ClientContext<'a> {
    /// Where errors point.
    pub(super) loc: &'a Locator<'a>,
    /// Every group's hosts, for resolving `targets`.
    pub(super) names: &'a Names,
    /// The scenario's end: `stop_at` defaults to it and may not pass it.
    pub(super) duration: Duration,
    /// Whether `service` can be discovered at all.
    pub(super) registry: bool,
    /// The validated server groups, for the services they register.
    pub(super) servers: &'a [ServerGroup],
}

/// One `[[clients]]` table (its names are registered already).
pub(super) fn check_client_group(
    cx: &ClientContext<'_>,
    raw: &RawClientGroup,
) -> Result<ClientGroup, ScenarioError> {
    let loc = cx.loc;
    let (targets, service) = check_endpoints(cx, raw)?;
    let balancer = balancer(loc, raw.balancer.as_ref())?;
    let hash_keys = integer(loc, raw.hash_keys.as_ref(), "hash_keys", 1, HASH_KEYS_MAX)?;
    if balancer == BalancerKind::ConsistentHash && hash_keys.is_none() {
        let span = raw.balancer.as_ref().map(Spanned::span).unwrap_or_default();
        return Err(loc.at(
            span,
            "consistent_hash without hash_keys: calls carry no key, so every pick is random",
            Some("add hash_keys = 200".into()),
        ));
    }
    let pool_size = integer(loc, raw.pool_size.as_ref(), "pool_size", 1, POOL_SIZE_MAX)?
        .map_or(1, |n| n as usize);
    let workload = check_workload(loc, raw, cx.duration)?;
    let resilience = resilience::check_resilience(loc, raw, &workload.mix)?;
    let hosts = cx.names.hosts_of(raw.group.get_ref());
    let group = raw.group.get_ref().clone();
    Ok(ClientGroup {
        name: group,
        hosts,
        targets,
        service,
        balancer,
        resilience,
        hash_keys,
        pool_size,
        workload,
        call: CallConfig {
            timeout: positive_duration(loc, raw.timeout.as_ref(), "timeout")?
                .unwrap_or(Duration::from_secs(1)),
            codec: codec(loc, raw.codec.as_ref())?,
        },
        connection: check_connection(loc, raw.connection.as_ref())?,
        user_code: user_code(loc, raw.code.as_ref())?,
        line: loc.line_of(raw.group.span().start),
        method_line: raw
            .method
            .as_ref()
            .map(|m| loc.line_of(m.span().start))
            .or_else(|| raw.mix.as_ref().map(|m| loc.line_of(m.span().start)))
            .unwrap_or_else(|| loc.line_of(raw.group.span().start)),
    })
}

/// Exactly one of `targets` (static endpoints) and `service` (discovered through
/// the registry): returns (targets, service).
fn check_endpoints(
    cx: &ClientContext<'_>,
    raw: &RawClientGroup,
) -> Result<(Vec<String>, Option<String>), ScenarioError> {
    let loc = cx.loc;
    match (&raw.targets, &raw.service) {
        (Some(targets), None) => Ok((static_targets(cx, targets)?, None)),
        (None, Some(service)) => Ok((Vec::new(), Some(discovered_service(cx, service)?))),
        (Some(targets), Some(_)) => Err(loc.at(
            targets.span(),
            "both targets and service are set",
            Some("targets are static endpoints, service is discovered through the registry: keep one".into()),
        )),
        (None, None) => Err(loc.at(
            raw.group.span(),
            format!(
                "client group \"{}\" sets neither targets nor service",
                raw.group.get_ref()
            ),
            Some("add targets = [\"server\"] (static) or service = \"echo\" (with a [registry])".into()),
        )),
    }
}

/// `targets`: server hosts or groups, expanded, duplicates removed.
fn static_targets(
    cx: &ClientContext<'_>,
    raw: &Spanned<Vec<Spanned<String>>>,
) -> Result<Vec<String>, ScenarioError> {
    if raw.get_ref().is_empty() {
        return Err(cx.loc.at(
            raw.span(),
            "targets is empty",
            Some("name server groups or hosts, e.g. targets = [\"server\"]".into()),
        ));
    }
    let mut targets = Vec::new();
    for target in raw.get_ref() {
        for host in cx
            .names
            .resolve(cx.loc, target, "targets", &[Role::Server])?
        {
            if !targets.contains(&host) {
                targets.push(host);
            }
        }
    }
    Ok(targets)
}

/// `service`: needs a registry, and some server group must register under it.
fn discovered_service(
    cx: &ClientContext<'_>,
    service: &Spanned<String>,
) -> Result<String, ScenarioError> {
    let loc = cx.loc;
    if !cx.registry {
        return Err(loc.at(
            service.span(),
            format!(
                "service \"{}\" is discovered through a registry, but there is none",
                service.get_ref()
            ),
            Some(
                "add a [registry] table (ttl = \"3s\"), or call static targets = [\"server\"]"
                    .into(),
            ),
        ));
    }
    let name = check_service_text(loc, service)?;
    let known: Vec<&str> = cx
        .servers
        .iter()
        .map(|g| g.service.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if !known.contains(&name.as_str()) {
        return Err(loc.at(
            service.span(),
            format!("no server group registers service \"{name}\""),
            Some(did_you_mean_or_list(&name, &known)),
        ));
    }
    Ok(name)
}

/// `balancer`: one of core's stable names, default `round_robin`.
fn balancer(
    loc: &Locator<'_>,
    raw: Option<&Spanned<String>>,
) -> Result<BalancerKind, ScenarioError> {
    let Some(raw) = raw else {
        return Ok(BalancerKind::RoundRobin);
    };
    raw.get_ref().parse().map_err(|_| {
        let names: Vec<&str> = BalancerKind::ALL.iter().map(|k| k.as_str()).collect();
        loc.at(
            raw.span(),
            format!("unknown balancer \"{}\"", raw.get_ref()),
            Some(did_you_mean_or_list(raw.get_ref(), &names)),
        )
    })
}

/// The workload keys of a `[[clients]]` table.
fn check_workload(
    loc: &Locator<'_>,
    raw: &RawClientGroup,
    duration: Duration,
) -> Result<Workload, ScenarioError> {
    let load = match (&raw.rate, &raw.concurrency) {
        (Some(rate), None) => {
            let value = *rate.get_ref();
            if !(value > 0.0 && value <= RATE_MAX) {
                return Err(loc.at(
                    rate.span(),
                    format!("rate {value} is out of range"),
                    Some(format!(
                        "calls per second per client host, above 0 and at most {RATE_MAX}"
                    )),
                ));
            }
            Load::Open {
                rate_per_second: value,
            }
        }
        (None, Some(concurrency)) => Load::Closed {
            concurrency: integer(loc, Some(concurrency), "concurrency", 1, CONCURRENCY_MAX)?
                .unwrap_or(1),
        },
        (Some(rate), Some(_)) => {
            return Err(loc.at(
                rate.span(),
                "both rate and concurrency are set",
                Some("choose open loop (rate) or closed loop (concurrency)".into()),
            ));
        }
        (None, None) => {
            return Err(loc.at(
                raw.group.span(),
                format!(
                    "client group \"{}\" sets neither rate nor concurrency",
                    raw.group.get_ref()
                ),
                Some("add rate = 100 (calls/s, open loop) or concurrency = 8 (closed loop)".into()),
            ));
        }
    };
    let mix = check_mix(loc, raw)?;
    let payload_bytes = integer(
        loc,
        raw.payload_bytes.as_ref(),
        "payload_bytes",
        0,
        PAYLOAD_BYTES_MAX,
    )?
    .unwrap_or(64);
    let start_at = raw
        .start_at
        .as_ref()
        .map(|s| s.get_ref().0)
        .unwrap_or_default();
    let stop_at = raw
        .stop_at
        .as_ref()
        .map(|s| s.get_ref().0)
        .unwrap_or(duration);
    if let Some(stop) = &raw.stop_at {
        if stop_at > duration {
            return Err(loc.at(
                stop.span(),
                format!(
                    "stop_at {} is after the end of the scenario ({})",
                    format_duration(stop_at),
                    format_duration(duration)
                ),
                Some("stop_at must be at most duration".into()),
            ));
        }
    }
    if start_at >= stop_at {
        let span = raw
            .start_at
            .as_ref()
            .map(Spanned::span)
            .unwrap_or_else(|| raw.group.span());
        return Err(loc.at(
            span,
            format!(
                "start_at {} is not before stop_at {}",
                format_duration(start_at),
                format_duration(stop_at)
            ),
            Some("the client would issue no calls".into()),
        ));
    }
    Ok(Workload {
        load,
        mix,
        payload_bytes,
        start_at,
        stop_at,
    })
}

/// `method` or `mix` (default `Echo.Echo`).
fn check_mix(loc: &Locator<'_>, raw: &RawClientGroup) -> Result<Vec<MethodWeight>, ScenarioError> {
    let idempotent = raw.idempotent.as_ref().is_some_and(|i| *i.get_ref());
    if let (Some(flag), Some(_)) = (&raw.idempotent, &raw.mix) {
        return Err(loc.at(
            flag.span(),
            "idempotent at the client level applies to `method`, but this client has a mix",
            Some("set idempotent = true on each mix entry instead".into()),
        ));
    }
    match (&raw.method, &raw.mix) {
        (Some(method), None) => Ok(vec![MethodWeight {
            method: method_name(loc, method)?,
            weight: 1,
            idempotent,
        }]),
        (None, None) => Ok(vec![MethodWeight {
            method: "Echo.Echo".into(),
            weight: 1,
            idempotent,
        }]),
        (Some(method), Some(_)) => Err(loc.at(
            method.span(),
            "both method and mix are set",
            Some("use method for one method, mix for several".into()),
        )),
        (None, Some(mix)) => {
            if mix.get_ref().is_empty() {
                return Err(loc.at(
                    mix.span(),
                    "mix is empty",
                    Some("e.g. mix = [{ method = \"Echo.Echo\", weight = 9 }]".into()),
                ));
            }
            let mut out: Vec<MethodWeight> = Vec::new();
            for entry in mix.get_ref() {
                let entry = entry.get_ref();
                let method = method_name(loc, &entry.method)?;
                if out.iter().any(|m| m.method == method) {
                    return Err(loc.at(
                        entry.method.span(),
                        format!("method \"{method}\" is listed twice in mix"),
                        Some("merge the entries' weights".into()),
                    ));
                }
                let weight =
                    integer(loc, entry.weight.as_ref(), "weight", 1, WEIGHT_MAX)?.unwrap_or(1);
                out.push(MethodWeight {
                    method,
                    weight,
                    idempotent: entry.idempotent.unwrap_or(false),
                });
            }
            Ok(out)
        }
    }
}
