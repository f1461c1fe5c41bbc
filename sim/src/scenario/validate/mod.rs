//! Raw file → [`Scenario`]: defaults, limits, name resolution.
//!
//! # Layout
//! Dependencies flow one way: this file → the sections → `names` and `fields`.
//! - this file: the order of the checks, and the scenario-level keys (name,
//!   description, duration, seeds, `[network]`, `[registry]`);
//! - `servers`, `clients`, `faults`, `expectations`: one section of the file
//!   each, some with helpers of their own: `clients` → `resilience` → `retry`,
//!   `breaker` and `core_config` (core's `validate()` reported at the file's
//!   key); `faults` → `timeline` (checks across faults); `expectations` →
//!   `expectation_filter` and `expectation_values`;
//! - `names`: host and group names and the [`Context`](names::Context) that the
//!   timeline and expectation checks share;
//! - `fields`: leaf checks of one value (integer, fraction, latency, duration,
//!   method, codec), which know nothing of the sections.

use std::time::Duration;

use toml::Spanned;

use super::duration::{format_duration, DurationText};
use super::error::{Locator, ScenarioError};
use super::raw::{RawNetwork, RawRegistry, RawScenario};
use super::schema::{ClientGroup, LatencyRange, Network, RegistryConfig, Scenario};

mod breaker;
mod clients;
mod core_config;
mod expectation_filter;
mod expectation_values;
mod expectations;
mod faults;
mod fields;
mod names;
mod resilience;
mod retry;
mod servers;
mod timeline;

pub use clients::{CONCURRENCY_MAX, HASH_KEYS_MAX, PAYLOAD_BYTES_MAX, POOL_SIZE_MAX, RATE_MAX};
pub use fields::{LATENCY_MAX, REPLICAS_MAX, WEIGHT_MAX};
pub use names::RESERVED_NAMES;
pub use retry::MAX_ATTEMPTS_MAX;

use clients::{check_client_group, ClientContext};
use fields::{fraction, latency, positive_duration, replicas};
use names::{Context, Names, Role};
use servers::{check_forward_cycles, check_server_group, ServerContext};

/// Most seeds a scenario may pin: each runs twice in the test suite.
pub const SEEDS_MAX: usize = 64;
/// Longest registry ttl, heartbeat or watch timeout: longer is a unit typo.
pub const REGISTRY_DURATION_MAX: Duration = Duration::from_secs(60);

/// Validates a whole raw scenario.
pub(crate) fn validate(raw: RawScenario, loc: Locator<'_>) -> Result<Scenario, ScenarioError> {
    let name = check_scenario_name(&loc, &raw.name)?;
    let description = raw.description.get_ref().trim().to_string();
    if description.is_empty() {
        return Err(loc.at(
            raw.description.span(),
            "empty description",
            Some("say what the scenario proves and why its thresholds are what they are".into()),
        ));
    }
    let duration = raw.duration.get_ref().0;
    if duration.is_zero() {
        return Err(loc.at(
            raw.duration.span(),
            "duration must be above zero",
            Some("e.g. duration = \"30s\"".into()),
        ));
    }
    let seeds = check_seeds(&loc, raw.seeds.as_ref())?;
    let network = check_network(&loc, raw.network.as_ref())?;
    let registry = check_registry(&loc, raw.registry.as_ref())?;

    let mut names = Names::default();
    if raw.servers.is_empty() {
        return Err(loc.file(
            "no [[servers]]",
            Some("add a [[servers]] table with group = \"server\"".into()),
        ));
    }
    if raw.clients.is_empty() {
        return Err(loc.file(
            "no [[clients]]",
            Some("add a [[clients]] table; without calls nothing is proven".into()),
        ));
    }
    register_groups(&loc, &mut names, &raw)?;
    if registry.is_some() {
        names.add_registry();
    }
    let mut servers = Vec::with_capacity(raw.servers.len());
    for group in &raw.servers {
        let server = ServerContext {
            loc: &loc,
            names: &names,
            duration,
            registry: registry.is_some(),
        };
        servers.push(check_server_group(&server, group.get_ref())?);
    }
    check_forward_cycles(&loc, &servers, &raw.servers)?;
    let mut clients = Vec::with_capacity(raw.clients.len());
    for group in &raw.clients {
        let client = ClientContext {
            loc: &loc,
            names: &names,
            duration,
            registry: registry.is_some(),
            servers: &servers,
        };
        clients.push(check_client_group(&client, group.get_ref())?);
    }
    let methods = clients
        .iter()
        .flat_map(|c: &ClientGroup| c.workload.mix.iter().map(|m| m.method.clone()))
        .collect();
    let context = Context {
        loc,
        names,
        duration,
        methods,
        registry: registry.is_some(),
        servers,
        clients,
    };
    let faults = faults::check_faults(&context, &raw.faults)?;
    let expectations = expectations::check_expectations(&context, &raw.expect)?;
    Ok(Scenario {
        source: loc.path.to_string(),
        name,
        description,
        duration,
        seeds,
        network,
        registry,
        servers: context.servers,
        clients: context.clients,
        faults,
        expectations,
    })
}

/// Scenario names appear in test names and report headings: keep them plain.
fn check_scenario_name(loc: &Locator<'_>, name: &Spanned<String>) -> Result<String, ScenarioError> {
    let text = name.get_ref();
    let plain = text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if text.is_empty() || text.len() > 64 || !plain {
        return Err(loc.at(
            name.span(),
            format!("invalid scenario name \"{text}\""),
            Some(
                "use letters, digits, '-' and '_', at most 64 characters, e.g. \"partition-heal\""
                    .into(),
            ),
        ));
    }
    Ok(text.clone())
}

