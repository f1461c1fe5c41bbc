//! A simulated client host: builds the squall client its scenario group asks
//! for (static targets or the registry's service, with the group's balancer and
//! resilience), wraps it in [`SimCaller`] so every call is traced, and runs the
//! group's workload — the user's, or the built-in echo one — with it.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use squall::client::{Caller, OutgoingRequest, Reply};
use squall::discovery::{DiscoveryEvent, DiscoveryObserver};
use squall::registry::ResolverConfig;
use squall::{Client, Endpoint, Resolver, SeedSource, ServiceClient, ServiceClientConfig, Status};

use super::server::{control_backoff, remote_registry};
use super::{CALL_KEY, CLIENT_KEY, HASH_KEY};
use crate::env::{ClientEnv, Store};
use crate::net::{host_of, SimTransport};
use crate::real::clock::to_wall;
use crate::recorder::{now, Recorder};
use crate::scenario::{ClientGroup, RegistryConfig};
use crate::simulation::ClientWorkload;
use crate::trace::EventKind;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// A client host's state that outlives restarts: call numbering and the calls
/// in flight (resolved by the harness if the host crashes).
#[derive(Debug)]
pub struct ClientState {
    /// The host name.
    pub name: String,
    /// The group's configuration.
    pub group: Arc<ClientGroup>,
    /// The next call number.
    next_call: AtomicU64,
    /// Start times of calls started and not yet ended.
    in_flight: Mutex<BTreeMap<u64, Duration>>,
    /// The endpoint of each in-flight call's latest attempt.
    last_endpoint: Mutex<BTreeMap<u64, String>>,
}

impl ClientState {
    /// State for host `name` of `group`.
    pub fn new(name: &str, group: Arc<ClientGroup>) -> ClientState {
        ClientState {
            name: name.to_owned(),
            group,
            next_call: AtomicU64::new(0),
            in_flight: Mutex::new(BTreeMap::new()),
            last_endpoint: Mutex::new(BTreeMap::new()),
        }
    }

    /// Ends every in-flight call with `outcome` (the host crashed: the caller is
    /// gone, so the call's fate is "its caller died"). Returns how many.
    pub fn abandon_in_flight(&self, recorder: &Recorder, at: Duration, outcome: &str) -> usize {
        let calls = std::mem::take(&mut *lock(&self.in_flight));
        let mut endpoints = lock(&self.last_endpoint);
        for (call, started) in &calls {
            recorder.record_at(
                at,
                &self.name,
                EventKind::CallEnd {
                    call: *call,
                    endpoint: endpoints.remove(call),
                    outcome: outcome.to_owned(),
                    latency: at.saturating_sub(*started),
                    may_have_executed: true,
                },
            );
        }
        calls.len()
    }

    /// Ends call `call` unless the harness already did; records its `call.end`.
    fn finish(&self, recorder: &Recorder, call: u64, outcome: String, may_have_executed: bool) {
        let Some(started) = lock(&self.in_flight).remove(&call) else {
            // The harness already ended it (the host crashed mid-call).
            return;
        };
        let endpoint = lock(&self.last_endpoint).remove(&call);
        recorder.record(
            &self.name,
            EventKind::CallEnd {
                call,
                endpoint,
                outcome,
                latency: now().saturating_sub(started),
                may_have_executed,
            },
        );
    }
}

/// The [`Caller`] every simulated client uses: the scenario's [`ServiceClient`]
/// with each call numbered and traced — `call.start` when it is made,
/// `call.attempt` per attempt (from the discovery observer), `call.end` once
/// when it resolves (or `Cancelled` when the caller drops it unfinished). Calls
/// carry the host and call number in metadata (`sim-client`, `call-id`), so
/// servers can attribute handler runs to calls.
#[derive(Clone, Debug)]
pub struct SimCaller {
    inner: ServiceClient<SimTransport>,
    state: Arc<ClientState>,
    recorder: Recorder,
}

impl SimCaller {
    /// The discovery client underneath (endpoints, breaker states).
    pub fn service_client(&self) -> &ServiceClient<SimTransport> {
        &self.inner
    }
}

impl Caller for SimCaller {
    type Future = TracedCall;

    fn call(&self, mut request: OutgoingRequest) -> TracedCall {
        let state = &self.state;
        let call = state.next_call.fetch_add(1, Ordering::Relaxed);
        let key = request
            .metadata
            .iter()
            .find(|(k, _)| k == HASH_KEY)
            .map(|(_, v)| v.clone());
        self.recorder.record(
            &state.name,
            EventKind::CallStart {
                call,
                method: request.method.clone(),
                key,
            },
        );
        lock(&state.in_flight).insert(call, now());
        request
            .metadata
            .push((CLIENT_KEY.to_owned(), state.name.clone()));
        request
            .metadata
            .push((CALL_KEY.to_owned(), call.to_string()));
        TracedCall {
            inner: Box::pin(self.inner.call(request)),
            end: Some(CallEnd {
                state: Arc::clone(state),
                recorder: self.recorder.clone(),
                call,
            }),
        }
    }
}

