//! Host and group names: the registry of every name a scenario defines, how a
//! reference (`between = ["server", "client-2"]`) resolves to hosts of an
//! allowed role, and the [`Context`] the fault and expectation sections share.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use toml::Spanned;

use crate::scenario::error::{count, suggest, Locator, ScenarioError};
use crate::scenario::schema::{ClientGroup, ServerGroup, REGISTRY_HOST};

/// Host names the harness keeps for itself.
pub const RESERVED_NAMES: [&str; 2] = ["sim", REGISTRY_HOST];

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
                let listed = match hosts.as_slice() {
                    [] => String::new(),
                    [only] => format!(": {only}"),
                    [first, .., last] => format!(": {first}..{last}"),
                };
                return format!(
                    "group \"{group}\" has {}{listed}",
                    count(hosts.len(), "host")
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
    pub(crate) fn hosts_of(&self, group: &str) -> Vec<String> {
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
    pub(crate) fn add_registry(&mut self) {
        self.hosts.insert(REGISTRY_HOST.to_string(), Role::Registry);
    }

    /// Adds a group and its hosts; errors on any clash.
    pub(crate) fn add_group(
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
