//! The world of one run, in three steps as turmoil's `Builder → Sim → step`:
//! [`World::build`] makes a seeded turmoil simulation with a host per scenario
//! host running its group's program; [`World::step`] applies the faults due
//! and advances one tick; [`World::finish`] evaluates the expectations and the
//! invariants on the trace. A run is a pure function of (scenario, seed, code).

mod faults;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use squall::SeedSource;

use crate::env::{RunView, Store};
use crate::expect::{evaluate, Verdict};
use crate::host::client::{ClientProgram, ClientState};
use crate::host::registry::{self, RegistryState};
use crate::host::server::{ServerProgram, ServerState};
use crate::recorder::Recorder;
use crate::scenario::{Fault, REGISTRY_HOST};
use crate::simulation::{Invariant, Simulation};
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
    /// Which code ran where (built-in echo, or the user's factory/workload by name).
    pub under_test: Vec<String>,
    /// Every event.
    pub trace: Trace,
    /// Each expectation's verdict, then each invariant's.
    pub verdicts: Vec<Verdict>,
    /// Simulation steps taken.
    pub steps: u64,
    /// Simulated time covered.
    pub simulated: Duration,
}

impl RunOutcome {
    /// Whether every expectation and invariant held.
    pub fn passed(&self) -> bool {
        self.verdicts.iter().all(|v| v.pass)
    }

    /// The trace's determinism fingerprint.
    pub fn hash(&self) -> String {
        self.trace.hash()
    }
}

/// A run that could not complete (as opposed to one whose expectations
/// failed): refused before it started (`at` is `None`: the plug-ins do not fit
/// the scenario), or stopped by turmoil or a host.
#[derive(Debug)]
pub struct RunError {
    /// The scenario's name.
    pub scenario: String,
    /// The seed.
    pub seed: u64,
    /// When the run stopped; `None` when it was refused before it started.
    pub at: Option<Duration>,
    /// What turmoil, a host or validation reported.
    pub message: String,
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (scenario, seed, message) = (&self.scenario, self.seed, &self.message);
        match self.at {
            None => write!(f, "{scenario} (seed {seed}) cannot run: {message}"),
            Some(at) => write!(
                f,
                "{scenario} (seed {seed}): simulation failed at {at:?}: {message}"
            ),
        }
    }
}

impl std::error::Error for RunError {}

/// Runs `simulation` at `seed` (already validated).
pub(crate) fn run(simulation: &Simulation, seed: u64) -> Result<RunOutcome, RunError> {
    let mut world = World::build(simulation, seed);
    while world.sim.elapsed() < world.time_limit {
        world.step()?;
    }
    Ok(world.finish())
}

/// An invariant checked during the run, and its first violation.
struct Watched {
    invariant: Invariant,
    next_at: Duration,
    violation: Option<(Duration, String)>,
}

/// The simulation plus the harness-owned host state faults act on.
pub(crate) struct World {
    sim: turmoil::Sim<'static>,
    recorder: Recorder,
    store: Store,
    servers: Vec<Arc<ServerState>>,
    clients: Vec<Arc<ClientState>>,
    has_registry: bool,
    /// Links the timeline partitioned (both ways) and has not healed.
    partitioned: BTreeSet<(String, String)>,
    /// Hosts that died silently → the hosts their death partitioned them from.
    silently_dead: BTreeMap<String, Vec<String>>,
    /// Faults not yet applied, in time order.
    faults: std::vec::IntoIter<Fault>,
    next_fault: Option<Fault>,
    time_limit: Duration,
    steps: u64,
    watched: Vec<Watched>,
    simulation: Simulation,
    seed: u64,
}

