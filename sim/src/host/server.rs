//! A simulated server host: waits for its `start_at`, binds, registers with the
//! registry (if any) through a [`Registrar`], and serves the router its group's
//! factory builds — the user's, or the built-in echo — until it is crashed or
//! told to leave. The factory runs again on every restart.
//!
//! Around every router sits the harness layer ([`harness_layer`]): it records
//! `server.executed` when a handler starts and `server.done` when it ends (ok,
//! error, or cancelled because the caller gave up), applies the scenario's
//! service time and injected failures, and makes the call's identity available
//! to onward calls through [`Hop`].

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;
use rand::Rng as _;
use squall::client::{Caller, OutgoingRequest};
use squall::registry::{Backoff, RegistrarConfig, RemoteRegistry, RemoteRegistryConfig};
use squall::server::{Request, Response};
use squall::{ChannelConfig, Instance, Pool, Registrar, SeedSource, Status, Transport};
use tokio::sync::watch;

use super::{sleep_until_sim, CALL_KEY, CLIENT_KEY};
use crate::env::{ServerEnv, Store};
use crate::net::{bind_addr, SimTransport};
use crate::real::clock::to_wall;
use crate::recorder::Recorder;
use crate::scenario::{Behaviour, LatencyRange, RegistryConfig, Scenario, ServerHost};
use crate::simulation::ServerFactory;
use crate::trace::EventKind;

/// The registry's address inside the simulation.
pub fn registry_addr() -> String {
    crate::net::addr_of(crate::scenario::REGISTRY_HOST)
}

/// Channel settings for control-plane connections (registry) inside the
/// simulation: the scenario's `[registry.connection]`.
pub fn control_channel(registry: &RegistryConfig) -> ChannelConfig {
    crate::real::scale::channel(&registry.connection)
}

/// A client of the registry host from `transport`'s host, with the
/// scenario's registry connection settings and `call_timeout` per call.
pub(crate) fn remote_registry(
    transport: &SimTransport,
    registry: &RegistryConfig,
    call_timeout: Duration,
) -> RemoteRegistry<Pool<SimTransport>> {
    let pool = Pool::new(
        transport.clone(),
        &registry_addr(),
        control_channel(registry),
        1,
    );
    RemoteRegistry::with_config(
        pool,
        RemoteRegistryConfig {
            call_timeout: to_wall(call_timeout),
            watch_wait: to_wall(registry.watch_timeout),
        },
    )
}

/// Retry pacing for registry calls inside the simulation: 100ms doubling to a
/// 1s cap, jittered, so a healed registry is found again within about a second.
pub fn control_backoff(rng: squall::rng::Rng) -> Backoff {
    Backoff::new(
        to_wall(Duration::from_millis(100)),
        to_wall(Duration::from_secs(1)),
    )
    .with_jitter(rng)
}

/// A server host's state that outlives restarts and that the harness can change.
#[derive(Debug)]
pub struct ServerState {
    /// The host name.
    pub name: String,
    /// The group it belongs to (which factory builds its router).
    pub group: String,
    /// Service time and error rate, changed by `server_behaviour` faults.
    pub behaviour: Mutex<Behaviour>,
    /// Draws service times and injected failures.
    pub rng: Mutex<squall::rng::Rng>,
    /// The service name to register under.
    pub service: String,
    /// Balancer weight to register with.
    pub weight: u32,
    /// When the server first starts listening (joins).
    pub start_at: Duration,
    /// The registry to register with, if the scenario has one.
    pub registry: Option<RegistryConfig>,
    /// Set by a `leave` fault: deregister, drain, stop. Reset by a restart.
    pub leave: watch::Sender<bool>,
    /// Set by the harness just before a crash: handlers dropped by the crash
    /// record no `server.done` (the order tokio drops them in is not
    /// deterministic, and "the server died" is not a handler outcome).
    pub crashed: AtomicBool,
    /// Starts so far (the next start's incarnation).
    pub starts: std::sync::atomic::AtomicU64,
    /// Calls the harness layer admitted and that have not ended: what
    /// `concurrency_limit` and `latency_per_call` look at.
    pub running: std::sync::atomic::AtomicU32,
    /// Named random streams for this host.
    pub seeds: SeedSource,
}

/// Samples a latency uniformly from `range`.
pub fn sample(range: &LatencyRange, rng: &mut squall::rng::Rng) -> Duration {
    if range.max <= range.min {
        return range.min;
    }
    let span = (range.max - range.min).as_nanos() as u64;
    range.min + Duration::from_nanos(rng.gen_range(0..=span))
}

