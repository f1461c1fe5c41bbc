//! Real-TCP mode: the same scenario, the same host programs (the user's
//! routers and workloads, or the built-in echo), over real sockets on loopback
//! with real timers, and a fault proxy on every link applying the timeline in
//! wall-clock time. The trace has the same format and the same expectations are
//! evaluated, so a simulated and a real run can be compared verdict by verdict
//! ([`compare`]). Where they differ is a fidelity gap of the simulator (or a
//! bug): `docs/FIDELITY.md` lists them for every shipped scenario.
//!
//! A real run is not deterministic and takes wall time: the scenario's
//! duration × `time_scale`. Each host runs on its own thread and runtime
//! ([`hosts`]); the harness thread runs the timeline and every link's proxy
//! ([`net`]).
//!
//! # Layout
//! - [`clock`]: scenario time from the scaled wall clock.
//! - [`scale`]: scenario durations turned into core's wall-clock settings.
//! - [`net`]: loopback listeners and the per-link fault proxies.
//! - `hosts`: one thread and runtime per host; crash = drop the runtime.
//! - `faults`: the timeline applied to the network and the hosts.
//! - [`compare`]: simulated and real verdicts side by side.

pub mod clock;
pub mod compare;
mod faults;
mod hosts;
pub mod net;
pub mod scale;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use squall::SeedSource;

pub use compare::{compare, Comparison, Row};
pub use net::RealNet;

use self::clock::RealClock;
use self::hosts::{HostThread, Program};
use crate::env::{RunView, Store};
use crate::expect::{evaluate, Verdict};
use crate::host::client::{ClientProgram, ClientState};
use crate::host::registry::RegistryState;
use crate::host::server::{ServerProgram, ServerState};
use crate::recorder::Recorder;
use crate::scenario::REGISTRY_HOST;
use crate::simulation::Simulation;
use crate::trace::EventKind;
use crate::world::{RunError, RunOutcome, HARNESS};

/// The smallest time scale: below it, scaled latencies and timeouts are
/// mostly scheduling noise (a 5 ms scenario latency would be 50 µs).
pub const TIME_SCALE_MIN: f64 = 0.01;

/// The largest time scale (a run 10× slower than its scenario).
pub const TIME_SCALE_MAX: f64 = 10.0;

/// How to run a scenario over real TCP.
#[derive(Clone, Debug, PartialEq)]
pub struct RealOptions {
    /// Wall seconds per scenario second, in [`TIME_SCALE_MIN`]..=[`TIME_SCALE_MAX`].
    /// 1 (the default) runs in real time; 0.1 runs a 30 s scenario in about 3 s,
    /// with every latency, timeout and service time scaled alike (see
    /// [`scale`] for what is and is not).
    pub time_scale: f64,
}

impl Default for RealOptions {
    fn default() -> RealOptions {
        RealOptions { time_scale: 1.0 }
    }
}

impl RealOptions {
    /// Real time scaled by `time_scale`.
    pub fn scaled(time_scale: f64) -> RealOptions {
        RealOptions { time_scale }
    }

    /// Checks the options; the message says what is wrong and what would do.
    pub fn validate(&self) -> Result<(), String> {
        let scale = self.time_scale;
        if !(TIME_SCALE_MIN..=TIME_SCALE_MAX).contains(&scale) {
            return Err(format!(
                "time scale {scale} is out of range: use {TIME_SCALE_MIN}..={TIME_SCALE_MAX} (0.1 runs ten times faster than the scenario's clock)"
            ));
        }
        Ok(())
    }
}

/// Runs `simulation` (already validated) at `seed` over real TCP.
pub(crate) fn run(
    simulation: &Simulation,
    seed: u64,
    options: &RealOptions,
) -> Result<RunOutcome, RunError> {
    let error = |message: String| RunError {
        scenario: simulation.scenario.name.clone(),
        seed,
        at: None,
        message,
    };
    options.validate().map_err(error)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| error(format!("cannot start the harness runtime: {e}")))?;
    let clock = RealClock::start(options.time_scale);
    let _entered = clock::enter(Arc::clone(&clock));
    runtime.block_on(async {
        let mut world = RealWorld::build(simulation, seed, options, clock)
            .map_err(|e| error(format!("cannot start a host thread: {e}")))?;
        world.run_timeline().await;
        world.finish()
    })
}

/// One real run: the network, the hosts, and the harness-owned state faults
/// act on (the same as a simulated world's).
pub(crate) struct RealWorld {
    pub(crate) clock: Arc<RealClock>,
    pub(crate) net: Arc<RealNet>,
    pub(crate) recorder: Recorder,
    store: Store,
    pub(crate) servers: Vec<Arc<ServerState>>,
    pub(crate) clients: Vec<Arc<ClientState>>,
    /// Every host's program, in start order (registry, servers, clients).
    pub(crate) programs: Vec<(String, Program)>,
    /// The hosts running now.
    pub(crate) running: BTreeMap<String, HostThread>,
    simulation: Simulation,
    seed: u64,
}

