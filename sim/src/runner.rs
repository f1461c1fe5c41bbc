//! The runner: builds a seeded turmoil simulation from a [`Scenario`], steps it,
//! applies the fault timeline at exact simulated times, and checks the
//! expectations on the trace. A run is a pure function of (scenario, seed, code).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use squall::SeedSource;
use tokio::sync::watch;

use crate::expect::{evaluate, Verdict};
use crate::host::client::ClientState;
use crate::host::registry::RegistryState;
use crate::host::server::ServerState;
use crate::host::{client, registry, server};
use crate::recorder::Recorder;
use crate::scenario::{Fault, FaultAction, Link, Scenario, REGISTRY_HOST};
use crate::trace::{EventKind, Trace};

/// The host name the harness records its own events under.
pub const HARNESS: &str = "sim";

/// turmoil's step; also the precision of fault times.
const TICK: Duration = Duration::from_millis(1);

/// What one run produced.
#[derive(Debug)]
pub struct RunOutcome {
    /// The scenario's name.
    pub scenario: String,
    /// The seed it ran with.
    pub seed: u64,
    /// Every event.
    pub trace: Trace,
    /// Each expectation's verdict.
    pub verdicts: Vec<Verdict>,
    /// Simulation steps taken.
    pub steps: u64,
    /// Simulated time covered.
    pub simulated: Duration,
}

impl RunOutcome {
    /// Whether every expectation held.
    pub fn passed(&self) -> bool {
        self.verdicts.iter().all(|v| v.pass)
    }

    /// The trace's determinism fingerprint.
    pub fn hash(&self) -> String {
        self.trace.hash()
    }
}

/// A run that could not complete (as opposed to one whose expectations failed).
#[derive(Debug, thiserror::Error)]
#[error("{scenario} (seed {seed}): simulation failed at {at:?}: {message}")]
pub struct RunError {
    /// The scenario's name.
    pub scenario: String,
    /// The seed.
    pub seed: u64,
    /// When.
    pub at: Duration,
    /// What turmoil or a host reported.
    pub message: String,
}

/// Every method any client calls: the servers serve exactly these.
fn methods(scenario: &Scenario) -> BTreeSet<String> {
    scenario
        .clients
        .iter()
        .flat_map(|c| c.workload.mix.iter().map(|m| m.method.clone()))
        .collect()
}

/// Runs `scenario` with `seed`.
pub fn run(scenario: &Scenario, seed: u64) -> Result<RunOutcome, RunError> {
    let seeds = SeedSource::new(seed);
    let recorder = Recorder::new();
    let time_limit = scenario.time_limit();
    let mut builder = turmoil::Builder::new();
    builder
        .rng_seed(seed)
        // A fixed epoch: turmoil otherwise reads the wall clock.
        .epoch(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        .simulation_duration(time_limit + Duration::from_secs(1))
        .tick_duration(TICK)
        .min_message_latency(scenario.network.latency.min)
        .max_message_latency(scenario.network.latency.max)
        .fail_rate(scenario.network.loss)
        .repair_rate(scenario.network.repair_rate)
        .tcp_capacity(4096);
    let mut sim = builder.build();

    if scenario.registry.is_some() {
        let state = Arc::new(RegistryState {
            incarnation: AtomicU64::new(0),
            seeds: seeds.child(REGISTRY_HOST),
        });
        sim.host(REGISTRY_HOST, registry::software(state, recorder.clone()));
    }
    let methods = methods(scenario);
    let mut servers = Vec::new();
    for group in &scenario.servers {
        for host in &group.hosts {
            let state = Arc::new(ServerState {
                name: host.name.clone(),
                behaviour: Mutex::new(host.behaviour.clone()),
                rng: Mutex::new(seeds.stream(&format!("{}/handler", host.name))),
                methods: methods.clone(),
                service: group.service.clone(),
                weight: host.weight,
                start_at: host.start_at,
                forward: group.forward.clone(),
                registry: scenario.registry.clone(),
                leave: watch::channel(false).0,
                crashed: AtomicBool::new(false),
                seeds: seeds.child(&host.name),
            });
            let software = server::software(Arc::clone(&state), recorder.clone());
            sim.host(host.name.as_str(), software);
            servers.push(state);
        }
    }
    let mut clients = Vec::new();
    for (group, host) in scenario.client_hosts() {
        let rng = seeds.stream(&format!("{host}/workload"));
        let state = Arc::new(ClientState::new(host, group.clone(), rng));
        let software = client::software(
            Arc::clone(&state),
            recorder.clone(),
            seeds.child(host),
            scenario.registry.clone(),
        );
        sim.host(host, software);
        clients.push(state);
    }
    recorder.record_at(
        Duration::ZERO,
        HARNESS,
        EventKind::Note {
            text: format!("run scenario={} seed={seed}", scenario.name),
        },
    );

    let mut world = World {
        sim,
        recorder: &recorder,
        servers: &servers,
        clients: &clients,
        has_registry: scenario.registry.is_some(),
    };
    let mut faults = scenario.faults.iter().peekable();
    let mut steps = 0u64;
    while world.sim.elapsed() < time_limit {
        while let Some(fault) = faults.next_if(|f| f.at <= world.sim.elapsed()) {
            world.apply(fault);
        }
        if let Err(error) = world.sim.step() {
            return Err(RunError {
                scenario: scenario.name.clone(),
                seed,
                at: world.sim.elapsed(),
                message: error.to_string(),
            });
        }
        steps += 1;
        if recorder.is_full() {
            return Err(RunError {
                scenario: scenario.name.clone(),
                seed,
                at: world.sim.elapsed(),
                message: format!(
                    "the trace exceeded {} events: a runaway workload (calls failing without time passing?)",
                    crate::recorder::EVENTS_MAX
                ),
            });
        }
    }
    let simulated = world.sim.elapsed();
    recorder.record_at(
        simulated,
        HARNESS,
        EventKind::Note {
            text: format!("end steps={steps}"),
        },
    );
    let trace = recorder.snapshot();
    let verdicts = evaluate(scenario, &trace);
    Ok(RunOutcome {
        scenario: scenario.name.clone(),
        seed,
        trace,
        verdicts,
        steps,
        simulated,
    })
}

/// The simulation plus the harness-owned host state faults act on.
struct World<'a> {
    sim: turmoil::Sim<'a>,
    recorder: &'a Recorder,
    servers: &'a [Arc<ServerState>],
    clients: &'a [Arc<ClientState>],
    has_registry: bool,
}

impl World<'_> {
    fn apply(&mut self, fault: &Fault) {
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
                self.sim.partition(l.from.as_str(), l.to.as_str())
            }),
            FaultAction::PartitionOneway { links } => each(links, |l| {
                self.sim.partition_oneway(l.from.as_str(), l.to.as_str())
            }),
            FaultAction::Heal { links } => {
                each(links, |l| self.sim.repair(l.from.as_str(), l.to.as_str()))
            }
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
                    for other in self.all_hosts() {
                        if &other != host {
                            self.sim.partition(host.as_str(), other.as_str());
                        }
                    }
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
            client.abandon_in_flight(self.recorder, at, "ClientCrashed");
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
    }
}

fn each(links: &[Link], mut f: impl FnMut(&Link)) {
    links.iter().for_each(&mut f);
}