impl ServerState {
    /// The state of server host `host` at the start of a run.
    pub(crate) fn for_host(
        scenario: &Scenario,
        host: &ServerHost,
        seeds: SeedSource,
    ) -> ServerState {
        let group = scenario.servers.iter().find(|g| g.name == host.group);
        ServerState {
            name: host.name.clone(),
            group: host.group.clone(),
            behaviour: Mutex::new(host.behaviour.clone()),
            rng: Mutex::new(seeds.stream("handler")),
            service: group.map(|g| g.service.clone()).unwrap_or_default(),
            weight: host.weight,
            start_at: host.start_at,
            registry: scenario.registry.clone(),
            leave: watch::channel(false).0,
            crashed: AtomicBool::new(false),
            starts: std::sync::atomic::AtomicU64::new(0),
            running: std::sync::atomic::AtomicU32::new(0),
            seeds,
        }
    }

    /// Admits a call or refuses it (`concurrency_limit`); for an admitted
    /// call, its service time (grown by `latency_per_call` for each call
    /// already running) and its injected failure, if any.
    fn admit(&self) -> Result<(Duration, Option<squall::Code>), Status> {
        let behaviour = self.behaviour.lock().unwrap_or_else(|p| p.into_inner());
        let running = self.running.load(Ordering::Relaxed);
        if behaviour
            .concurrency_limit
            .is_some_and(|limit| running >= limit)
        {
            return Err(Status::resource_exhausted(format!(
                "{}: {running} calls running, at the concurrency limit",
                self.name
            ))
            .not_executed());
        }
        self.running.fetch_add(1, Ordering::Relaxed);
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        let delay = sample(&behaviour.latency, &mut rng) + behaviour.latency_per_call * running;
        let fail = behaviour.error_rate > 0.0 && rng.gen_bool(behaviour.error_rate.min(1.0));
        Ok((delay, fail.then_some(behaviour.error_code)))
    }
}

/// The call a handler is working on: the original client host and its call
/// number, carried in metadata from hop to hop.
#[derive(Clone, Debug)]
struct Origin {
    client: String,
    call: u64,
}

tokio::task_local! {
    /// Set while a handler runs, for [`Hop`] to read.
    static ORIGIN: Origin;
}

/// Records `server.done` when the handler ends — `cancelled` if it is dropped
/// before finishing (its caller gave up, or its deadline passed).
struct HandlerGuard {
    state: Arc<ServerState>,
    recorder: Recorder,
    origin: Origin,
    method: String,
    outcome: Option<&'static str>,
}

impl Drop for HandlerGuard {
    fn drop(&mut self) {
        self.state.running.fetch_sub(1, Ordering::Relaxed);
        if self.outcome.is_none() && self.state.crashed.load(Ordering::Relaxed) {
            return;
        }
        self.recorder.record(
            &self.state.name,
            EventKind::HandlerDone {
                client: std::mem::take(&mut self.origin.client),
                call: self.origin.call,
                method: std::mem::take(&mut self.method),
                outcome: self.outcome.unwrap_or("cancelled").to_owned(),
            },
        );
    }
}

/// The harness layer: see the module docs. Innermost, right around the router.
pub(crate) fn harness_layer(state: Arc<ServerState>, recorder: Recorder) -> HarnessLayer {
    HarnessLayer { state, recorder }
}

/// Adds [`Harnessed`].
#[derive(Clone, Debug)]
pub(crate) struct HarnessLayer {
    state: Arc<ServerState>,
    recorder: Recorder,
}

impl<S> tower::Layer<S> for HarnessLayer {
    type Service = Harnessed<S>;
    fn layer(&self, inner: S) -> Harnessed<S> {
        Harnessed {
            inner,
            state: Arc::clone(&self.state),
            recorder: self.recorder.clone(),
        }
    }
}

/// Traces and shapes every call into the router it wraps.
#[derive(Clone, Debug)]
pub(crate) struct Harnessed<S> {
    inner: S,
    state: Arc<ServerState>,
    recorder: Recorder,
}

