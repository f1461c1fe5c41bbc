//! The public API: a [`Simulation`] is a scenario plus the code under test —
//! per server group a factory for the user's router, per client group an async
//! workload, and invariants over the trace and the run's state. Groups given
//! nothing run the built-in echo server and workload ([`crate::host::echo`]),
//! which plug in through this same API.
//!
//! ```ignore
//! let sim = Simulation::from_file("scenarios/kv-partition.toml")?
//!     .server("kv", |env: &ServerEnv| kv::router(env))      // again on every restart
//!     .client("client", |env: ClientEnv| kv::workload(env))  // once per client host
//!     .invariant("no stale reads", kv::no_stale_reads);      // after the run
//! let outcome = sim.run(7)?;                                  // one seed
//! sim.test();                                                 // in a #[test]: see `testing`
//! ```
//!
//! Like turmoil's `Builder → Sim`, building is separate from running: the
//! builder only records what to run; [`Simulation::run`] validates the plug-ins
//! against the scenario, then builds a fresh world for the seed, steps it and
//! evaluates it (`crate::world`). A `Simulation` is `Send + Sync`, so
//! `explore` runs seeds on parallel threads; every run gets fresh state.

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use squall::{Router, Server};

use crate::env::{ClientEnv, RunView, ServerEnv, Store};
use crate::host::echo;
use crate::host::server::{ServerProgram, ServerState};
use crate::real::RealOptions;
use crate::recorder::Recorder;
use crate::scenario::error::did_you_mean_or_list;
use crate::scenario::{Scenario, ScenarioError};
use crate::world::{self, RunError, RunOutcome};

/// What a server factory may return: a [`Router`] (the harness serves it), or a
/// [`Server`] the factory built with [`ServerEnv::server`] and wrapped in its
/// own tower layers.
pub trait IntoServer {
    /// The server to run on the host.
    fn into_server(self, env: &ServerEnv) -> Server;
}

impl IntoServer for Router {
    fn into_server(self, env: &ServerEnv) -> Server {
        env.server(self)
    }
}

impl IntoServer for Server {
    fn into_server(self, _env: &ServerEnv) -> Server {
        self
    }
}

type BuildServer = dyn Fn(&ServerEnv) -> Server + Send + Sync;
type RunWorkload = dyn Fn(ClientEnv) -> Pin<Box<dyn Future<Output = ()>>> + Send + Sync;
type Check = dyn Fn(&RunView<'_>) -> Result<(), String> + Send + Sync;

/// A server group's router factory and the name reports give it.
#[derive(Clone)]
pub(crate) struct ServerFactory {
    /// `built-in echo` or the user's factory (its type name: where it is defined).
    pub(crate) name: String,
    build: Arc<BuildServer>,
}

impl ServerFactory {
    pub(crate) fn build(&self, env: &ServerEnv) -> Server {
        (self.build)(env)
    }

    fn echo() -> ServerFactory {
        ServerFactory {
            name: "built-in echo".to_owned(),
            build: Arc::new(echo::router),
        }
    }

    fn is_echo(&self) -> bool {
        self.name == "built-in echo"
    }
}

/// A client group's workload and the name reports give it.
#[derive(Clone)]
pub(crate) struct ClientWorkload {
    pub(crate) name: String,
    run: Arc<RunWorkload>,
}

impl ClientWorkload {
    pub(crate) fn run(&self, env: ClientEnv) -> Pin<Box<dyn Future<Output = ()>>> {
        (self.run)(env)
    }

    fn echo() -> ClientWorkload {
        ClientWorkload {
            name: "built-in echo".to_owned(),
            run: Arc::new(|env| Box::pin(echo::workload(env))),
        }
    }
}

/// A user check, run after the run (and every `every` during it, when set).
#[derive(Clone)]
pub(crate) struct Invariant {
    pub(crate) name: String,
    pub(crate) every: Option<Duration>,
    pub(crate) check: Arc<Check>,
}

/// A scenario and the code under test. See the module docs.
#[derive(Clone)]
pub struct Simulation {
    pub(crate) scenario: Arc<Scenario>,
    /// Factories by server group; groups not listed run the echo server.
    servers: BTreeMap<String, ServerFactory>,
    /// Workloads by client group; groups not listed run the echo workload.
    clients: BTreeMap<String, ClientWorkload>,
    pub(crate) invariants: Vec<Invariant>,
    /// Plug-ins for groups the scenario does not have, reported by `validate`.
    unknown_groups: Vec<(String, &'static str)>,
}

impl std::fmt::Debug for Simulation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulation")
            .field("scenario", &self.scenario.name)
            .field("under_test", &self.under_test())
            .finish_non_exhaustive()
    }
}