impl World {
    /// A fresh turmoil world for `seed`: registry, servers, clients in
    /// scenario order (turmoil's RNG depends on host registration order).
    fn build(simulation: &Simulation, seed: u64) -> World {
        let scenario = Arc::clone(&simulation.scenario);
        let seeds = SeedSource::new(seed);
        // Trace and span ids (drawn only while a subscriber records squall's
        // DEBUG call spans) replay with the run; this thread runs every host.
        squall::observe::seed_trace_ids(seeds.child("trace-ids"));
        let recorder = Recorder::new();
        let store = Store::default();
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
        let mut servers = Vec::new();
        for host in scenario.server_hosts() {
            let state = Arc::new(ServerState::for_host(
                &scenario,
                host,
                seeds.child(&host.name),
            ));
            let program = ServerProgram {
                state: Arc::clone(&state),
                recorder: recorder.clone(),
                store: store.clone(),
                scenario: Arc::clone(&scenario),
                factory: simulation.server_factory(&host.group),
            };
            sim.host(host.name.as_str(), program.software());
            servers.push(state);
        }
        let mut clients = Vec::new();
        for (group, host) in scenario.client_hosts() {
            let state = Arc::new(ClientState::new(host, Arc::new(group.clone())));
            let program = ClientProgram {
                state: Arc::clone(&state),
                recorder: recorder.clone(),
                store: store.clone(),
                seeds: seeds.child(host),
                registry: scenario.registry.clone(),
                scenario: Arc::clone(&scenario),
                workload: simulation.client_workload(&group.name),
            };
            sim.host(host, program.software());
            clients.push(state);
        }
        recorder.record_at(
            Duration::ZERO,
            HARNESS,
            EventKind::Note {
                text: format!("run scenario={} seed={seed}", scenario.name),
            },
        );
        let watched = simulation
            .all_invariants()
            .into_iter()
            .filter_map(|invariant| {
                let every = invariant.every?;
                Some(Watched {
                    invariant,
                    next_at: every,
                    violation: None,
                })
            })
            .collect();
        let mut faults = scenario.faults.clone().into_iter();
        let next_fault = faults.next();
        World {
            sim,
            recorder,
            store,
            servers,
            clients,
            has_registry: scenario.registry.is_some(),
            partitioned: BTreeSet::new(),
            silently_dead: BTreeMap::new(),
            faults,
            next_fault,
            time_limit,
            steps: 0,
            watched,
            simulation: simulation.clone(),
            seed,
        }
    }

    fn error(&self, message: String) -> RunError {
        RunError {
            scenario: self.simulation.scenario.name.clone(),
            seed: self.seed,
            at: Some(self.sim.elapsed()),
            message,
        }
    }

    /// Applies the faults due, advances one tick, checks the trace cap and the
    /// invariants watched during the run.
    fn step(&mut self) -> Result<(), RunError> {
        while let Some(fault) = self.next_fault.take_if(|f| f.at <= self.sim.elapsed()) {
            self.apply(&fault);
            self.next_fault = self.faults.next();
        }
        if let Err(error) = self.sim.step() {
            return Err(self.error(error.to_string()));
        }
        self.steps += 1;
        if self.recorder.is_full() {
            return Err(self.error(format!(
                "the trace exceeded {} events: a runaway workload (calls failing without time passing?)",
                crate::recorder::EVENTS_MAX
            )));
        }
        self.check_watched();
        Ok(())
    }

    fn check_watched(&mut self) {
        let now = self.sim.elapsed();
        if self.watched.iter().all(|w| w.next_at > now) {
            return;
        }
        let scenario = Arc::clone(&self.simulation.scenario);
        let (store, seed) = (&self.store, self.seed);
        self.recorder.with_events(|events| {
            for watched in self.watched.iter_mut().filter(|w| w.next_at <= now) {
                let every = watched.invariant.every.unwrap_or(TICK);
                watched.next_at = now + every;
                if watched.violation.is_some() {
                    continue;
                }
                let view = RunView {
                    scenario: &scenario,
                    seed,
                    events,
                    store,
                    at: now,
                };
                if let Err(why) = (watched.invariant.check)(&view) {
                    watched.violation = Some((now, why));
                }
            }
        });
    }

    /// Evaluates the expectations, then every invariant.
    fn finish(self) -> RunOutcome {
        let simulated = self.sim.elapsed();
        let steps = self.steps;
        self.recorder.record_at(
            simulated,
            HARNESS,
            EventKind::Note {
                text: format!("end steps={steps}"),
            },
        );
        let trace = self.recorder.snapshot();
        let scenario = &self.simulation.scenario;
        let mut verdicts = evaluate(scenario, &trace);
        let view = RunView {
            scenario,
            seed: self.seed,
            events: &trace.events,
            store: &self.store,
            at: simulated,
        };
        let during: Vec<(String, Option<(Duration, String)>)> = self
            .watched
            .into_iter()
            .map(|w| (w.invariant.name, w.violation))
            .collect();
        for invariant in self.simulation.all_invariants() {
            let earlier = during
                .iter()
                .find(|(name, _)| name == &invariant.name)
                .and_then(|(_, v)| v.clone());
            let result = match earlier {
                Some((at, why)) => Err(format!(
                    "violated at {}: {why}",
                    crate::scenario::format_duration(at)
                )),
                None => (invariant.check)(&view),
            };
            verdicts.push(Verdict {
                name: format!("invariant: {}", invariant.name),
                wanted: "holds".to_owned(),
                observed: match &result {
                    Ok(()) => "held".to_owned(),
                    Err(why) => why.clone(),
                },
                pass: result.is_ok(),
                line: None,
            });
        }
        RunOutcome {
            scenario: scenario.name.clone(),
            seed: self.seed,
            under_test: self.simulation.under_test(),
            trace,
            verdicts,
            steps,
            simulated,
        }
    }
}