impl<S> tower::Service<Request> for Harnessed<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let (delay, fail) = match self.state.admit() {
            Ok(admitted) => admitted,
            // Refused before any handler ran: no `server.executed`.
            Err(status) => return Box::pin(std::future::ready(Ok(Response::error(status)))),
        };
        let origin = Origin {
            client: request.ctx.get(CLIENT_KEY).unwrap_or("-").to_owned(),
            call: request
                .ctx
                .get(CALL_KEY)
                .and_then(|c| c.parse().ok())
                .unwrap_or(u64::MAX),
        };
        let method = request.ctx.method().to_owned();
        self.recorder.record(
            &self.state.name,
            EventKind::Executed {
                client: origin.client.clone(),
                call: origin.call,
                method: method.clone(),
            },
        );
        let guard = HandlerGuard {
            state: Arc::clone(&self.state),
            recorder: self.recorder.clone(),
            origin: origin.clone(),
            method,
            outcome: None,
        };
        let name = self.state.name.clone();
        let inner = self.inner.call(request);
        Box::pin(ORIGIN.scope(origin, async move {
            // Move the whole guard in (not just the field assigned below), so
            // it lives, and records, exactly as long as the handler.
            let mut guard = guard;
            if !delay.is_zero() {
                tokio::time::sleep(crate::real::clock::to_wall(delay)).await;
            }
            if let Some(code) = fail {
                guard.outcome = Some("error");
                return Ok(Response::error(Status::new(
                    code,
                    format!("{name}: injected failure"),
                )));
            }
            let response = inner.await?;
            // `refused`: the handler ran but declared it did nothing ("not
            // executed"); the implicit not-executed check trusts that.
            guard.outcome = Some(match &response.result {
                Ok(_) => "ok",
                Err(status) if !status.may_have_executed() => "refused",
                Err(_) => "error",
            });
            Ok(response)
        }))
    }
}

/// A [`Caller`] for calls a handler makes to other servers: each carries the
/// identity of the call being handled (client host and call number), so the
/// next hop's `server.executed` names the original call. Outside a handler it
/// adds nothing.
#[derive(Clone, Debug)]
pub struct Hop<C> {
    inner: C,
}

impl<C> Hop<C> {
    /// Wraps `inner`.
    pub fn new(inner: C) -> Hop<C> {
        Hop { inner }
    }
}

impl<C: Caller> Caller for Hop<C> {
    type Future = C::Future;

    fn call(&self, mut request: OutgoingRequest) -> C::Future {
        if let Ok(origin) = ORIGIN.try_with(Origin::clone) {
            let has = |key: &str| request.metadata.iter().any(|(k, _)| k == key);
            let (has_client, has_call) = (has(CLIENT_KEY), has(CALL_KEY));
            if !has_client {
                request
                    .metadata
                    .push((CLIENT_KEY.to_owned(), origin.client.clone()));
            }
            if !has_call {
                request
                    .metadata
                    .push((CALL_KEY.to_owned(), origin.call.to_string()));
            }
        }
        self.inner.call(request)
    }
}

/// Registers this server with the registry, if there is one.
fn register(state: &ServerState, transport: &SimTransport) -> Option<Registrar> {
    let config = state.registry.as_ref()?;
    // Renewals are bounded by the heartbeat: a slower one is as good as lost.
    let remote = remote_registry(transport, config, config.heartbeat);
    let instance = Instance::new(state.service.clone(), crate::net::addr_of(&state.name))
        .with_weight(state.weight);
    Some(Registrar::spawn(
        Arc::new(remote),
        instance,
        RegistrarConfig {
            ttl: to_wall(config.ttl),
            keep_alive_interval: Some(to_wall(config.heartbeat)),
            backoff: control_backoff(state.seeds.stream("registrar")),
            ..RegistrarConfig::default()
        },
    ))
}

/// One server host's program: its state, the run's shared pieces, its factory.
#[derive(Clone)]
pub(crate) struct ServerProgram {
    pub(crate) state: Arc<ServerState>,
    pub(crate) recorder: Recorder,
    pub(crate) store: Store,
    pub(crate) scenario: Arc<Scenario>,
    pub(crate) factory: ServerFactory,
}

impl ServerProgram {
    /// The environment of the next start.
    pub(crate) fn env(&self) -> ServerEnv {
        ServerEnv {
            state: Arc::clone(&self.state),
            recorder: self.recorder.clone(),
            store: self.store.clone(),
            scenario: Arc::clone(&self.scenario),
            incarnation: self.state.starts.fetch_add(1, Ordering::Relaxed),
            served: Arc::default(),
        }
    }

    async fn serve(self) -> turmoil::Result {
        let state = Arc::clone(&self.state);
        self.recorder.sockets().spawn_closer(&state.name);
        sleep_until_sim(state.start_at).await;
        let transport = SimTransport::new(&state.name, self.recorder.clone());
        let listener = transport.bind(&bind_addr()).await?;
        let env = self.env();
        let server = self.factory.build(&env);
        let registrar = register(&state, &transport);
        let mut leave = state.leave.subscribe();
        let shutdown = async move {
            let _ = leave.wait_for(|left| *left).await;
            if let Some(registrar) = registrar {
                let _ = registrar.stop().await;
            }
        };
        server.serve(listener, shutdown).await?;
        Ok(())
    }

    /// The host software turmoil runs (again on every restart).
    pub(crate) fn software(self) -> impl Fn() -> Pin<Box<dyn Future<Output = turmoil::Result>>> {
        move || Box::pin(self.clone().serve())
    }
}