fn readable_type_name<T>() -> String {
    std::any::type_name::<T>()
        .replace("::{{closure}}", "")
        .to_owned()
}

impl Simulation {
    /// The scenario with the built-in echo server and workload everywhere.
    pub fn new(scenario: Scenario) -> Simulation {
        Simulation {
            scenario: Arc::new(scenario),
            servers: BTreeMap::new(),
            clients: BTreeMap::new(),
            invariants: Vec::new(),
            unknown_groups: Vec::new(),
        }
    }

    /// [`Simulation::new`] of a scenario file (validated; errors name file:line).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Simulation, ScenarioError> {
        Ok(Simulation::new(Scenario::from_file(path)?))
    }

    /// The scenario.
    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// Runs `factory`'s router on every host of server group `group`. The
    /// factory is called at each start of each host — again after a restart,
    /// with [`ServerEnv::incarnation`] one higher — and once before the first
    /// run, in a throwaway environment, to learn which methods it serves (so
    /// it must have no effects outside the [`ServerEnv`] it is given).
    pub fn server<F, S>(mut self, group: &str, factory: F) -> Simulation
    where
        F: Fn(&ServerEnv) -> S + Send + Sync + 'static,
        S: IntoServer,
    {
        if !self.scenario.servers.iter().any(|g| g.name == group) {
            self.unknown_groups.push((group.to_owned(), "server"));
        }
        let name = format!("user code ({})", readable_type_name::<F>());
        let build = move |env: &ServerEnv| factory(env).into_server(env);
        self.servers.insert(
            group.to_owned(),
            ServerFactory {
                name,
                build: Arc::new(build),
            },
        );
        self
    }

    /// Runs `workload` once on every host of client group `group`, from the
    /// start of the run, with the scenario's client for that group. It usually
    /// calls [`ClientEnv::drive`] to issue operations at the scenario's load.
    pub fn client<F, Fut>(mut self, group: &str, workload: F) -> Simulation
    where
        F: Fn(ClientEnv) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        if !self.scenario.clients.iter().any(|g| g.name == group) {
            self.unknown_groups.push((group.to_owned(), "client"));
        }
        let name = format!("user code ({})", readable_type_name::<F>());
        let run =
            move |env: ClientEnv| -> Pin<Box<dyn Future<Output = ()>>> { Box::pin(workload(env)) };
        self.clients.insert(
            group.to_owned(),
            ClientWorkload {
                name,
                run: Arc::new(run),
            },
        );
        self
    }

    /// Checks `check` at the end of every run; an `Err` fails the run with its
    /// message as the verdict's observation.
    pub fn invariant<F>(mut self, name: &str, check: F) -> Simulation
    where
        F: Fn(&RunView<'_>) -> Result<(), String> + Send + Sync + 'static,
    {
        self.invariants.push(Invariant {
            name: name.to_owned(),
            every: None,
            check: Arc::new(check),
        });
        self
    }

    /// Checks `check` every `every` of simulated time during the run and at
    /// the end; the first violation is reported with its time.
    pub fn invariant_every<F>(mut self, name: &str, every: Duration, check: F) -> Simulation
    where
        F: Fn(&RunView<'_>) -> Result<(), String> + Send + Sync + 'static,
    {
        self.invariants.push(Invariant {
            name: name.to_owned(),
            every: Some(every.max(Duration::from_millis(1))),
            check: Arc::new(check),
        });
        self
    }

    /// The factory of server group `group`.
    pub(crate) fn server_factory(&self, group: &str) -> ServerFactory {
        self.servers
            .get(group)
            .cloned()
            .unwrap_or_else(ServerFactory::echo)
    }

    /// The workload of client group `group`.
    pub(crate) fn client_workload(&self, group: &str) -> ClientWorkload {
        self.clients
            .get(group)
            .cloned()
            .unwrap_or_else(ClientWorkload::echo)
    }

    /// Which code runs where, for reports: one line per group.
    pub fn under_test(&self) -> Vec<String> {
        let servers = self.scenario.servers.iter().map(|g| {
            format!(
                "server group {}: {}",
                g.name,
                self.server_factory(&g.name).name
            )
        });
        let clients = self.scenario.clients.iter().map(|g| {
            format!(
                "client group {}: {}",
                g.name,
                self.client_workload(&g.name).name
            )
        });
        servers.chain(clients).collect()
    }

    /// Every invariant checked, the built-in ones included.
    pub(crate) fn all_invariants(&self) -> Vec<Invariant> {
        let mut all = self.invariants.clone();
        let echo_clients = self
            .scenario
            .clients
            .iter()
            .any(|g| !self.clients.contains_key(&g.name));
        if echo_clients {
            all.push(Invariant {
                name: "echo replies are the caller's own payload".to_owned(),
                every: None,
                check: Arc::new(echo::no_misdelivered_replies),
            });
        }
        all
    }

    /// Checks the plug-ins against the scenario before anything runs: every
    /// plugged group exists, and every method a client group calls (its
    /// `method`/`mix`) and every `forward_method` is served by the routers of
    /// the groups it reaches. Errors name the scenario file and line.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let scenario = &self.scenario;
        let error = |line: Option<usize>, message: String, hint: Option<String>| ScenarioError {
            path: scenario.source.clone(),
            line,
            message,
            hint,
            source_line: None,
        };
        if let Some((group, role)) = self.unknown_groups.first() {
            let names: Vec<&str> = if *role == "server" {
                scenario.servers.iter().map(|g| g.name.as_str()).collect()
            } else {
                scenario.clients.iter().map(|g| g.name.as_str()).collect()
            };
            return Err(error(
                None,
                format!("the simulation plugs code into {role} group \"{group}\", which the scenario does not have"),
                Some(did_you_mean_or_list(group, &names)),
            ));
        }
        let user_group_hint = || {
            Some(
                "it says code = \"user\": run it from the test that plugs the code in (e.g. `cargo test -p kv-example`), or remove the key to run the built-in echo".to_owned(),
            )
        };
        for group in scenario.servers.iter().filter(|g| g.user_code) {
            if !self.servers.contains_key(&group.name) {
                return Err(error(
                    Some(group.line),
                    format!("server group \"{}\" runs the user's router, but none was plugged in (Simulation::server)", group.name),
                    user_group_hint(),
                ));
            }
        }
        for group in scenario.clients.iter().filter(|g| g.user_code) {
            if !self.clients.contains_key(&group.name) {
                return Err(error(
                    Some(group.line),
                    format!("client group \"{}\" runs the user's workload, but none was plugged in (Simulation::client)", group.name),
                    user_group_hint(),
                ));
            }
        }
        let mut served: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for group in &scenario.servers {
            let factory = self.server_factory(&group.name);
            if factory.is_echo() {
                continue;
            }
            let methods = probe(scenario, group.name.as_str(), &factory)
                .map_err(|why| error(Some(group.line), why, None))?;
            served.insert(group.name.as_str(), methods);
        }
        let check = |line: usize, who: String, method: &str, group: &str| match served.get(group) {
            Some(methods) if !methods.iter().any(|m| m == method) => {
                let listed: Vec<&str> = methods.iter().map(String::as_str).collect();
                Err(error(
                    Some(line),
                    format!(
                        "{who} calls \"{method}\", which server group \"{group}\" ({}) does not serve",
                        self.server_factory(group).name
                    ),
                    Some(format!(
                        "it serves {}{}",
                        listed.join(", "),
                        crate::scenario::error::suggest(method, listed.iter().copied())
                            .map(|m| format!("; did you mean \"{m}\"?"))
                            .unwrap_or_default()
                    )),
                ))
            }
            _ => Ok(()),
        };
        for client in &scenario.clients {
            for group in reached_groups(scenario, client) {
                for entry in &client.workload.mix {
                    check(
                        client.method_line,
                        format!("client group \"{}\"", client.name),
                        &entry.method,
                        group,
                    )?;
                }
            }
        }
        for group in &scenario.servers {
            if let Some(forward) = &group.forward {
                for target in target_groups(scenario, &forward.targets) {
                    check(
                        group.line,
                        format!("server group \"{}\" (forward_method)", group.name),
                        &forward.method,
                        target,
                    )?;
                }
            }
        }
        Ok(())
    }

    /// Runs the scenario once at `seed` over real TCP on loopback instead of
    /// turmoil: the same hosts (the plugged-in routers and workloads too), a
    /// fault proxy on every link applying the timeline in wall-clock time, the
    /// same trace format and expectations. Takes the scenario's duration ×
    /// `options.time_scale` of wall time and is not deterministic. See
    /// [`crate::real`] and `docs/FIDELITY.md`.
    pub fn run_real(&self, seed: u64, options: RealOptions) -> Result<RunOutcome, RunError> {
        self.validate().map_err(|e| RunError {
            scenario: self.scenario.name.clone(),
            seed,
            at: None,
            message: format!("{e}"),
        })?;
        crate::real::run(self, seed, &options)
    }

    /// Runs the scenario once at `seed`: validate, build, step, evaluate.
    pub fn run(&self, seed: u64) -> Result<RunOutcome, RunError> {
        self.validate().map_err(|e| RunError {
            scenario: self.scenario.name.clone(),
            seed,
            at: None,
            message: format!("{e}"),
        })?;
        world::run(self, seed)
    }
}

