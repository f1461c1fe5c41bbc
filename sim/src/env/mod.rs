//! What the harness hands users' code: [`ServerEnv`] to a server group's router
//! factory, [`ClientEnv`] to a client group's workload, [`RunView`] to an
//! invariant. Each gives the host's name, its seeded random streams, the
//! virtual clock, a [`Tracer`] for the user's own events, and per-run state
//! ([`ServerEnv::durable`], [`ServerEnv::shared`]) — fresh for every run, so
//! runs on parallel threads and repeated runs never see each other's state.

mod trace;

use std::any::{Any, TypeId};
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::Rng as _;
use squall::rng::Rng;
use squall::{Client, Pool, Router, SeedSource, Server};

pub use trace::{
    Tracer, RESERVED_KIND_PREFIXES, USER_FIELDS_MAX, USER_KIND_BYTES_MAX, USER_VALUE_BYTES_MAX,
};

use crate::host::client::SimCaller;
use crate::host::server::{harness_layer, Hop, ServerState};
use crate::net::SimTransport;
use crate::recorder::{now, Recorder};
use crate::scenario::{ClientGroup, Load, Scenario};
use crate::trace::Event;

/// One slot of the [`Store`], by (scope, type).
type Slots = BTreeMap<(String, TypeId), Arc<dyn Any + Send + Sync>>;

/// Per-run values by (scope, type): created on first use, shared by every
/// host of the run, dropped with the run.
#[derive(Clone, Default)]
pub(crate) struct Store {
    /// A BTreeMap: lookups only, never iterated into behaviour.
    slots: Arc<Mutex<Slots>>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    fn lock(&self) -> MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn get<T: Default + Send + Sync + 'static>(&self, scope: &str) -> Arc<T> {
        let slot = Arc::clone(
            self.lock()
                .entry((scope.to_owned(), TypeId::of::<T>()))
                .or_insert_with(|| Arc::new(T::default())),
        );
        match slot.downcast::<T>() {
            Ok(value) => value,
            // The key holds T's TypeId, so the slot always holds a T.
            Err(_) => unreachable!("a store slot holds the type of its key"),
        }
    }
}

/// The scope of values every host of a run shares.
const SHARED: &str = "";

fn durable_scope(host: &str) -> String {
    format!("host:{host}")
}

/// What a server group's router factory receives, once per start of each host
/// (and again after every restart).
#[derive(Clone, Debug)]
pub struct ServerEnv {
    pub(crate) state: Arc<ServerState>,
    pub(crate) recorder: Recorder,
    pub(crate) store: Store,
    pub(crate) scenario: Arc<Scenario>,
    /// 0 on the first start, +1 on each restart.
    pub(crate) incarnation: u64,
    /// The router's methods, set when the factory wraps it with
    /// [`ServerEnv::server`] (how the harness knows what a group serves).
    pub(crate) served: Arc<Mutex<Option<Vec<String>>>>,
}

impl ServerEnv {
    /// The scenario under test.
    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// The host name (`kv-2`).
    pub fn host(&self) -> &str {
        &self.state.name
    }

    /// The server group the host belongs to (`kv`).
    pub fn group(&self) -> &str {
        &self.state.group
    }

    /// 0 on the first start, 1 after the first restart, and so on. Memory kept
    /// in the router is lost on a crash; state the user wants to survive lives in
    /// [`ServerEnv::durable`].
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// The other hosts of this host's group, in scenario order (replication peers).
    pub fn peers(&self) -> Vec<String> {
        self.scenario
            .servers
            .iter()
            .filter(|g| g.name == self.state.group)
            .flat_map(|g| g.hosts.iter().map(|h| h.name.clone()))
            .filter(|h| h != &self.state.name)
            .collect()
    }

