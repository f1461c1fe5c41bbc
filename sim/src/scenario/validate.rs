//! Raw file → [`Scenario`]: defaults, limits, name resolution. The timeline and
//! the expectations are in `faults.rs` and `expectations.rs`; this file holds the
//! topology, the workload and the helpers they share.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use squall::{BalancerKind, Codec};
use toml::Spanned;

use super::duration::{format_duration, DurationText, LatencySpec, DURATION_MAX};
use super::error::{did_you_mean_or_list, suggest, Locator, ScenarioError};
use super::raw::{
    RawClientGroup, RawConnection, RawNetwork, RawRegistry, RawScenario, RawServerGroup,
};
use super::schema::{
    Behaviour, CallConfig, ClientGroup, ConnectionConfig, Forward, LatencyRange, Load,
    MethodWeight, Network, RegistryConfig, Scenario, ServerGroup, ServerHost, Workload,
    REGISTRY_HOST,
};
use super::{expectations, faults, resilience};

/// Most hosts a group may have: more is a typo, and turmoil steps every host every tick.
pub const REPLICAS_MAX: i64 = 100;
/// Most seeds a scenario may pin: each runs twice in the test suite.
pub const SEEDS_MAX: usize = 64;
/// Highest balancer weight.
pub const WEIGHT_MAX: i64 = 1000;
/// Highest open-loop rate per client host, calls per second.
pub const RATE_MAX: f64 = 10_000.0;
/// Most outstanding calls per closed-loop client host.
pub const CONCURRENCY_MAX: i64 = 1000;
/// Largest request payload, bytes.
pub const PAYLOAD_BYTES_MAX: i64 = 65_536;
/// Longest latency anywhere (network, link, handler): longer is a unit typo.
pub const LATENCY_MAX: Duration = Duration::from_secs(60);
/// Host names the harness keeps for itself.
pub const RESERVED_NAMES: [&str; 2] = ["sim", REGISTRY_HOST];
/// Most distinct hash keys a client may draw from.
pub const HASH_KEYS_MAX: i64 = 100_000;
/// Most connections per endpoint (core's limit).
pub const POOL_SIZE_MAX: i64 = squall::discovery::POOL_SIZE_LIMIT as i64;
/// Longest registry ttl, heartbeat or watch timeout: longer is a unit typo.
pub const REGISTRY_DURATION_MAX: Duration = Duration::from_secs(60);

/// Which side a host is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Server,
    Client,
    /// The registry host (only with a `[registry]` table).
    Registry,
}

/// Every group and host name, for resolving references.
#[derive(Debug, Default)]
pub(crate) struct Names {
    /// Group name → (role, hosts).
    groups: BTreeMap<String, (Role, Vec<String>)>,
    /// Host name → role.
    hosts: BTreeMap<String, Role>,
}

impl Names {
    /// Whether `name` is a host of the scenario (or the harness's `sim`).
    pub(crate) fn is_host(&self, name: &str) -> bool {
        name == "sim" || self.hosts.contains_key(name)
    }

    /// Resolves a host or group name to hosts of an allowed role.
    pub(crate) fn resolve(
        &self,
        loc: &Locator<'_>,
        name: &Spanned<String>,
        what: &str,
        allowed: &[Role],
    ) -> Result<Vec<String>, ScenarioError> {
        let text = name.get_ref();
        let (role, hosts) = if let Some((role, hosts)) = self.groups.get(text) {
            (*role, hosts.clone())
        } else if let Some(role) = self.hosts.get(text) {
            (*role, vec![text.clone()])
        } else if text == REGISTRY_HOST {
            return Err(loc.at(
                name.span(),
                format!("{what}: there is no registry host"),
                Some("add a [registry] table to run one".into()),
            ));
        } else {
            let hint = self.unknown_name_hint(text, allowed);
            return Err(loc.at(
                name.span(),
                format!("{what}: unknown host or group \"{text}\""),
                Some(hint),
            ));
        };
        if !allowed.contains(&role) {
            let is = match role {
                Role::Client => "a client",
                Role::Server => "a server",
                Role::Registry => "the registry",
            };
            let wanted = match allowed {
                [Role::Server] => "a server host or group",
                [Role::Server, Role::Registry] => "a server host or group, or the registry",
                [Role::Client] => "a client host or group",
                _ => "a server or client host or group",
            };
            return Err(loc.at(
                name.span(),
                format!("{what}: \"{text}\" is {is}"),
                Some(format!("expected {wanted}")),
            ));
        }
        Ok(hosts)
    }