/// The server groups `hosts` belong to, deduplicated, in scenario order.
fn target_groups<'s>(scenario: &'s Scenario, hosts: &[String]) -> Vec<&'s str> {
    scenario
        .servers
        .iter()
        .filter(|g| g.hosts.iter().any(|h| hosts.contains(&h.name)))
        .map(|g| g.name.as_str())
        .collect()
}

/// The server groups a client group's calls can reach.
fn reached_groups<'s>(
    scenario: &'s Scenario,
    client: &crate::scenario::ClientGroup,
) -> Vec<&'s str> {
    match &client.service {
        Some(service) => scenario
            .servers
            .iter()
            .filter(|g| &g.service == service)
            .map(|g| g.name.as_str())
            .collect(),
        None => target_groups(scenario, &client.targets),
    }
}

/// Builds `group`'s router once in a throwaway environment and returns the
/// methods it serves. The factory runs inside a current-thread tokio runtime
/// (it may spawn tasks; they never run and are dropped with the runtime), with
/// a fresh store and recorder, so nothing leaks into real runs.
fn probe(
    scenario: &Arc<Scenario>,
    group: &str,
    factory: &ServerFactory,
) -> Result<Vec<String>, String> {
    let Some(host) = scenario
        .servers
        .iter()
        .find(|g| g.name == group)
        .and_then(|g| g.hosts.first())
    else {
        return Ok(Vec::new());
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| format!("cannot start a runtime to probe server group \"{group}\": {e}"))?;
    let _entered = runtime.enter();
    let recorder = Recorder::new();
    let state = Arc::new(ServerState::for_host(
        scenario,
        host,
        squall::SeedSource::new(0).child(&host.name),
    ));
    let program = ServerProgram {
        state,
        recorder,
        store: Store::default(),
        scenario: Arc::clone(scenario),
        factory: factory.clone(),
    };
    let env = program.env();
    let built = std::panic::catch_unwind(AssertUnwindSafe(|| factory.build(&env)));
    if built.is_err() {
        return Err(format!(
            "the router factory of server group \"{group}\" ({}) panicked when probed for its methods",
            factory.name
        ));
    }
    let methods = env.served.lock().unwrap_or_else(|p| p.into_inner()).clone();
    methods.ok_or_else(|| {
        format!(
            "the factory of server group \"{group}\" ({}) returned a Server not built with env.server(router): the harness cannot see its calls",
            factory.name
        )
    })
}