/// Who to tell when a traced call ends.
struct CallEnd {
    state: Arc<ClientState>,
    recorder: Recorder,
    call: u64,
}

/// A call made through [`SimCaller`]; records its `call.end` when it resolves
/// or is dropped unfinished.
pub struct TracedCall {
    inner: Pin<Box<<ServiceClient<SimTransport> as Caller>::Future>>,
    end: Option<CallEnd>,
}

impl std::fmt::Debug for TracedCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracedCall").finish_non_exhaustive()
    }
}

impl Future for TracedCall {
    type Output = Result<Reply, Status>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let result = std::task::ready!(self.inner.as_mut().poll(cx));
        if let Some(end) = self.end.take() {
            let (outcome, may_have_executed) = match &result {
                Ok(_) => ("Ok".to_owned(), true),
                Err(status) => (
                    status.code().as_str().to_owned(),
                    status.may_have_executed(),
                ),
            };
            end.state
                .finish(&end.recorder, end.call, outcome, may_have_executed);
        }
        Poll::Ready(result)
    }
}

impl Drop for TracedCall {
    fn drop(&mut self) {
        if let Some(end) = self.end.take() {
            // Dropped unfinished: the caller gave up (its own timeout, a
            // select). The request may be on its way, so it may have executed.
            end.state
                .finish(&end.recorder, end.call, "Cancelled".to_owned(), true);
        }
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

/// The scenario's discovery client for `state`'s group.
fn service_client(
    state: &Arc<ClientState>,
    recorder: &Recorder,
    seeds: SeedSource,
    registry: Option<&RegistryConfig>,
) -> ServiceClient<SimTransport> {
    let group = &state.group;
    let transport = SimTransport::new(&state.name, recorder.clone());
    let channel = crate::real::scale::channel(&group.connection);
    let resilience = &group.resilience;
    let config = ServiceClientConfig {
        balancer: group.balancer,
        pool_size: group.pool_size,
        channel,
        breaker: crate::real::scale::breaker(&resilience.breaker),
        retry: crate::real::scale::retry(&resilience.retry),
        fail_mode: resilience.fail_mode,
        budget: crate::real::scale::budget(resilience.budget),
        hedge: crate::real::scale::hedge(resilience.hedge),
        hash_key: HASH_KEY.to_owned(),
        call_id_key: CALL_KEY.to_owned(),
        seed: seeds,
        observer: Some(observer(Arc::clone(state), recorder.clone())),
        ..ServiceClientConfig::default()
    };
    match (&group.service, registry) {
        (Some(service), Some(registry)) => {
            let remote = remote_registry(&transport, registry, registry.call_timeout);
            let resolver = Resolver::spawn(
                Arc::new(remote),
                service.clone(),
                ResolverConfig {
                    watch_timeout: to_wall(registry.watch_timeout),
                    call_timeout: to_wall(registry.call_timeout),
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
                .map(|host| Endpoint::new(crate::net::addr_of(host), 1))
                .collect();
            ServiceClient::new(transport, "static", endpoints, config)
        }
    }
}

/// One client host's program: its state, the run's shared pieces, its workload.
#[derive(Clone)]
pub(crate) struct ClientProgram {
    pub(crate) state: Arc<ClientState>,
    pub(crate) recorder: Recorder,
    pub(crate) store: Store,
    pub(crate) seeds: SeedSource,
    pub(crate) registry: Option<RegistryConfig>,
    pub(crate) scenario: Arc<crate::scenario::Scenario>,
    pub(crate) workload: ClientWorkload,
}

impl ClientProgram {
    async fn run(self) -> turmoil::Result {
        let state = &self.state;
        self.recorder.sockets().spawn_closer(&state.name);
        let inner = service_client(state, &self.recorder, self.seeds, self.registry.as_ref());
        let caller = SimCaller {
            inner,
            state: Arc::clone(state),
            recorder: self.recorder.clone(),
        };
        let client = Client::new(caller)
            .with_codec(state.group.call.codec)
            .with_timeout(Some(to_wall(state.group.call.timeout)));
        let env = ClientEnv {
            host: state.name.clone(),
            group: Arc::clone(&state.group),
            client,
            seeds: self.seeds,
            recorder: self.recorder.clone(),
            store: self.store.clone(),
            scenario: Arc::clone(&self.scenario),
        };
        self.workload.run(env).await;
        // Stay up: in-flight calls finish, and the host keeps its connections.
        std::future::pending::<()>().await;
        Ok(())
    }

    /// The host software turmoil runs.
    pub(crate) fn software(self) -> impl Fn() -> Pin<Box<dyn Future<Output = turmoil::Result>>> {
        move || Box::pin(self.clone().run())
    }
}
