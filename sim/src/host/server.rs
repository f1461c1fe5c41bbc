//! A simulated server: the unchanged squall [`Server`] serving every method the
//! scenario's clients call. Each call records `server.executed` when its handler
//! starts and `server.done` when it ends (ok, error, or cancelled because the
//! caller gave up), sleeps its scripted service time, fails at its scripted
//! error rate and, for a forwarding tier, calls the next tier first. With a
//! registry, the server registers through a [`Registrar`] and, on a `leave`
//! fault, deregisters and drains.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng as _;
use serde_bytes::ByteBuf;
use squall::registry::{Backoff, RegistrarConfig, RemoteRegistry, RemoteRegistryConfig};
use squall::server::ServerConfig;
use squall::{
    BalancerKind, CallOptions, ChannelConfig, Client, Context, Endpoint, FailMode, Instance, Pool,
    Registrar, RetryPolicy, Router, SeedSource, Server, ServiceClient, ServiceClientConfig, Status,
    Transport,
};
use tokio::sync::watch;

use super::{sleep_until_sim, CALL_KEY, CLIENT_KEY};
use crate::net::{bind_addr, SimTransport, SERVER_PORT};
use crate::recorder::Recorder;
use crate::scenario::{Behaviour, Forward, LatencyRange, RegistryConfig};
use crate::trace::EventKind;

/// The registry's address inside the simulation.
pub fn registry_addr() -> String {
    format!("{}:{SERVER_PORT}", crate::scenario::REGISTRY_HOST)
}

/// Channel settings for control-plane connections (registry) inside the simulation.
pub fn control_channel() -> ChannelConfig {
    ChannelConfig {
        connect_timeout: Duration::from_millis(500),
        keepalive_interval: Duration::from_secs(1),
        keepalive_timeout: Duration::from_secs(1),
        ..ChannelConfig::default()
    }
}

/// Retry pacing for registry calls inside the simulation: 100ms doubling to a
/// 1s cap, jittered, so a healed registry is found again within about a second.
pub fn control_backoff(rng: squall::rng::Rng) -> Backoff {
    Backoff::new(Duration::from_millis(100), Duration::from_secs(1)).with_jitter(rng)
}

/// A server host's state that outlives restarts and that the harness can change.
#[derive(Debug)]
pub struct ServerState {
    /// The host name.
    pub name: String,
    /// Service time and error rate, changed by `server_behaviour` faults.
    pub behaviour: Mutex<Behaviour>,
    /// Draws service times and injected failures.
    pub rng: Mutex<squall::rng::Rng>,
    /// Methods to serve (every method any client or forwarding tier calls).
    pub methods: BTreeSet<String>,
    /// The service name to register under.
    pub service: String,
    /// Balancer weight to register with.
    pub weight: u32,
    /// When the server first starts listening (joins).
    pub start_at: Duration,
    /// The next tier, for forwarding servers.
    pub forward: Option<Forward>,
    /// The registry to register with, if the scenario has one.
    pub registry: Option<RegistryConfig>,
    /// Set by a `leave` fault: deregister, drain, stop. Reset by a restart.
    pub leave: watch::Sender<bool>,
    /// Set by the harness just before a crash: handlers dropped by the crash
    /// record no `server.done` (the order tokio drops them in is not
    /// deterministic, and "the server died" is not a handler outcome).
    pub crashed: AtomicBool,
    /// Named random streams for this host's clients (forwarding).
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
    fn draw(&self) -> (Duration, bool) {
        let behaviour = self.behaviour.lock().unwrap_or_else(|p| p.into_inner());
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        let delay = sample(&behaviour.latency, &mut rng);
        let fail = behaviour.error_rate > 0.0 && rng.gen_bool(behaviour.error_rate.min(1.0));
        (delay, fail)
    }
}

/// Records `server.done` when the handler ends — `cancelled` if it is dropped
/// before finishing (its caller gave up, or its deadline passed).
struct HandlerGuard {
    state: Arc<ServerState>,
    recorder: Recorder,
    host: String,
    client: String,
    call: u64,
    method: String,
    outcome: Option<&'static str>,
}

impl Drop for HandlerGuard {
    fn drop(&mut self) {
        if self.outcome.is_none() && self.state.crashed.load(Ordering::Relaxed) {
            return;
        }
        self.recorder.record(
            &self.host,
            EventKind::HandlerDone {
                client: std::mem::take(&mut self.client),
                call: self.call,
                method: std::mem::take(&mut self.method),
                outcome: self.outcome.unwrap_or("cancelled").to_owned(),
            },
        );
    }
}

type Forwarder = Arc<Client<ServiceClient<SimTransport>>>;

