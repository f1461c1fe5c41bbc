//! The fault timeline as a whole, after each fault is valid on its own: what a
//! fault acts on must exist at that moment (a server after its `start_at`, a
//! host that is up), and link states turmoil cannot combine must not overlap.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::names::Context;
use crate::scenario::duration::format_duration;
use crate::scenario::error::ScenarioError;
use crate::scenario::schema::{Fault, FaultAction, Link};

/// The hosts a crash, silent death, leave or restart acts on (the faults that
/// start or stop a server).
fn lifecycle_hosts(action: &FaultAction) -> Option<&[String]> {
    match action {
        FaultAction::Crash { hosts }
        | FaultAction::SilentDeath { hosts }
        | FaultAction::Leave { hosts }
        | FaultAction::Restart { hosts } => Some(hosts),
        _ => None,
    }
}

/// A server that has not started yet (its `start_at` is later) cannot be
/// crashed, left or restarted: the fault would act on nothing.
pub(super) fn check_not_before_start(
    cx: &Context<'_>,
    faults: &[Fault],
) -> Result<(), ScenarioError> {
    for fault in faults {
        let Some(hosts) = lifecycle_hosts(&fault.action) else {
            continue;
        };
        for host in hosts {
            let start = cx
                .servers
                .iter()
                .flat_map(|g| g.hosts.iter())
                .find(|h| &h.name == host)
                .map_or(Duration::ZERO, |h| h.start_at);
            if fault.at < start {
                return Err(cx.loc.at_line(
                    fault.line,
                    format!(
                        "{host} only starts at {} (start_at), so it cannot be acted on at {}",
                        format_duration(start),
                        format_duration(fault.at)
                    ),
                    Some("move the fault after the server's start_at".into()),
                ));
            }
        }
    }
    Ok(())
}

/// Crashing a host that is already down is a mistake in the timeline (the second
/// crash would do nothing); say so, naming the earlier fault's line.
pub(super) fn check_crash_sequence(
    cx: &Context<'_>,
    faults: &[Fault],
) -> Result<(), ScenarioError> {
    let mut down_since: BTreeMap<&str, &Fault> = BTreeMap::new();
    for fault in faults {
        match &fault.action {
            FaultAction::Crash { hosts }
            | FaultAction::SilentDeath { hosts }
            | FaultAction::Leave { hosts } => {
                for host in hosts {
                    if let Some(earlier) = down_since.get(host.as_str()) {
                        return Err(cx.loc.at_line(
                            fault.line,
                            format!(
                                "{host} is {} at {} but is already down since {} (line {})",
                                if matches!(fault.action, FaultAction::Leave { .. }) {
                                    "told to leave"
                                } else {
                                    "crashed"
                                },
                                format_duration(fault.at),
                                format_duration(earlier.at),
                                earlier.line
                            ),
                            Some("restart it first, or remove one of the crashes".into()),
                        ));
                    }
                    down_since.insert(host, fault);
                }
            }
            FaultAction::Restart { hosts } => {
                for host in hosts {
                    down_since.remove(host.as_str());
                }
            }
            _ => {}
        }
    }
    debug_assert!(down_since.keys().all(|h| cx.names.is_server(h)));
    Ok(())
}

/// A link without direction: turmoil keeps one state per host pair.
fn pair<'a>(a: &'a str, b: &'a str) -> (&'a str, &'a str) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

/// `hold` and a one-way partition on the same link at once are unsupported:
/// turmoil keeps one state per direction, so a `partition_oneway` overwrites one
/// direction of a hold, and a `release` silently heals the one-way partition too.
/// The run would not do what the file says, so the overlap is refused, at the
/// later fault, naming the earlier one. A `partition` or `heal` of the pair resets
/// both directions and ends either state. A `silent_death`'s partition is not
/// counted as ending a hold: refusing such a timeline asks for an explicit
/// `release`, which is harmless, while accepting a wrong one is not.
pub(super) fn check_hold_and_oneway(
    cx: &Context<'_>,
    faults: &[Fault],
) -> Result<(), ScenarioError> {
    // Pair → the line of the hold that is in force.
    let mut held: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    // Directed link → the line of the one-way partition that is in force.
    let mut oneway: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for fault in faults {
        match &fault.action {
            FaultAction::Hold { links } => {
                for link in links {
                    let partitioned = [(&link.from, &link.to), (&link.to, &link.from)]
                        .into_iter()
                        .find_map(|(from, to)| oneway.get(&(from.as_str(), to.as_str())));
                    if let Some(&earlier) = partitioned {
                        return Err(overlap(cx, fault, link, earlier));
                    }
                    held.insert(pair(&link.from, &link.to), fault.line);
                }
            }
            FaultAction::PartitionOneway { links } => {
                for link in links {
                    if let Some(&earlier) = held.get(&pair(&link.from, &link.to)) {
                        return Err(overlap(cx, fault, link, earlier));
                    }
                    oneway.insert((link.from.as_str(), link.to.as_str()), fault.line);
                }
            }
            FaultAction::Release { links } => {
                for link in links {
                    held.remove(&pair(&link.from, &link.to));
                }
            }
            FaultAction::HealOneway { links } => {
                for link in links {
                    oneway.remove(&(link.from.as_str(), link.to.as_str()));
                }
            }
            FaultAction::Partition { links } | FaultAction::Heal { links } => {
                let pairs: BTreeSet<(&str, &str)> =
                    links.iter().map(|l| pair(&l.from, &l.to)).collect();
                held.retain(|p, _| !pairs.contains(p));
                oneway.retain(|(from, to), _| !pairs.contains(&pair(from, to)));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The error for `fault` (a hold or a one-way partition) meeting the other
/// state, in force since `earlier_line`, on `link`; the hint names the fault
/// that ends the earlier state.
fn overlap(cx: &Context<'_>, fault: &Fault, link: &Link, earlier_line: usize) -> ScenarioError {
    let (kind, state, undo) = match fault.action {
        FaultAction::Hold { .. } => ("hold", "is partitioned one way", "heal_oneway"),
        _ => ("partition_oneway", "is held", "release"),
    };
    cx.loc.at_line(
        fault.line,
        format!(
            "{kind} at {}: the link {} <-> {} {state} since line {earlier_line}; hold and a one-way partition on one link are unsupported by turmoil",
            format_duration(fault.at),
            link.from,
            link.to,
        ),
        Some(format!(
            "add a kind = \"{undo}\" fault before this one, or use a two-way partition; see the fidelity gaps in docs/SCENARIOS.md"
        )),
    )
}
