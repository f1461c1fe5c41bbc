//! The fault timeline applied to a real run: network faults change the link
//! proxies' state ([`super::net`]), host faults stop and start host threads,
//! and `leave` / `server_behaviour` change the same harness state as in a
//! simulated run.

use std::sync::atomic::Ordering;

use super::RealWorld;
use crate::scenario::{Fault, FaultAction, Link};
use crate::trace::EventKind;
use crate::world::HARNESS;

impl RealWorld {
    /// Applies `fault` now and records it.
    pub(super) fn apply(&mut self, fault: &Fault) {
        let at = self.clock.now();
        self.recorder.record_at(
            at,
            HARNESS,
            EventKind::Fault {
                description: fault.description.clone(),
            },
        );
        let each = |links: &[Link], f: &dyn Fn(&mut super::net::NetControl<'_>, &Link)| {
            self.net.change(|net| links.iter().for_each(|l| f(net, l)));
        };
        match &fault.action {
            FaultAction::Partition { links } => each(links, &|n, l| n.partition(&l.from, &l.to)),
            FaultAction::PartitionOneway { links } => {
                each(links, &|n, l| n.partition_oneway(&l.from, &l.to))
            }
            FaultAction::Heal { links } => each(links, &|n, l| n.repair(&l.from, &l.to)),
            FaultAction::HealOneway { links } => {
                each(links, &|n, l| n.repair_oneway(&l.from, &l.to))
            }
            FaultAction::Hold { links } => each(links, &|n, l| n.hold(&l.from, &l.to)),
            FaultAction::Release { links } => each(links, &|n, l| n.release(&l.from, &l.to)),
            FaultAction::LinkLatency { links, latency } => {
                each(links, &|n, l| n.latency(&l.from, &l.to, *latency))
            }
            FaultAction::Loss { links: None, rate } => self.net.change(|n| n.loss(None, *rate)),
            FaultAction::Loss {
                links: Some(links),
                rate,
            } => each(links, &|n, l| n.loss(Some((&l.from, &l.to)), *rate)),
            FaultAction::Crash { hosts } => hosts.iter().for_each(|h| self.crash(h)),
            FaultAction::SilentDeath { hosts } => {
                for host in hosts {
                    self.net.change(|n| n.silently_dead(host, true));
                    self.crash(host);
                }
            }
            FaultAction::Restart { hosts } => hosts.iter().for_each(|h| self.restart(h)),
            FaultAction::Leave { hosts } => {
                for server in self.servers.iter().filter(|s| hosts.contains(&s.name)) {
                    server.leave.send_replace(true);
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

    /// Stops `host`: its calls in flight end as `ClientCrashed`, its listener
    /// and sockets close (its runtime is dropped with every task).
    fn crash(&mut self, host: &str) {
        let at = self.clock.now();
        if let Some(client) = self.clients.iter().find(|c| c.name == host) {
            client.abandon_in_flight(&self.recorder, at, "ClientCrashed");
        }
        if let Some(server) = self.servers.iter().find(|s| s.name == host) {
            server.crashed.store(true, Ordering::Relaxed);
        }
        self.net.unlisten(host);
        if let Some(thread) = self.running.remove(host) {
            thread.stop();
        }
        self.recorder
            .record_at(self.clock.now(), host, EventKind::Crashed);
    }

    /// Starts `host` again (after stopping it, if it runs): reachable again
    /// if it died silently.
    fn restart(&mut self, host: &str) {
        self.net.change(|n| n.silently_dead(host, false));
        if let Some(server) = self.servers.iter().find(|s| s.name == host) {
            server.leave.send_replace(false);
            server.crashed.store(false, Ordering::Relaxed);
        }
        if let Some(thread) = self.running.remove(host) {
            self.net.unlisten(host);
            thread.stop();
        }
        if let Err(error) = self.start(host) {
            tracing::error!(%error, host, "cannot restart a real host");
        }
    }
}