async fn handle(
    state: Arc<ServerState>,
    recorder: Recorder,
    forwarder: Option<Forwarder>,
    ctx: Context,
    body: ByteBuf,
) -> Result<ByteBuf, Status> {
    let client = ctx.get(CLIENT_KEY).unwrap_or("-").to_owned();
    let call = ctx
        .get(CALL_KEY)
        .and_then(|c| c.parse().ok())
        .unwrap_or(u64::MAX);
    recorder.record(
        &state.name,
        EventKind::Executed {
            client: client.clone(),
            call,
            method: ctx.method().to_owned(),
        },
    );
    let mut guard = HandlerGuard {
        state: Arc::clone(&state),
        recorder,
        host: state.name.clone(),
        client,
        call,
        method: ctx.method().to_owned(),
        outcome: None,
    };
    let (delay, fail) = state.draw();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if fail {
        guard.outcome = Some("error");
        return Err(Status::internal(format!(
            "{}: injected failure",
            state.name
        )));
    }
    if let (Some(forwarder), Some(forward)) = (forwarder, &state.forward) {
        // The next tier sees the original caller's identity, and the call
        // inherits this handler's remaining deadline (no timeout of its own).
        let options = CallOptions::new()
            .metadata(CLIENT_KEY, guard.client.clone())
            .metadata(CALL_KEY, call.to_string());
        let result: Result<ByteBuf, Status> =
            forwarder.call_with(&forward.method, &body, options).await;
        if let Err(status) = result {
            guard.outcome = Some("error");
            return Err(status);
        }
    }
    guard.outcome = Some("ok");
    Ok(body)
}

fn router(state: &Arc<ServerState>, recorder: &Recorder, forwarder: Option<Forwarder>) -> Router {
    let mut router = Router::new();
    for method in &state.methods {
        let state = Arc::clone(state);
        let recorder = recorder.clone();
        let forwarder = forwarder.clone();
        router = router.route(method, move |ctx: Context, body: ByteBuf| {
            handle(
                Arc::clone(&state),
                recorder.clone(),
                forwarder.clone(),
                ctx,
                body,
            )
        });
    }
    router
}

/// A static, fail-fast client to the next tier.
fn forwarder(state: &ServerState, transport: &SimTransport) -> Option<Forwarder> {
    let forward = state.forward.as_ref()?;
    let endpoints = forward
        .targets
        .iter()
        .map(|host| Endpoint::new(format!("{host}:{SERVER_PORT}"), 1))
        .collect();
    let config = ServiceClientConfig {
        balancer: BalancerKind::RoundRobin,
        breaker: None,
        retry: RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        },
        fail_mode: FailMode::FailFast,
        budget: None,
        call_id_key: CALL_KEY.to_owned(),
        seed: state.seeds.child("forward"),
        ..ServiceClientConfig::default()
    };
    let client = ServiceClient::new(transport.clone(), "forward", endpoints, config);
    Some(Arc::new(Client::new(client).with_timeout(forward.timeout)))
}

/// Registers this server with the registry, if there is one.
fn register(state: &ServerState, transport: &SimTransport) -> Option<Registrar> {
    let config = state.registry.as_ref()?;
    let pool = Pool::new(transport.clone(), &registry_addr(), control_channel(), 1);
    let remote = RemoteRegistry::with_config(
        pool,
        RemoteRegistryConfig {
            call_timeout: config.heartbeat,
            watch_wait: config.watch_timeout,
        },
    );
    let instance = Instance::new(
        state.service.clone(),
        format!("{}:{SERVER_PORT}", state.name),
    )
    .with_weight(state.weight);
    Some(Registrar::spawn(
        Arc::new(remote),
        instance,
        RegistrarConfig {
            ttl: config.ttl,
            keep_alive_interval: Some(config.heartbeat),
            backoff: control_backoff(state.seeds.stream("registrar")),
            ..RegistrarConfig::default()
        },
    ))
}

async fn serve(state: Arc<ServerState>, recorder: Recorder) -> turmoil::Result {
    recorder.sockets().spawn_closer(&state.name);
    sleep_until_sim(state.start_at).await;
    let transport = SimTransport::new(&state.name, recorder.clone());
    let listener = transport.bind(&bind_addr()).await?;
    let registrar = register(&state, &transport);
    let forwarder = forwarder(&state, &transport);
    let mut leave = state.leave.subscribe();
    let shutdown = async move {
        let _ = leave.wait_for(|left| *left).await;
        if let Some(registrar) = registrar {
            let _ = registrar.stop().await;
        }
    };
    let config = ServerConfig {
        shutdown_grace: Duration::from_secs(2),
        ..ServerConfig::default()
    };
    Server::new(router(&state, &recorder, forwarder))
        .with_config(config)
        .serve(listener, shutdown)
        .await?;
    Ok(())
}

/// The host software: wait for `start_at`, bind, register, serve until crashed
/// or told to leave.
pub fn software(
    state: Arc<ServerState>,
    recorder: Recorder,
) -> impl Fn() -> Pin<Box<dyn Future<Output = turmoil::Result>>> {
    move || Box::pin(serve(Arc::clone(&state), recorder.clone()))
}
