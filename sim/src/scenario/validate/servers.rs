//! `[[servers]]` tables → [`ServerGroup`]s: per-host overrides, start times,
//! the registered service name and forwarding (which must not loop).

use std::time::Duration;

use toml::Spanned;

use crate::scenario::duration::{format_duration, DurationText};
use crate::scenario::error::{did_you_mean_or_list, Locator, ScenarioError};
use crate::scenario::raw::RawServerGroup;
use crate::scenario::schema::{Behaviour, Forward, LatencyRange, ServerGroup, ServerHost};

use super::fields::{
    check_connection, check_service_text, fraction, integer, latency, method_name,
    positive_duration, user_code, WEIGHT_MAX,
};
use super::names::{Names, Role};

/// What a server group's validation needs to know.
pub(super) struct ServerContext<'a> {
    /// Where errors point.
    pub(super) loc: &'a Locator<'a>,
    /// Every group's hosts, registered before any group is checked.
    pub(super) names: &'a Names,
    /// The scenario's end: a server must start before it.
    pub(super) duration: Duration,
    /// Whether there is a registry to register `service` with.
    pub(super) registry: bool,
}

/// Most `concurrency_limit`.
pub const CONCURRENCY_LIMIT_MAX: i64 = 100_000;
/// Most `latency_per_call`.
pub const LATENCY_PER_CALL_MAX: Duration = Duration::from_secs(1);

/// Key `error_code`: a status code name other than `Ok` (default `Internal`).
fn error_code(
    loc: &Locator<'_>,
    raw: Option<&Spanned<String>>,
) -> Result<squall::Code, ScenarioError> {
    let Some(raw) = raw else {
        return Ok(squall::Code::Internal);
    };
    let names: Vec<&str> = squall::Code::ALL
        .iter()
        .map(|c| c.as_str())
        .filter(|name| *name != "Ok")
        .collect();
    match squall::Code::ALL
        .into_iter()
        .find(|c| c.as_str() == raw.get_ref() && c.as_str() != "Ok")
    {
        Some(code) => Ok(code),
        None => Err(loc.at(
            raw.span(),
            format!("error_code {:?} is not a failure code", raw.get_ref()),
            Some(did_you_mean_or_list(raw.get_ref(), &names)),
        )),
    }
}

/// One `[[servers]]` table (its names are registered already).
pub(super) fn check_server_group(
    cx: &ServerContext<'_>,
    raw: &RawServerGroup,
) -> Result<ServerGroup, ScenarioError> {
    let (loc, names) = (cx.loc, cx.names);
    let host_names = names.hosts_of(raw.group.get_ref());
    let group_start = start_at(loc, raw.start_at.as_ref(), cx.duration)?.unwrap_or_default();
    let weight = integer(loc, raw.weight.as_ref(), "weight", 1, WEIGHT_MAX)?.unwrap_or(1);
    let group_behaviour = Behaviour {
        latency: latency(loc, raw.latency.as_ref(), "latency")?
            .unwrap_or(LatencyRange::fixed(Duration::from_millis(1))),
        error_rate: fraction(loc, raw.error_rate.as_ref(), "error_rate")?.unwrap_or(0.0),
        error_code: error_code(loc, raw.error_code.as_ref())?,
        concurrency_limit: integer(
            loc,
            raw.concurrency_limit.as_ref(),
            "concurrency_limit",
            1,
            CONCURRENCY_LIMIT_MAX,
        )?,
        latency_per_call: match &raw.latency_per_call {
            Some(d) if d.get_ref().0 > LATENCY_PER_CALL_MAX => {
                return Err(loc.at(
                    d.span(),
                    format!(
                        "latency_per_call {} is over the limit of {}",
                        format_duration(d.get_ref().0),
                        format_duration(LATENCY_PER_CALL_MAX)
                    ),
                    Some("it is added once per call already running: a few ms is a lot".into()),
                ))
            }
            Some(d) => d.get_ref().0,
            None => Duration::ZERO,
        },
    };
    for key in raw.hosts.keys() {
        if !host_names.contains(key.get_ref()) {
            let hint = did_you_mean_or_list(
                key.get_ref(),
                &host_names.iter().map(String::as_str).collect::<Vec<_>>(),
            );
            return Err(loc.at(
                key.span(),
                format!(
                    "[servers.hosts.{}]: no such host in group \"{}\"",
                    key.get_ref(),
                    raw.group.get_ref()
                ),
                Some(hint),
            ));
        }
    }
    let mut hosts = Vec::with_capacity(host_names.len());
    for name in host_names {
        let mut host = ServerHost {
            name: name.clone(),
            group: raw.group.get_ref().clone(),
            weight,
            behaviour: group_behaviour.clone(),
            start_at: group_start,
        };
        if let Some((_, o)) = raw.hosts.iter().find(|(k, _)| *k.get_ref() == name) {
            host.weight =
                integer(loc, o.weight.as_ref(), "weight", 1, WEIGHT_MAX)?.unwrap_or(weight);
            host.behaviour.latency =
                latency(loc, o.latency.as_ref(), "latency")?.unwrap_or(host.behaviour.latency);
            host.behaviour.error_rate = fraction(loc, o.error_rate.as_ref(), "error_rate")?
                .unwrap_or(host.behaviour.error_rate);
            host.start_at =
                start_at(loc, o.start_at.as_ref(), cx.duration)?.unwrap_or(host.start_at);
        }
        hosts.push(host);
    }
    Ok(ServerGroup {
        name: raw.group.get_ref().clone(),
        hosts,
        service: service_name(cx, raw)?,
        forward: check_forward(cx, raw)?,
        user_code: user_code(loc, raw.code.as_ref())?,
        line: loc.line_of(raw.group.span().start),
    })
}