    /// For `server-9` in a group of three: the group's range. Otherwise the
    /// closest name, or the list of names.
    fn unknown_name_hint(&self, text: &str, allowed: &[Role]) -> String {
        let numbered = text
            .rsplit_once('-')
            .filter(|(_, n)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
        if let Some((group, _)) = numbered {
            if let Some((_, hosts)) = self.groups.get(group) {
                let last = hosts.last().map(String::as_str).unwrap_or("none");
                return format!(
                    "group \"{group}\" has {} hosts: {group}-1..{last}",
                    hosts.len()
                );
            }
        }
        let candidates = self.candidates(allowed);
        match suggest(text, candidates.iter().map(String::as_str)) {
            Some(best) => format!("did you mean \"{best}\"?"),
            None => format!("known: {}", candidates.join(", ")),
        }
    }

    /// Names of the allowed roles, groups first, for hints.
    fn candidates(&self, allowed: &[Role]) -> Vec<String> {
        let groups = self
            .groups
            .iter()
            .filter(|(_, (r, _))| allowed.contains(r))
            .map(|(n, _)| n.clone());
        let hosts = self
            .hosts
            .iter()
            .filter(|(_, r)| allowed.contains(r))
            .map(|(n, _)| n.clone());
        groups.chain(hosts).collect()
    }

    /// The hosts of a registered group (empty for an unknown name).
    fn hosts_of(&self, group: &str) -> Vec<String> {
        self.groups
            .get(group)
            .map(|(_, hosts)| hosts.clone())
            .unwrap_or_default()
    }

    /// Whether `host` is a server host (not a group).
    pub(crate) fn is_server(&self, host: &str) -> bool {
        self.hosts.get(host) == Some(&Role::Server)
    }

    /// Whether `name` is a group (rather than one host).
    pub(crate) fn is_group(&self, name: &str) -> bool {
        self.groups.contains_key(name)
    }

    /// Makes the registry host nameable in faults.
    fn add_registry(&mut self) {
        self.hosts.insert(REGISTRY_HOST.to_string(), Role::Registry);
    }

    /// Adds a group and its hosts; errors on any clash.
    fn add_group(
        &mut self,
        loc: &Locator<'_>,
        name: &Spanned<String>,
        role: Role,
        replicas: u32,
    ) -> Result<Vec<String>, ScenarioError> {
        let group = name.get_ref();
        check_group_name(loc, name)?;
        let hosts: Vec<String> = (1..=replicas).map(|i| format!("{group}-{i}")).collect();
        for candidate in std::iter::once(group).chain(hosts.iter()) {
            if self.groups.contains_key(candidate) || self.hosts.contains_key(candidate) {
                return Err(loc.at(
                    name.span(),
                    format!("group \"{group}\": the name \"{candidate}\" is already taken"),
                    Some("every group and host name must be unique; rename the group".into()),
                ));
            }
        }
        self.groups.insert(group.clone(), (role, hosts.clone()));
        for host in &hosts {
            self.hosts.insert(host.clone(), role);
        }
        Ok(hosts)
    }
}

/// Group names become host names (and DNS names in turmoil): lowercase letters,
/// digits and `-`, starting with a letter, at most 32 characters.
fn check_group_name(loc: &Locator<'_>, name: &Spanned<String>) -> Result<(), ScenarioError> {
    let text = name.get_ref();
    let valid_chars = text
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    let starts_with_letter = text.chars().next().is_some_and(|c| c.is_ascii_lowercase());
    if !valid_chars || !starts_with_letter || text.len() > 32 || text.ends_with('-') {
        return Err(loc.at(
            name.span(),
            format!("invalid group name \"{text}\""),
            Some("use lowercase letters, digits and '-', starting with a letter, at most 32 characters".into()),
        ));
    }
    if RESERVED_NAMES.contains(&text.as_str()) {
        return Err(loc.at(
            name.span(),
            format!("group name \"{text}\" is reserved"),
            Some("pick another name".into()),
        ));
    }
    Ok(())
}

/// Validation context shared by the timeline and expectation checks.
#[derive(Debug)]
pub(crate) struct Context<'a> {
    pub(crate) loc: Locator<'a>,
    pub(crate) names: Names,
    pub(crate) duration: Duration,
    /// Every method some client calls, for checking expectation filters.
    pub(crate) methods: BTreeSet<String>,
    /// Whether the scenario runs a registry.
    pub(crate) registry: bool,
    /// The validated server groups (start times, for the fault timeline).
    pub(crate) servers: Vec<ServerGroup>,
    /// The validated client groups (breakers and hash keys, for expectations).
    pub(crate) clients: Vec<ClientGroup>,
}

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
    Ok(Some(RegistryConfig {
        ttl,
        heartbeat,
        watch_timeout,
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

/// What a server group's validation needs to know.
struct ServerContext<'a> {
    loc: &'a Locator<'a>,
    names: &'a Names,
    duration: Duration,
    registry: bool,
}

/// One `[[servers]]` table (its names are registered already).
fn check_server_group(
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

/// Key `code`: `"echo"` (default) or `"user"`.
fn user_code(loc: &Locator<'_>, raw: Option<&Spanned<String>>) -> Result<bool, ScenarioError> {
    match raw.map(|c| (c.get_ref().as_str(), c.span())) {
        None | Some(("echo", _)) => Ok(false),
        Some(("user", _)) => Ok(true),
        Some((other, span)) => Err(loc.at(
            span,
            format!("code = {other:?}: the code under test is \"echo\" (built in) or \"user\" (plugged in by a test)"),
            Some(did_you_mean_or_list(other, &["echo", "user"])),
        )),
    }
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

/// A service name: letters, digits, `-`, `_`, `.`; 1..=64 characters.
fn check_service_text(
    loc: &Locator<'_>,
    service: &Spanned<String>,
) -> Result<String, ScenarioError> {
    let text = service.get_ref();
    let plain = text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if text.is_empty() || text.len() > 64 || !plain {
        return Err(loc.at(
            service.span(),
            format!("invalid service name \"{text}\""),
            Some("use letters, digits, '-', '_' and '.', at most 64 characters".into()),
        ));
    }
    Ok(text.clone())
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
    Ok(Some(Forward {
        targets,
        method,
        timeout: positive_duration(loc, raw.forward_timeout.as_ref(), "forward_timeout")?,
    }))
}

/// Forwarding must end: a chain of groups that leads back to itself would bounce
/// each call until its deadline.
fn check_forward_cycles(
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

/// What a client group's validation needs to know.
pub(crate) struct ClientContext<'a> {
    pub(crate) loc: &'a Locator<'a>,
    pub(crate) names: &'a Names,
    pub(crate) duration: Duration,
    pub(crate) registry: bool,
    pub(crate) servers: &'a [ServerGroup],
}

/// One `[[clients]]` table (its names are registered already).
fn check_client_group(
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

/// `Service.Method`: two non-empty identifiers joined by one dot.
pub(crate) fn method_name(
    loc: &Locator<'_>,
    method: &Spanned<String>,
) -> Result<String, ScenarioError> {
    let text = method.get_ref();
    let ident = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    match text.split_once('.') {
        Some((service, name)) if ident(service) && ident(name) => Ok(text.clone()),
        _ => Err(loc.at(
            method.span(),
            format!("invalid method \"{text}\""),
            Some("write Service.Method, e.g. \"Echo.Echo\"".into()),
        )),
    }
}

/// `codec`: `msgpack` (default) or `json`.
fn codec(loc: &Locator<'_>, raw: Option<&Spanned<String>>) -> Result<Codec, ScenarioError> {
    let Some(raw) = raw else {
        return Ok(Codec::MessagePack);
    };
    match raw.get_ref().as_str() {
        "msgpack" | "messagepack" => Ok(Codec::MessagePack),
        "json" => Ok(Codec::Json),
        other => Err(loc.at(
            raw.span(),
            format!("unknown codec \"{other}\""),
            Some(did_you_mean_or_list(other, &["msgpack", "json"])),
        )),
    }
}

/// `[clients.connection]` with defaults 1s / 1s / 1s.
fn check_connection(
    loc: &Locator<'_>,
    raw: Option<&RawConnection>,
) -> Result<ConnectionConfig, ScenarioError> {
    let second = Duration::from_secs(1);
    let Some(raw) = raw else {
        return Ok(ConnectionConfig {
            connect_timeout: second,
            keepalive_interval: second,
            keepalive_timeout: second,
        });
    };
    Ok(ConnectionConfig {
        connect_timeout: positive_duration(loc, raw.connect_timeout.as_ref(), "connect_timeout")?
            .unwrap_or(second),
        keepalive_interval: positive_duration(
            loc,
            raw.keepalive_interval.as_ref(),
            "keepalive_interval",
        )?
        .unwrap_or(second),
        keepalive_timeout: positive_duration(
            loc,
            raw.keepalive_timeout.as_ref(),
            "keepalive_timeout",
        )?
        .unwrap_or(second),
    })
}

/// `replicas`: 1..=[`REPLICAS_MAX`], default 1.
fn replicas(loc: &Locator<'_>, raw: Option<&Spanned<i64>>) -> Result<u32, ScenarioError> {
    Ok(integer(loc, raw, "replicas", 1, REPLICAS_MAX)?.unwrap_or(1))
}

/// An integer key within `min..=max`.
pub(crate) fn integer(
    loc: &Locator<'_>,
    raw: Option<&Spanned<i64>>,
    key: &str,
    min: i64,
    max: i64,
) -> Result<Option<u32>, ScenarioError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let value = *raw.get_ref();
    if value < min || value > max {
        return Err(loc.at(
            raw.span(),
            format!("{key} = {value} is out of range"),
            Some(format!("{key} must be {min}..={max}")),
        ));
    }
    // Cannot fail: max is at most REPLICAS_MAX..PAYLOAD_BYTES_MAX, all below u32::MAX.
    Ok(u32::try_from(value).ok())
}

/// A fraction key within 0..=1 (NaN is rejected too).
pub(crate) fn fraction(
    loc: &Locator<'_>,
    raw: Option<&Spanned<f64>>,
    key: &str,
) -> Result<Option<f64>, ScenarioError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let value = *raw.get_ref();
    if !(0.0..=1.0).contains(&value) {
        return Err(loc.at(
            raw.span(),
            format!("{key} = {value} is out of range"),
            Some(format!("{key} is a fraction from 0 to 1; 0.05 means 5%")),
        ));
    }
    Ok(Some(value))
}

/// A latency key, at most [`LATENCY_MAX`].
pub(crate) fn latency(
    loc: &Locator<'_>,
    raw: Option<&Spanned<LatencySpec>>,
    key: &str,
) -> Result<Option<LatencyRange>, ScenarioError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let spec = raw.get_ref();
    if spec.max > LATENCY_MAX {
        return Err(loc.at(
            raw.span(),
            format!(
                "{key} {} is above the {} limit",
                format_duration(spec.max),
                format_duration(LATENCY_MAX)
            ),
            Some("is the unit right? \"200ms\", not \"200s\"".into()),
        ));
    }
    Ok(Some(LatencyRange {
        min: spec.min,
        max: spec.max,
    }))
}

/// A duration key that must be above zero.
pub(crate) fn positive_duration(
    loc: &Locator<'_>,
    raw: Option<&Spanned<super::duration::DurationText>>,
    key: &str,
) -> Result<Option<Duration>, ScenarioError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let value = raw.get_ref().0;
    if value.is_zero() || value > DURATION_MAX {
        return Err(loc.at(
            raw.span(),
            format!("{key} must be above zero"),
            Some(format!("e.g. {key} = \"1s\"")),
        ));
    }
    Ok(Some(value))
}
