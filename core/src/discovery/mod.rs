//! The discovery-aware client (GeeRPC's and rpcx's `XClient`): calls a service
//! by name, across its instances, with balancing, breaking, retries and hedging.
//!
//! ```text
//!  Resolver ──(watch)──▶ endpoint set ──▶ Balancer.pick(available = breaker
//!  (or a static list)                     admits ∧ not yet tried by this call)
//!                                              │
//!      ┌───────────────── retry (RetryPolicy, budget, backoff) ◀──┐
//!      ▼                                                          │ failure
//!  CircuitBreaker.try_acquire ──▶ Pool (lazy, per endpoint) ──▶ attempt ──▶ reply
//!                                      ▲                          │ slow
//!                                      └── hedge to another ◀─────┘
//!                                          endpoint (HedgePolicy)
//! ```
//!
//! [`ServiceClient`] implements [`Caller`](crate::client::Caller), so
//! `squall::Client::new(service_client)` makes typed calls by service name.
//! Everything it does is reported to an observer as [`DiscoveryEvent`]s, exactly
//! and in order, which is what the simulation's trace is made of.
//!
//! # Layout
//! - [`ServiceClient`] (this file): construction, the endpoint set, `call`, `broadcast`.
//! - [`config`]: [`ServiceClientConfig`] and its defaults.
//! - [`event`]: [`DiscoveryEvent`] and [`DiscoveryObserver`].
//! - `state`: the shared state and the synchronous steps of the call path.
//! - `call`: one call's orchestration and the [`ServiceCall`] future.
//!
//! `docs/DISCOVERY.md` walks through the call path and the defaults.

mod call;
pub mod config;
pub mod event;
mod state;

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;

use futures_util::future::try_join_all;
use tokio::task::JoinHandle;
use tokio::time::timeout_at;

pub use call::ServiceCall;
pub use config::{ServiceClientConfig, POOL_SIZE_LIMIT};
pub use event::{DiscoveryEvent, DiscoveryObserver};

use state::{Inner, Running};

use crate::balance::Endpoint;
use crate::client::{Caller, OutgoingRequest, Reply};
use crate::registry::{Resolver, ResolverState, Snapshot};
use crate::transport::Transport;
use crate::{BreakerState, Status};

/// A client for one service, spread over its instances.
///
/// Cheap to clone: clones share endpoints, pools, breakers, budgets and the
/// balancer. With a [`Resolver`], the endpoint set follows the registry (and
/// keeps the last known list while the registry is unreachable); the resolver
/// lives as long as the last clone.
pub struct ServiceClient<T: Transport> {
    /// The shared state; call tasks hold it too.
    inner: Arc<Inner<T>>,
    /// Owns the resolver and the task following it; dropped with the last clone.
    follower: Arc<Follower>,
}

impl<T: Transport> Clone for ServiceClient<T> {
    fn clone(&self) -> ServiceClient<T> {
        ServiceClient {
            inner: Arc::clone(&self.inner),
            follower: Arc::clone(&self.follower),
        }
    }
}

impl<T: Transport> fmt::Debug for ServiceClient<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceClient")
            .field("service", &self.inner.service)
            .field("endpoints", &self.inner.endpoints())
            .field("resolver", &self.follower.resolver)
            .finish_non_exhaustive()
    }
}

/// Keeps the resolver alive and stops the task following it when dropped.
#[derive(Debug, Default)]
struct Follower {
    /// The resolver, if the client follows one.
    resolver: Option<Resolver>,
    /// Applies the resolver's lists to the client.
    task: Option<JoinHandle<()>>,
}

impl Drop for Follower {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

impl<T: Transport> ServiceClient<T> {
    /// A client for `service` over a fixed endpoint list (change it with
    /// [`set_endpoints`](Self::set_endpoints)).
    ///
    /// # Panics
    /// If `config` fails [`ServiceClientConfig::validate`] (a programmer error).
    pub fn new(
        transport: T,
        service: impl Into<String>,
        endpoints: Vec<Endpoint>,
        config: ServiceClientConfig,
    ) -> ServiceClient<T> {
        let client = ServiceClient::bare(transport, service.into(), config);
        client.set_endpoints(endpoints);
        client
    }