/// A server `start_at`: before the end of the scenario (a server that starts at
/// the end never serves).
fn start_at(
    loc: &Locator<'_>,
    raw: Option<&Spanned<DurationText>>,
    duration: Duration,
) -> Result<Option<Duration>, ScenarioError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let value = raw.get_ref().0;
    if value >= duration {
        return Err(loc.at(
            raw.span(),
            format!(
                "start_at {} is not before the end of the scenario ({})",
                format_duration(value),
                format_duration(duration)
            ),
            Some("the server would never serve; start it earlier".into()),
        ));
    }
    Ok(Some(value))
}

/// `service` (default `echo`): what the group registers as. Only meaningful with a
/// registry, so setting it without one is a mistake.
fn service_name(cx: &ServerContext<'_>, raw: &RawServerGroup) -> Result<String, ScenarioError> {
    let Some(service) = &raw.service else {
        return Ok("echo".into());
    };
    if !cx.registry {
        return Err(cx.loc.at(
            service.span(),
            "service is set but there is no registry to register with",
            Some("add a [registry] table, or remove service".into()),
        ));
    }
    check_service_text(cx.loc, service)
}

/// `forward_to`, `forward_method`, `forward_timeout`: the handler's onward call.
fn check_forward(
    cx: &ServerContext<'_>,
    raw: &RawServerGroup,
) -> Result<Option<Forward>, ScenarioError> {
    let loc = cx.loc;
    let Some(forward_to) = &raw.forward_to else {
        let stray = [
            (
                "forward_method",
                raw.forward_method.as_ref().map(Spanned::span),
            ),
            (
                "forward_timeout",
                raw.forward_timeout.as_ref().map(Spanned::span),
            ),
            (
                "forward_connection",
                raw.forward_connection.as_ref().map(Spanned::span),
            ),
            (
                "forward_retry",
                raw.forward_retry.as_ref().map(Spanned::span),
            ),
        ];
        if let Some((key, Some(span))) = stray.into_iter().find(|(_, s)| s.is_some()) {
            return Err(loc.at(
                span,
                format!("{key} is set but forward_to is not"),
                Some("add forward_to = [\"backend\"] or remove it".into()),
            ));
        }
        return Ok(None);
    };
    if forward_to.get_ref().is_empty() {
        return Err(loc.at(
            forward_to.span(),
            "forward_to is empty",
            Some("name server groups or hosts, e.g. forward_to = [\"backend\"]".into()),
        ));
    }
    let own = cx.names.hosts_of(raw.group.get_ref());
    let mut targets = Vec::new();
    for target in forward_to.get_ref() {
        for host in cx
            .names
            .resolve(loc, target, "forward_to", &[Role::Server])?
        {
            if own.contains(&host) {
                return Err(loc.at(
                    target.span(),
                    format!(
                        "forward_to: \"{}\" is in this group, which would call itself",
                        target.get_ref()
                    ),
                    Some("forward to another server group".into()),
                ));
            }
            if !targets.contains(&host) {
                targets.push(host);
            }
        }
    }
    let method = match &raw.forward_method {
        Some(m) => method_name(loc, m)?,
        None => "Echo.Echo".into(),
    };
    let retry = match &raw.forward_retry {
        Some(table) => super::retry::check_retry(loc, table)?,
        None => squall::RetryPolicy {
            max_attempts: 1,
            ..squall::RetryPolicy::default()
        },
    };
    Ok(Some(Forward {
        targets,
        method,
        timeout: positive_duration(loc, raw.forward_timeout.as_ref(), "forward_timeout")?,
        connection: check_connection(loc, raw.forward_connection.as_ref().map(Spanned::get_ref))?,
        retry,
    }))
}

/// Forwarding must end: a chain of groups that leads back to itself would bounce
/// each call until its deadline.
pub(super) fn check_forward_cycles(
    loc: &Locator<'_>,
    servers: &[ServerGroup],
    raw: &[Spanned<RawServerGroup>],
) -> Result<(), ScenarioError> {
    let group_of = |host: &str| {
        servers
            .iter()
            .find(|g| g.hosts.iter().any(|h| h.name == host))
            .map(|g| g.name.as_str())
    };
    for (start, raw_group) in servers.iter().zip(raw) {
        // Walk every path from `start`; the group count bounds the depth.
        let mut frontier = vec![start.name.as_str()];
        for _ in 0..servers.len() {
            let mut next = Vec::new();
            for group in frontier {
                let Some(forward) = servers
                    .iter()
                    .find(|g| g.name == group)
                    .and_then(|g| g.forward.as_ref())
                else {
                    continue;
                };
                for target in forward.targets.iter().filter_map(|t| group_of(t)) {
                    if target == start.name {
                        let span = raw_group
                            .get_ref()
                            .forward_to
                            .as_ref()
                            .map(Spanned::span)
                            .unwrap_or_else(|| raw_group.span());
                        return Err(loc.at(
                            span,
                            format!("forwarding from \"{}\" leads back to it", start.name),
                            Some("forwarding chains must end at a group without forward_to".into()),
                        ));
                    }
                    if !next.contains(&target) {
                        next.push(target);
                    }
                }
            }
            frontier = next;
        }
    }
    Ok(())
}