    /// This host's "disk": one `T` per host per run, created on first use, that
    /// survives crashes and restarts of the host (the factory receives the same
    /// value again). Whether anything survives a crash is the user's choice.
    pub fn durable<T: Default + Send + Sync + 'static>(&self) -> Arc<T> {
        self.store.get(&durable_scope(&self.state.name))
    }

    /// One `T` per run shared by every host and by invariants: a history of
    /// operations to check, a model of the service.
    pub fn shared<T: Default + Send + Sync + 'static>(&self) -> Arc<T> {
        self.store.get(SHARED)
    }

    /// A random stream named `name`, seeded from the run's seed, the host and
    /// the incarnation: the same on every replay, independent of other streams.
    pub fn rng(&self, name: &str) -> Rng {
        self.state
            .seeds
            .stream(&format!("user/{}/{name}", self.incarnation))
    }

    /// Records the user's own events on this host.
    pub fn tracer(&self) -> Tracer {
        Tracer::new(&self.state.name, self.recorder.clone())
    }

    /// Simulated time since the start of the run.
    pub fn now(&self) -> Duration {
        now()
    }

    /// This host's view of the simulated network, for clients of the user's own.
    pub fn transport(&self) -> SimTransport {
        SimTransport::new(&self.state.name, self.recorder.clone())
    }

    /// The address of server host `host` inside the simulation (`kv-1:7000`).
    pub fn addr_of(&self, host: &str) -> String {
        crate::net::addr_of(host)
    }

    /// A client to server host `host` (one pooled connection, fail fast). Calls
    /// made while handling a call carry that call's identity, so executions
    /// checks and `handlers_end_by_deadline` follow the call across hops, and
    /// they inherit the handler's remaining deadline.
    pub fn client_to(&self, host: &str) -> Client<Hop<Pool<SimTransport>>> {
        let pool = Pool::new(
            self.transport(),
            &self.addr_of(host),
            crate::real::scale::default_channel(),
            1,
        );
        Client::new(Hop::new(pool)).with_timeout(None)
    }

    /// Serves `router` with the harness around it: `server.executed` /
    /// `server.done` for every call, the scenario's service time and injected
    /// failures (`latency`, `error_rate`, `server_behaviour` faults). Add your
    /// own tower layers to the result; they run outside the harness layer, so a
    /// call your auth layer refuses is not counted as executed.
    pub fn server(&self, router: Router) -> Server {
        *self.served.lock().unwrap_or_else(|p| p.into_inner()) = Some(router.method_names());
        let config = squall::server::ServerConfig {
            shutdown_grace: crate::real::clock::to_wall(Duration::from_secs(2)),
            ..squall::server::ServerConfig::default()
        };
        Server::new(router).with_config(config).layer(harness_layer(
            Arc::clone(&self.state),
            self.recorder.clone(),
        ))
    }
}

/// What a client group's workload receives, once per client host.
#[derive(Clone, Debug)]
pub struct ClientEnv {
    pub(crate) host: String,
    pub(crate) group: Arc<ClientGroup>,
    pub(crate) client: Client<SimCaller>,
    pub(crate) seeds: SeedSource,
    pub(crate) recorder: Recorder,
    pub(crate) store: Store,
    pub(crate) scenario: Arc<Scenario>,
}

impl ClientEnv {
    /// The scenario under test.
    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// The host name (`client-1`).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The scenario's settings for this host's group (workload, timeouts, …).
    pub fn group(&self) -> &ClientGroup {
        &self.group
    }

    /// The squall client the scenario configured: the discovery [`squall::ServiceClient`]
    /// (static targets or the registry's service, with the scenario's balancer,
    /// retry, breaker, budget and hedge), its codec and timeout. Every call made
    /// through it is traced (`call.start`, `call.attempt`, `call.end`), so every
    /// expectation kind works on the user's calls.
    pub fn client(&self) -> &Client<SimCaller> {
        &self.client
    }

    /// A random stream named `name`, seeded from the run's seed and the host.
    pub fn rng(&self, name: &str) -> Rng {
        self.seeds.stream(&format!("user/{name}"))
    }

    /// This host's view of the simulated network, for a plain
    /// [`squall::Channel`] or [`Pool`] of the user's own (`addr_of(host)`).
    /// Calls over those are not traced as calls; prefer [`ClientEnv::client`].
    pub fn transport(&self) -> SimTransport {
        SimTransport::new(&self.host, self.recorder.clone())
    }