    /// A client whose endpoints follow `resolver`: instances are added and
    /// removed as the registry reports them (weights included), and the last
    /// known list is kept while the registry is unreachable. Must be called
    /// inside a tokio runtime (it spawns the following task).
    ///
    /// # Panics
    /// If `config` fails [`ServiceClientConfig::validate`] (a programmer error).
    pub fn with_resolver(
        transport: T,
        resolver: Resolver,
        config: ServiceClientConfig,
    ) -> ServiceClient<T> {
        let mut client = ServiceClient::bare(transport, resolver.service().to_owned(), config);
        let mut snapshots = resolver.subscribe();
        let mut states = resolver.subscribe_state();
        client
            .inner
            .set_endpoints(endpoints_of(&snapshots.borrow_and_update()));
        let initial = *states.borrow_and_update();
        let mut stale = matches!(initial, ResolverState::Stale { .. });
        client
            .inner
            .set_resolved(!matches!(initial, ResolverState::Initial));
        let inner = Arc::clone(&client.inner);
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    biased;
                    changed = snapshots.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        let endpoints = endpoints_of(&snapshots.borrow_and_update());
                        // Never trade a known set for an empty one: a registry that
                        // lost its state (restart, or leases that lapsed while it was
                        // partitioned) answers "no instances" until servers
                        // re-register, and adopting that would fail every call.
                        // Dead endpoints in the kept set fail fast and are routed
                        // around (gRPC xDS's `ignore_resource_deletion`, same reason).
                        if endpoints.is_empty() && !inner.endpoints().is_empty() {
                            continue;
                        }
                        inner.set_endpoints(endpoints);
                    }
                    changed = states.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        let state = *states.borrow_and_update();
                        if !matches!(state, ResolverState::Initial) {
                            inner.set_resolved(true);
                        }
                        match state {
                            ResolverState::Stale { since } if !stale => {
                                stale = true;
                                inner.emit(vec![DiscoveryEvent::RegistryStale { since }]);
                            }
                            ResolverState::Fresh if stale => {
                                stale = false;
                                inner.emit(vec![DiscoveryEvent::RegistryRecovered]);
                            }
                            _ => {}
                        }
                    }
                }
            }
        });
        client.follower = Arc::new(Follower {
            resolver: Some(resolver),
            task: Some(task),
        });
        client
    }

    fn bare(transport: T, service: String, config: ServiceClientConfig) -> ServiceClient<T> {
        if let Err(problem) = config.validate() {
            panic!("invalid service client config for {service:?}: {problem}");
        }
        ServiceClient {
            inner: Arc::new(Inner::new(service, transport, config)),
            follower: Arc::new(Follower::default()),
        }
    }

    /// The service called.
    pub fn service(&self) -> &str {
        &self.inner.service
    }

    /// The endpoint set now, sorted by address.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        self.inner.endpoints()
    }

    /// Replaces the endpoint set. New endpoints start with a closed breaker and
    /// connect on first use; departed ones are forgotten (their connections close
    /// once their last attempt ends). With a resolver, its next list wins.
    pub fn set_endpoints(&self, endpoints: Vec<Endpoint>) {
        self.inner.set_endpoints(endpoints);
    }

    /// The breaker state of `addr` (`None`: unknown endpoint, or no breakers).
    /// An open breaker whose period has ended reads `Open` until the next call
    /// considers it.
    pub fn breaker_state(&self, addr: &str) -> Option<BreakerState> {
        self.inner.breaker_state(addr)
    }

    /// The resolver followed, if any.
    pub fn resolver(&self) -> Option<&Resolver> {
        self.follower.resolver.as_ref()
    }

    /// Sends `request` to every endpoint whose breaker admits a call, once (no
    /// retries, no hedges), and returns each endpoint's reply sorted by address —
    /// or the first failure, dropping (cancelling) the rest. `Unavailable` (not
    /// executed) if no endpoint is available. Bounded by the request's timeout.
    pub async fn broadcast(
        &self,
        request: OutgoingRequest,
    ) -> Result<Vec<(String, Reply)>, Status> {
        let info = self.inner.call_info(request);
        let mut attempts: Vec<Running<T>> = Vec::new();
        let mut chosen = std::collections::BTreeSet::new();
        // Each endpoint once: avoid every endpoint already started, strictly.
        loop {
            let want = state::Want::Any {
                avoid: &chosen,
                strict: true,
            };
            let attempt = u32::try_from(attempts.len() + 1).unwrap_or(u32::MAX);
            match self.inner.begin(&info, attempt, false, want) {
                Ok(running) => {
                    chosen.insert(running.guard.endpoint.clone());
                    attempts.push(running);
                }
                Err(status) if attempts.is_empty() => return Err(status),
                Err(_no_more) => break,
            }
        }
        attempts.sort_by(|a, b| a.guard.endpoint.cmp(&b.guard.endpoint));
        let all = try_join_all(attempts.into_iter().map(|mut running| async move {
            let endpoint = running.guard.endpoint.clone();
            let result = (&mut running.call).await;
            running.guard.finish(&result);
            result.map(|reply| (endpoint, reply))
        }));
        match info.deadline {
            None => all.await,
            Some(deadline) => timeout_at(deadline, all).await.unwrap_or_else(|_| {
                Err(Status::deadline_exceeded(format!(
                    "broadcast {} to service {}: the deadline passed",
                    info.request.method, self.inner.service
                )))
            }),
        }
    }
}

/// The endpoints a snapshot lists.
fn endpoints_of(snapshot: &Snapshot) -> Vec<Endpoint> {
    snapshot
        .instances
        .iter()
        .map(|instance| Endpoint::new(instance.addr.clone(), instance.weight))
        .collect()
}

impl<T: Transport> Caller for ServiceClient<T> {
    type Future = ServiceCall;

    /// Starts the call on a task of its own (see [`ServiceCall`]). Must be called
    /// inside a tokio runtime.
    fn call(&self, request: OutgoingRequest) -> ServiceCall {
        let info = self.inner.call_info(request);
        ServiceCall::spawn(Arc::clone(&self.inner), info)
    }
}