impl RealWorld {
    /// Starts every host: registry, servers, clients, in scenario order.
    fn build(
        simulation: &Simulation,
        seed: u64,
        options: &RealOptions,
        clock: Arc<RealClock>,
    ) -> std::io::Result<RealWorld> {
        let scenario = Arc::clone(&simulation.scenario);
        let seeds = SeedSource::new(seed);
        let net = RealNet::new(
            scenario.network.latency,
            scenario.network.loss,
            seeds.stream("real/network"),
            tokio::runtime::Handle::current(),
            Arc::clone(&clock),
        );
        let recorder = Recorder::real(Arc::clone(&net));
        let store = Store::default();
        let mut programs = Vec::new();
        if scenario.registry.is_some() {
            let state = Arc::new(RegistryState {
                incarnation: AtomicU64::new(0),
                seeds: seeds.child(REGISTRY_HOST),
            });
            programs.push((
                REGISTRY_HOST.to_owned(),
                Program::Registry(state, recorder.clone()),
            ));
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
            programs.push((host.name.clone(), Program::Server(program)));
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
            programs.push((host.to_owned(), Program::Client(program)));
            clients.push(state);
        }
        recorder.record_at(
            Duration::ZERO,
            HARNESS,
            EventKind::Note {
                text: format!(
                    "run scenario={} seed={seed} mode=real time_scale={}",
                    scenario.name, options.time_scale
                ),
            },
        );
        let mut world = RealWorld {
            clock,
            net,
            recorder,
            store,
            servers,
            clients,
            programs,
            running: BTreeMap::new(),
            simulation: simulation.clone(),
            seed,
        };
        let names: Vec<String> = world.programs.iter().map(|(n, _)| n.clone()).collect();
        for name in names {
            world.start(&name)?;
        }
        Ok(world)
    }

    /// Starts host `name`'s program on a fresh thread.
    pub(crate) fn start(&mut self, name: &str) -> std::io::Result<()> {
        let Some((_, program)) = self.programs.iter().find(|(n, _)| n == name) else {
            return Ok(());
        };
        let thread = HostThread::start(name, program.clone(), Arc::clone(&self.clock))?;
        self.running.insert(name.to_owned(), thread);
        Ok(())
    }

    /// Applies each fault at its scenario time, then waits out the run.
    async fn run_timeline(&mut self) {
        let scenario = Arc::clone(&self.simulation.scenario);
        for fault in &scenario.faults {
            tokio::time::sleep_until(self.clock.instant_of(fault.at)).await;
            self.apply(fault);
        }
        tokio::time::sleep_until(self.clock.instant_of(scenario.time_limit())).await;
    }

    /// Takes the trace, stops every host, evaluates expectations and invariants.
    fn finish(mut self) -> Result<RunOutcome, RunError> {
        let simulated = self.clock.now();
        let scenario = Arc::clone(&self.simulation.scenario);
        self.recorder.record_at(
            simulated,
            HARNESS,
            EventKind::Note {
                text: "end mode=real".to_owned(),
            },
        );
        // The trace ends here: what hosts record while being stopped (calls
        // cancelled by the teardown) is not part of the run, as in a
        // simulated run.
        let mut trace = self.recorder.snapshot();
        for (_, host) in std::mem::take(&mut self.running) {
            host.stop();
        }
        if self.recorder.is_full() {
            return Err(RunError {
                scenario: scenario.name.clone(),
                seed: self.seed,
                at: Some(simulated),
                message: format!("the trace exceeded {} events", crate::recorder::EVENTS_MAX),
            });
        }
        // Appends from several threads can interleave out of time order by a
        // few microseconds; expectations read the trace in time order.
        trace.events.sort_by_key(|e| e.at);
        let mut verdicts = evaluate(&scenario, &trace);
        verdicts.extend(self.invariants(&trace, simulated));
        Ok(RunOutcome {
            scenario: scenario.name.clone(),
            seed: self.seed,
            under_test: self.simulation.under_test(),
            trace,
            verdicts,
            steps: 0,
            simulated,
        })
    }

    /// Every invariant, checked once on the final trace (a real run does not
    /// pause to check `invariant_every` during the run).
    fn invariants(&self, trace: &crate::trace::Trace, at: Duration) -> Vec<Verdict> {
        let view = RunView {
            scenario: &self.simulation.scenario,
            seed: self.seed,
            events: &trace.events,
            store: &self.store,
            at,
        };
        self.simulation
            .all_invariants()
            .into_iter()
            .map(|invariant| {
                let result = (invariant.check)(&view);
                Verdict {
                    name: format!("invariant: {}", invariant.name),
                    wanted: "holds".to_owned(),
                    observed: match &result {
                        Ok(()) => "held".to_owned(),
                        Err(why) => why.clone(),
                    },
                    pass: result.is_ok(),
                    line: None,
                }
            })
            .collect()
    }
}