/// Seeds: default `[1]`, each ≥ 0, no duplicates, at most [`SEEDS_MAX`].
fn check_seeds(
    loc: &Locator<'_>,
    seeds: Option<&Spanned<Vec<Spanned<i64>>>>,
) -> Result<Vec<u64>, ScenarioError> {
    let Some(seeds) = seeds else {
        return Ok(vec![1]);
    };
    if seeds.get_ref().is_empty() {
        return Err(loc.at(
            seeds.span(),
            "seeds is empty",
            Some("pin at least one seed, e.g. seeds = [1]".into()),
        ));
    }
    if seeds.get_ref().len() > SEEDS_MAX {
        return Err(loc.at(
            seeds.span(),
            format!("more than {SEEDS_MAX} seeds"),
            Some("use `sim explore` for wide seed sweeps".into()),
        ));
    }
    let mut out = Vec::with_capacity(seeds.get_ref().len());
    for seed in seeds.get_ref() {
        let value = u64::try_from(*seed.get_ref()).map_err(|_| {
            loc.at(
                seed.span(),
                format!("seed {} is negative", seed.get_ref()),
                Some("seeds are 0 or more".into()),
            )
        })?;
        if out.contains(&value) {
            return Err(loc.at(
                seed.span(),
                format!("seed {value} is listed twice"),
                Some("remove the duplicate".into()),
            ));
        }
        out.push(value);
    }
    Ok(out)
}

/// `[network]` with defaults: latency 1ms..5ms, loss 0, repair 1.
fn check_network(loc: &Locator<'_>, raw: Option<&RawNetwork>) -> Result<Network, ScenarioError> {
    let default_latency = LatencyRange {
        min: Duration::from_millis(1),
        max: Duration::from_millis(5),
    };
    let Some(raw) = raw else {
        return Ok(Network {
            latency: default_latency,
            loss: 0.0,
            repair_rate: 1.0,
        });
    };
    Ok(Network {
        latency: latency(loc, raw.latency.as_ref(), "network latency")?.unwrap_or(default_latency),
        loss: fraction(loc, raw.loss.as_ref(), "loss")?.unwrap_or(0.0),
        repair_rate: fraction(loc, raw.repair_rate.as_ref(), "repair_rate")?.unwrap_or(1.0),
    })
}

/// `[registry]` with defaults: ttl 3s, heartbeat ttl/3, watch_timeout 2s. The
/// heartbeat must be below the ttl, or every lease lapses between renewals.
fn check_registry(
    loc: &Locator<'_>,
    raw: Option<&Spanned<RawRegistry>>,
) -> Result<Option<RegistryConfig>, ScenarioError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let table = raw.get_ref();
    let bounded = |value: Option<&Spanned<DurationText>>, key: &str| {
        let duration = positive_duration(loc, value, key)?;
        if let (Some(d), Some(value)) = (duration, value) {
            if d > REGISTRY_DURATION_MAX {
                return Err(loc.at(
                    value.span(),
                    format!(
                        "{key} {} is above the {} limit",
                        format_duration(d),
                        format_duration(REGISTRY_DURATION_MAX)
                    ),
                    Some("is the unit right? \"3s\", not \"3m\"".into()),
                ));
            }
        }
        Ok(duration)
    };
    let ttl = bounded(table.ttl.as_ref(), "ttl")?.unwrap_or(Duration::from_secs(3));
    let heartbeat = bounded(table.heartbeat.as_ref(), "heartbeat")?.unwrap_or(ttl / 3);
    let watch_timeout =
        bounded(table.watch_timeout.as_ref(), "watch_timeout")?.unwrap_or(Duration::from_secs(2));
    if heartbeat >= ttl {
        let span = table
            .heartbeat
            .as_ref()
            .or(table.ttl.as_ref())
            .map(Spanned::span)
            .unwrap_or_else(|| raw.span());
        return Err(loc.at(
            span,
            format!(
                "heartbeat {} is not below ttl {}",
                format_duration(heartbeat),
                format_duration(ttl)
            ),
            Some("every lease would lapse between renewals; use heartbeat = ttl / 3".into()),
        ));
    }
    let call_timeout =
        bounded(table.call_timeout.as_ref(), "call_timeout")?.unwrap_or(Duration::from_secs(1));
    let connection = match &table.connection {
        Some(raw) => fields::check_connection(loc, Some(raw))?,
        None => crate::scenario::ConnectionConfig {
            connect_timeout: Duration::from_millis(500),
            keepalive_interval: Duration::from_secs(1),
            keepalive_timeout: Duration::from_secs(1),
        },
    };
    Ok(Some(RegistryConfig {
        ttl,
        heartbeat,
        watch_timeout,
        call_timeout,
        connection,
    }))
}

/// Registers every group's name and hosts in file order (servers and clients
/// interleaved as written), so a clash is reported at the later of the two and a
/// client may name a server group written below it.
fn register_groups(
    loc: &Locator<'_>,
    names: &mut Names,
    raw: &RawScenario,
) -> Result<(), ScenarioError> {
    let servers = raw.servers.iter().map(|g| {
        (
            g.span().start,
            &g.get_ref().group,
            g.get_ref().replicas.as_ref(),
            Role::Server,
        )
    });
    let clients = raw.clients.iter().map(|g| {
        (
            g.span().start,
            &g.get_ref().group,
            g.get_ref().replicas.as_ref(),
            Role::Client,
        )
    });
    let mut groups: Vec<_> = servers.chain(clients).collect();
    groups.sort_by_key(|(start, ..)| *start);
    for (_, name, replicas_raw, role) in groups {
        names.add_group(loc, name, role, replicas(loc, replicas_raw)?)?;
    }
    Ok(())
}
