//! A simulated client: drives the scenario's workload through the unchanged
//! squall client and records every call's start, attempts and end.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::Rng as _;
use serde_bytes::ByteBuf;
use squall::client::Caller;
use squall::discovery::{DiscoveryEvent, DiscoveryObserver};
use squall::registry::{RemoteRegistry, RemoteRegistryConfig, ResolverConfig};
use squall::{
    CallOptions, ChannelConfig, Client, Endpoint, Pool, Resolver, SeedSource, ServiceClient,
    ServiceClientConfig, Status,
};

use super::server::{control_backoff, control_channel, registry_addr};
use super::{sleep_until_sim, CALL_KEY, CLIENT_KEY};
use crate::net::{host_of, SimTransport, SERVER_PORT};
use crate::recorder::{now, Recorder};
use crate::scenario::{ClientGroup, Load, MethodWeight, RegistryConfig};
use crate::trace::EventKind;

/// A call that started and has not ended.
#[derive(Clone, Debug)]
struct InFlight {
    /// When it started (simulated).
    started: Duration,
}

/// A client host's state that outlives restarts: call numbering, calls in
/// flight (resolved by the harness if the host crashes), the workload RNG.
#[derive(Debug)]
pub struct ClientState {
    /// The host name.
    pub name: String,
    /// The group's configuration.
    pub group: ClientGroup,
    /// The next call number.
    next_call: AtomicU64,
    /// Calls started and not yet ended.
    in_flight: Mutex<BTreeMap<u64, InFlight>>,
    /// The endpoint of each in-flight call's latest attempt.
    last_endpoint: Mutex<BTreeMap<u64, String>>,
    /// Arrivals and method choices.
    rng: Mutex<squall::rng::Rng>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl ClientState {
    /// State for host `name` of `group`.
    pub fn new(name: &str, group: ClientGroup, rng: squall::rng::Rng) -> ClientState {
        ClientState {
            name: name.to_owned(),
            group,
            next_call: AtomicU64::new(0),
            in_flight: Mutex::new(BTreeMap::new()),
            last_endpoint: Mutex::new(BTreeMap::new()),
            rng: Mutex::new(rng),
        }
    }

    /// Ends every in-flight call with `outcome` (the host crashed: the caller is
    /// gone, so the call's fate is "its caller died"). Returns how many.
    pub fn abandon_in_flight(&self, recorder: &Recorder, at: Duration, outcome: &str) -> usize {
        let calls = std::mem::take(&mut *lock(&self.in_flight));
        let mut endpoints = lock(&self.last_endpoint);
        for (call, in_flight) in &calls {
            recorder.record_at(
                at,
                &self.name,
                EventKind::CallEnd {
                    call: *call,
                    endpoint: endpoints.remove(call),
                    outcome: outcome.to_owned(),
                    latency: at.saturating_sub(in_flight.started),
                    may_have_executed: true,
                },
            );
        }
        calls.len()
    }

    fn pick_method(&self) -> MethodWeight {
        let mix = &self.group.workload.mix;
        let total: u64 = mix.iter().map(|m| u64::from(m.weight)).sum();
        let mut ticket = lock(&self.rng).gen_range(0..total.max(1));
        for entry in mix {
            if ticket < u64::from(entry.weight) {
                return entry.clone();
            }
            ticket -= u64::from(entry.weight);
        }
        mix.last().cloned().unwrap_or(MethodWeight {
            method: "Echo.Echo".to_owned(),
            weight: 1,
            idempotent: false,
        })
    }

    fn pick_key(&self) -> Option<String> {
        let keys = self.group.hash_keys?;
        Some(format!("k{}", lock(&self.rng).gen_range(0..keys.max(1))))
    }

    fn next_gap(&self, rate_per_second: f64) -> Duration {
        // Exponential inter-arrival times: a Poisson process at the given rate.
        let u: f64 = lock(&self.rng).gen_range(f64::MIN_POSITIVE..1.0);
        Duration::from_secs_f64(-u.ln() / rate_per_second)
    }
}

/// Maps the discovery client's events into the trace.
fn observer(state: Arc<ClientState>, recorder: Recorder) -> DiscoveryObserver {
    Arc::new(move |event: &DiscoveryEvent| {
        let kind = match event {
            DiscoveryEvent::EndpointsChanged { endpoints } => EventKind::Endpoints {
                endpoints: endpoints.iter().map(|e| host_of(e).to_owned()).collect(),
            },
            DiscoveryEvent::Attempt {
                call,
                attempt,
                endpoint,
                ..
            } => {
                let endpoint = host_of(endpoint).to_owned();
                lock(&state.last_endpoint).insert(*call, endpoint.clone());
                EventKind::Attempt {
                    call: *call,
                    attempt: *attempt,
                    endpoint,
                }
            }
            DiscoveryEvent::RetryDecision {
                call,
                attempt,
                decision,
            } => EventKind::Retry {
                call: *call,
                attempt: *attempt,
                decision: decision.clone(),
            },
            DiscoveryEvent::BreakerTransition {
                endpoint, from, to, ..
            } => EventKind::Breaker {
                endpoint: host_of(endpoint).to_owned(),
                from: from.as_str().to_owned(),
                to: to.as_str().to_owned(),
            },
            DiscoveryEvent::RegistryStale { .. } => EventKind::Registry {
                action: "stale".to_owned(),
                instance: "-".to_owned(),
            },
            DiscoveryEvent::RegistryRecovered => EventKind::Registry {
                action: "recovered".to_owned(),
                instance: "-".to_owned(),
            },
            DiscoveryEvent::AttemptFinished { .. } | DiscoveryEvent::CallFinished { .. } => return,
        };
        recorder.record(&state.name, kind);
    })
}

/// Metadata key carrying a call's hash key (consistent hashing).
pub const HASH_KEY: &str = "hash-key";

/// The outcome recorded when a reply is not the echo of the call's own payload.
pub const MISDELIVERED: &str = "MisdeliveredReply";

/// `len` bytes (at least the identity) that name `host`'s call `call`.
fn call_payload(host: &str, call: u64, len: usize) -> ByteBuf {
    let mut bytes = format!("{host}/{call}/").into_bytes();
    if bytes.len() < len {
        bytes.resize(len, b'.');
    }
    ByteBuf::from(bytes)
}

/// One call, start to end, recorded.
async fn call_once<C: Caller>(
    client: Arc<Client<C>>,
    state: Arc<ClientState>,
    recorder: Recorder,
    payload: Arc<ByteBuf>,
) {
    let call = state.next_call.fetch_add(1, Ordering::Relaxed);
    let MethodWeight {
        method, idempotent, ..
    } = state.pick_method();
    let key = state.pick_key();
    let started = now();
    recorder.record(
        &state.name,
        EventKind::CallStart {
            call,
            method: method.clone(),
            key: key.clone(),
        },
    );
    lock(&state.in_flight).insert(call, InFlight { started });
    let mut options = CallOptions::new()
        .metadata(CLIENT_KEY, state.name.clone())
        .metadata(CALL_KEY, call.to_string());
    if let Some(key) = key {
        options = options.metadata(HASH_KEY, key);
    }
    if idempotent {
        options = options.idempotent();
    }
    // The payload names its call, so a reply delivered to the wrong caller is
    // caught: servers echo it back.
    let body = call_payload(&state.name, call, payload.len());
    let result: Result<ByteBuf, Status> = client.call_with(&method, &body, options).await;
    if lock(&state.in_flight).remove(&call).is_none() {
        // The harness already ended it (the host crashed mid-call).
        return;
    }
    let endpoint = lock(&state.last_endpoint).remove(&call);
    let (outcome, may_have_executed) = match &result {
        Ok(reply) if reply != &body => (MISDELIVERED.to_owned(), true),
        Ok(_) => ("Ok".to_owned(), true),
        Err(status) => (
            status.code().as_str().to_owned(),
            status.may_have_executed(),
        ),
    };
    recorder.record(
        &state.name,
        EventKind::CallEnd {
            call,
            endpoint,
            outcome,
            latency: now().saturating_sub(started),
            may_have_executed,
        },
    );
}

async fn drive<C: Caller>(client: Client<C>, state: Arc<ClientState>, recorder: Recorder) {
    let workload = state.group.workload.clone();
    let client = Arc::new(client);
    let payload = Arc::new(ByteBuf::from(vec![0x5a; workload.payload_bytes as usize]));
    sleep_until_sim(workload.start_at).await;
    match workload.load {
        Load::Open { rate_per_second } => loop {
            tokio::time::sleep(state.next_gap(rate_per_second)).await;
            if now() >= workload.stop_at || recorder.is_full() {
                break;
            }
            tokio::spawn(call_once(
                Arc::clone(&client),
                Arc::clone(&state),
                recorder.clone(),
                Arc::clone(&payload),
            ));
        },
        Load::Closed { concurrency } => {
            let mut workers = tokio::task::JoinSet::new();
            for _ in 0..concurrency {
                let (client, state, recorder, payload) = (
                    Arc::clone(&client),
                    Arc::clone(&state),
                    recorder.clone(),
                    Arc::clone(&payload),
                );
                workers.spawn(async move {
                    while now() < workload.stop_at && !recorder.is_full() {
                        let started = now();
                        call_once(
                            Arc::clone(&client),
                            Arc::clone(&state),
                            recorder.clone(),
                            Arc::clone(&payload),
                        )
                        .await;
                        // A call that ended without virtual time passing (failed
                        // at once) would make this loop spin inside one tick and
                        // stop the clock: yield one tick before the next call.
                        if now() == started {
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                    }
                });
            }
            while workers.join_next().await.is_some() {}
        }
    }
    // Stay up: in-flight calls finish, and the host keeps its connections.
    std::future::pending::<()>().await;
}

/// The host software: build the caller, drive the workload.
pub fn software(
    state: Arc<ClientState>,
    recorder: Recorder,
    seeds: SeedSource,
    registry: Option<RegistryConfig>,
) -> impl Fn() -> Pin<Box<dyn Future<Output = turmoil::Result>>> {
    move || {
        let state = Arc::clone(&state);
        let recorder = recorder.clone();
        let seeds = seeds;
        let registry = registry.clone();
        Box::pin(async move {
            let group = &state.group;
            recorder.sockets().spawn_closer(&state.name);
            let transport = SimTransport::new(&state.name, recorder.clone());
            let channel = ChannelConfig {
                connect_timeout: group.connection.connect_timeout,
                keepalive_interval: group.connection.keepalive_interval,
                keepalive_timeout: group.connection.keepalive_timeout,
                ..ChannelConfig::default()
            };
            let resilience = &group.resilience;
            let config = ServiceClientConfig {
                balancer: group.balancer,
                pool_size: group.pool_size,
                channel,
                breaker: resilience.breaker.clone(),
                retry: resilience.retry.clone(),
                fail_mode: resilience.fail_mode,
                budget: resilience.budget,
                hedge: resilience.hedge,
                hash_key: HASH_KEY.to_owned(),
                call_id_key: CALL_KEY.to_owned(),
                seed: seeds,
                observer: Some(observer(Arc::clone(&state), recorder.clone())),
                ..ServiceClientConfig::default()
            };
            let caller = match (&group.service, &registry) {
                (Some(service), Some(registry)) => {
                    let pool = Pool::new(transport.clone(), &registry_addr(), control_channel(), 1);
                    let remote = RemoteRegistry::with_config(
                        pool,
                        RemoteRegistryConfig {
                            call_timeout: Duration::from_secs(1),
                            watch_wait: registry.watch_timeout,
                        },
                    );
                    let resolver = Resolver::spawn(
                        Arc::new(remote),
                        service.clone(),
                        ResolverConfig {
                            watch_timeout: registry.watch_timeout,
                            call_timeout: Duration::from_secs(1),
                            backoff: control_backoff(seeds.stream("resolver")),
                            ..ResolverConfig::default()
                        },
                    );
                    ServiceClient::with_resolver(transport, resolver, config)
                }
                _ => {
                    let endpoints = group
                        .targets
                        .iter()
                        .map(|host| Endpoint::new(format!("{host}:{SERVER_PORT}"), 1))
                        .collect();
                    ServiceClient::new(transport, "static", endpoints, config)
                }
            };
            let client = Client::new(caller)
                .with_codec(group.call.codec)
                .with_timeout(Some(group.call.timeout));
            drive(client, state, recorder).await;
            Ok(())
        })
    }
}
