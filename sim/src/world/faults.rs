//! Applying the fault timeline to the running world: turmoil's link controls
//! for network faults, host crash/restart/leave, and the harness layer's
//! behaviour for `server_behaviour`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{World, HARNESS};
use crate::scenario::{Fault, FaultAction, Link, REGISTRY_HOST};
use crate::trace::EventKind;

impl World {
    /// Applies `fault` now (between steps) and records it.
    pub(super) fn apply(&mut self, fault: &Fault) {
        let at = self.sim.elapsed();
        self.recorder.record_at(
            at,
            HARNESS,
            EventKind::Fault {
                description: fault.description.clone(),
            },
        );
        match &fault.action {
            FaultAction::Partition { links } => each(links, |l| {
                self.partitioned.insert(pair(&l.from, &l.to));
                self.sim.partition(l.from.as_str(), l.to.as_str())
            }),
            FaultAction::PartitionOneway { links } => each(links, |l| {
                self.sim.partition_oneway(l.from.as_str(), l.to.as_str())
            }),
            FaultAction::Heal { links } => each(links, |l| {
                self.partitioned.remove(&pair(&l.from, &l.to));
                self.sim.repair(l.from.as_str(), l.to.as_str())
            }),
            FaultAction::HealOneway { links } => each(links, |l| {
                self.sim.repair_oneway(l.from.as_str(), l.to.as_str())
            }),
            FaultAction::Hold { links } => {
                each(links, |l| self.sim.hold(l.from.as_str(), l.to.as_str()))
            }
            FaultAction::Release { links } => {
                each(links, |l| self.sim.release(l.from.as_str(), l.to.as_str()))
            }
            FaultAction::Crash { hosts } => hosts.iter().for_each(|h| self.crash(h, at)),
            FaultAction::Restart { hosts } => {
                for host in hosts {
                    self.heal_silent_death(host);
                    if let Some(server) = self.servers.iter().find(|s| &s.name == host) {
                        server.leave.send_replace(false);
                        server.crashed.store(false, Ordering::Relaxed);
                    }
                    self.sim.bounce(host.as_str());
                }
            }
            FaultAction::Leave { hosts } => {
                for server in self.servers.iter().filter(|s| hosts.contains(&s.name)) {
                    server.leave.send_replace(true);
                }
            }
            FaultAction::SilentDeath { hosts } => {
                for host in hosts {
                    let others: Vec<String> =
                        self.all_hosts().into_iter().filter(|o| o != host).collect();
                    for other in &others {
                        self.sim.partition(host.as_str(), other.as_str());
                    }
                    self.silently_dead.insert(host.clone(), others);
                    self.crash(host, at);
                }
            }
            FaultAction::LinkLatency { links, latency } => each(links, |l| {
                self.sim
                    .set_link_latency(l.from.as_str(), l.to.as_str(), latency.min);
                self.sim
                    .set_link_max_message_latency(l.from.as_str(), l.to.as_str(), latency.max);
            }),
            FaultAction::Loss { links: None, rate } => self.sim.set_fail_rate(*rate),
            FaultAction::Loss {
                links: Some(links),
                rate,
            } => {
                for link in links {
                    self.sim
                        .set_link_fail_rate(link.from.as_str(), link.to.as_str(), *rate);
                }
            }
            FaultAction::ServerBehaviour {
                hosts,
                latency,
                error_rate,
            } => {
                for state in self.servers.iter().filter(|s| hosts.contains(&s.name)) {
                    let mut behaviour = state.behaviour.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(latency) = latency {
                        behaviour.latency = *latency;
                    }
                    if let Some(error_rate) = error_rate {
                        behaviour.error_rate = *error_rate;
                    }
                }
            }
        }
    }

    /// A restarted machine is reachable again: undo the partitions its
    /// silent death made, except links the timeline partitioned itself (those
    /// stay until their own `heal`).
    fn heal_silent_death(&mut self, host: &str) {
        for other in self.silently_dead.remove(host).unwrap_or_default() {
            if !self.partitioned.contains(&pair(host, &other)) {
                self.sim.repair(host, other.as_str());
            }
        }
    }

    fn all_hosts(&self) -> Vec<String> {
        let servers = self.servers.iter().map(|s| s.name.clone());
        let registry = self.has_registry.then(|| REGISTRY_HOST.to_owned());
        servers
            .chain(self.clients.iter().map(|c| c.name.clone()))
            .chain(registry)
            .collect()
    }

    fn crash(&mut self, host: &str, at: Duration) {
        if let Some(client) = self.clients.iter().find(|c| c.name == host) {
            client.abandon_in_flight(&self.recorder, at, "ClientCrashed");
        }
        if let Some(server) = self.servers.iter().find(|s| s.name == host) {
            server.crashed.store(true, Ordering::Relaxed);
        }
        // Let the host close its sockets in a fixed order during one tick before
        // turmoil drops its runtime (whose task-drop order is not deterministic):
        // see `net`. The crash itself lands one tick after its scheduled time.
        self.recorder.sockets().request_close(host);
        if let Err(error) = self.sim.step() {
            tracing::warn!(%error, host, "step before crash failed");
        }
        self.sim.crash(host);
        self.recorder
            .record_at(self.sim.elapsed(), host, EventKind::Crashed);
    }
}

/// A link as an unordered pair (partitions are symmetric).
fn pair(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_owned(), b.to_owned())
    } else {
        (b.to_owned(), a.to_owned())
    }
}

fn each(links: &[Link], mut f: impl FnMut(&Link)) {
    links.iter().for_each(&mut f);
}