    /// The address of server host `host` inside the simulation (`kv-1:7000`).
    pub fn addr_of(&self, host: &str) -> String {
        crate::net::addr_of(host)
    }

    /// Records the user's own events on this host.
    pub fn tracer(&self) -> Tracer {
        Tracer::new(&self.host, self.recorder.clone())
    }

    /// Simulated time since the start of the run.
    pub fn now(&self) -> Duration {
        now()
    }

    /// One `T` per run, shared by every host and by invariants.
    pub fn shared<T: Default + Send + Sync + 'static>(&self) -> Arc<T> {
        self.store.get(SHARED)
    }

    /// When the scenario stops this client's workload (`stop_at`).
    pub fn stop_at(&self) -> Duration {
        self.group.workload.stop_at
    }

    /// Runs `op` at the scenario's load from its `start_at` until its `stop_at`,
    /// then returns: open loop (Poisson arrivals at `rate`, each `op` on its own
    /// task) or closed loop (`concurrency` tasks each running `op` back to back).
    /// Arrivals come from the host's seeded stream `workload`.
    pub async fn drive<F, Fut>(&self, op: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let workload = self.group.workload.clone();
        crate::host::sleep_until_sim(workload.start_at).await;
        let full = || self.recorder.is_full();
        match workload.load {
            Load::Open { rate_per_second } => {
                let mut rng = self.seeds.stream("workload/arrivals");
                let mut arrival = now();
                loop {
                    // Exponential inter-arrival times: a Poisson process at the rate.
                    let u: f64 = rng.gen_range(f64::MIN_POSITIVE..1.0);
                    let gap = Duration::from_secs_f64(-u.ln() / rate_per_second);
                    // Sleep to each arrival's scheduled time, not for each gap:
                    // timers round a sleep up to the next tick (1 ms in the
                    // simulation, in real mode too), and gaps slept one by one
                    // would add that rounding to every arrival (`rate = 200`
                    // delivered ~182 calls/s). Arrivals that fall in one tick
                    // go out together at its end; the rate is the rate.
                    arrival += gap;
                    crate::host::sleep_until_sim(arrival).await;
                    if now() >= workload.stop_at || full() {
                        break;
                    }
                    tokio::spawn(op());
                }
            }
            Load::Closed { concurrency } => {
                let op = Arc::new(op);
                let mut workers = tokio::task::JoinSet::new();
                for _ in 0..concurrency {
                    let (op, recorder) = (Arc::clone(&op), self.recorder.clone());
                    workers.spawn(async move {
                        while now() < workload.stop_at && !recorder.is_full() {
                            let started = now();
                            op().await;
                            // An op that ends without virtual time passing (failed
                            // at once) would spin inside one tick and stop the
                            // clock: yield one tick before the next.
                            if now() == started {
                                tokio::time::sleep(Duration::from_millis(1)).await;
                            }
                        }
                    });
                }
                while workers.join_next().await.is_some() {}
            }
        }
    }
}

/// What an invariant sees: the trace so far and the run's state.
#[derive(Debug)]
pub struct RunView<'a> {
    pub(crate) scenario: &'a Scenario,
    pub(crate) seed: u64,
    pub(crate) events: &'a [Event],
    pub(crate) store: &'a Store,
    pub(crate) at: Duration,
}

impl RunView<'_> {
    /// The scenario under test.
    pub fn scenario(&self) -> &Scenario {
        self.scenario
    }

    /// The run's seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Every event recorded so far, in order.
    pub fn events(&self) -> &[Event] {
        self.events
    }

    /// Simulated time of the check (the end of the run for final checks).
    pub fn now(&self) -> Duration {
        self.at
    }

    /// The run's shared `T` (see [`ServerEnv::shared`]).
    pub fn shared<T: Default + Send + Sync + 'static>(&self) -> Arc<T> {
        self.store.get(SHARED)
    }

    /// Server host `host`'s durable `T` (see [`ServerEnv::durable`]).
    pub fn durable<T: Default + Send + Sync + 'static>(&self, host: &str) -> Arc<T> {
        self.store.get(&durable_scope(host))
    }
}
