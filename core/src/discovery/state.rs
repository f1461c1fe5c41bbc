//! The client's shared state and the synchronous steps of the call path, each
//! done under one short lock: choose an endpoint and start an attempt, finish an
//! attempt, decide about a retry. The events each step causes are collected
//! under the lock and emitted after it is released, so an observer may call back
//! into the client.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::{DiscoveryEvent, ServiceClientConfig};
use crate::balance::{self, Balancer, Endpoint, Pick};
use crate::client::{Caller, OutgoingRequest, Pool, PoolCall, PoolHealth, Reply};
use crate::resilience::{
    BreakerOutcome, CircuitBreaker, FailMode, LatencyWindow, Permit, RetryBudget, RetryDecision,
};
use crate::rng::Rng;
use crate::transport::Transport;
use crate::Status;

/// Latencies kept for a percentile hedge delay.
const LATENCY_WINDOW_CAPACITY: usize = 1024;

/// What one call carries through its attempts.
#[derive(Debug)]
pub(super) struct CallInfo {
    /// The call's id in events.
    pub(super) id: u64,
    /// The consistent-hash key, from the request's metadata.
    pub(super) key: Option<String>,
    /// When the whole call (every attempt and backoff) must be over.
    pub(super) deadline: Option<Instant>,
    /// The request, re-sent as is by every attempt (with the remaining budget).
    pub(super) request: OutgoingRequest,
    /// The trace scope the call was made in (its task does not inherit it).
    pub(super) scope: crate::observe::Scope,
}

/// Which endpoint an attempt wants.
#[derive(Clone, Copy, Debug)]
pub(super) enum Want<'a> {
    /// The balancer's choice, avoiding `avoid`; if `strict` is false and only
    /// avoided endpoints are available, one of them.
    Any {
        /// Endpoints already tried (or running) for this call.
        avoid: &'a BTreeSet<String>,
        /// Whether an avoided endpoint is unacceptable.
        strict: bool,
    },
    /// This endpoint if it is still known and its breaker admits calls, else the
    /// balancer's choice (failtry).
    Same(&'a str),
}

/// The verdict after a failed attempt.
#[derive(Debug)]
pub(super) enum Next {
    /// Retry after this delay.
    Retry(Duration),
    /// Return the failure.
    Stop,
}

/// One endpoint's connection pool and breaker.
struct Member<T: Transport> {
    /// Created by the first attempt to the endpoint; dropped with the member.
    pool: Option<Pool<T>>,
    /// The endpoint's breaker, if breaking is configured.
    breaker: Option<CircuitBreaker>,
    /// Which incarnation of this address the member is: an endpoint that leaves
    /// and rejoins gets a fresh member (and breaker), and an attempt begun on the
    /// old one must not report its permit to the new breaker.
    incarnation: u64,
}

/// Everything the lock guards.
struct State<T: Transport> {
    /// The endpoint set, normalised: the slice the balancer's indices refer to.
    endpoints: Vec<Endpoint>,
    /// Per-endpoint pool and breaker, by address.
    members: BTreeMap<String, Member<T>>,
    /// Chooses endpoints.
    balancer: Box<dyn Balancer>,
    /// Bounds retries to a fraction of calls.
    budget: Option<RetryBudget>,
    /// Bounds hedges to a fraction of calls.
    hedge_budget: Option<RetryBudget>,
    /// Latencies of successful attempts, for a percentile hedge delay.
    latencies: LatencyWindow,
    /// Backoff jitter.
    jitter: Rng,
}

/// The state shared by every clone of a client and every call task.
pub(super) struct Inner<T: Transport> {
    /// The service name, for error messages.
    pub(super) service: String,
    /// How to connect.
    transport: T,
    /// Settings, validated.
    pub(super) config: ServiceClientConfig,
    /// Mutable state.
    state: Mutex<State<T>>,
    /// The next call id when the request carries none.
    next_call: AtomicU64,
    /// The next member incarnation.
    incarnations: AtomicU64,
    /// Whether calls may go on to pick an endpoint, or must wait first (see
    /// [`Readiness`]).
    pub(super) readiness: tokio::sync::watch::Sender<Readiness>,
}

/// What a call made now would find, for deciding whether it waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Readiness {
    /// Whether the endpoint set is known: true at once for static endpoints;
    /// with a resolver, once it first answers (or gives up). Calls made before
    /// that wait for it, bounded by their deadline, instead of failing with "no
    /// endpoint" — gRPC queues picks until its resolver's first result too.
    pub(super) resolved: bool,
    /// Whether the endpoint set has at least one instance. With
    /// `wait_for_ready`, calls wait for this too (bounded by their deadline).
    pub(super) instances: bool,
}

impl Readiness {
    /// Whether a call may pick now: the set is known and, when the client waits
    /// for ready, not empty.
    pub(super) fn admits(self, wait_for_ready: bool) -> bool {
        self.resolved && (self.instances || !wait_for_ready)
    }
}

/// An attempt in flight: its bookkeeping and its reply. Dropping it unfinished
/// reports it as `Cancelled`.
pub(super) struct Running<T: Transport> {
    /// The attempt's identity and breaker permit.
    pub(super) guard: AttemptGuard<T>,
    /// The reply on its way.
    pub(super) call: PoolCall,
    /// Keeps the endpoint's connections open while the attempt runs, even if the
    /// endpoint leaves the set meanwhile.
    _pool: Pool<T>,
}

/// Reports an attempt's end exactly once: by [`AttemptGuard::finish`], or as
/// `Cancelled` on drop (the call was dropped, or the attempt abandoned).
pub(super) struct AttemptGuard<T: Transport> {
    /// Where to report.
    inner: Arc<Inner<T>>,
    /// The call's id.
    call: u64,
    /// The attempt's number.
    pub(super) attempt: u32,
    /// Where the attempt went.
    pub(super) endpoint: String,
    /// When it was sent.
    started: Instant,
    /// The breaker's permit; `None` once reported (or without a breaker).
    permit: Option<Permit>,
    /// The incarnation of the member the permit came from.
    incarnation: u64,
    /// Whether the outcome was reported.
    finished: bool,
}

impl<T: Transport> AttemptGuard<T> {
    /// Reports the attempt's outcome.
    pub(super) fn finish(mut self, outcome: &Result<Reply, Status>) {
        self.report(outcome.as_ref().map(|_| ()).map_err(Clone::clone));
    }

    /// Reports the outcome once.
    fn report(&mut self, outcome: Result<(), Status>) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let permit = self.permit.take();
        let inner = Arc::clone(&self.inner);
        inner.finish_attempt(self, permit, outcome);
    }
}

impl<T: Transport> Drop for AttemptGuard<T> {
    fn drop(&mut self) {
        self.report(Err(Status::cancelled(
            "attempt abandoned: the call ended (dropped, deadline, or another reply won) without it",
        )));
    }
}

impl<T: Transport> Inner<T> {
    /// A client's state; the config must be valid.
    pub(super) fn new(service: String, transport: T, config: ServiceClientConfig) -> Inner<T> {
        let now = Instant::now();
        let seed = config.seed;
        let balancer =
            balance::build_with(config.balancer, &config.balance, seed.stream("balancer"));
        let budget = config.budget.map(|budget| RetryBudget::new(budget, now));
        let hedge_budget = config.hedge.map(|hedge| hedge.budget(now));
        Inner {
            service,
            transport,
            state: Mutex::new(State {
                endpoints: Vec::new(),
                members: BTreeMap::new(),
                balancer,
                budget,
                hedge_budget,
                latencies: LatencyWindow::new(LATENCY_WINDOW_CAPACITY),
                jitter: seed.stream("retry"),
            }),
            config,
            next_call: AtomicU64::new(1),
            incarnations: AtomicU64::new(0),
            readiness: tokio::sync::watch::channel(Readiness {
                resolved: true,
                instances: false,
            })
            .0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Tells the observer, in order.
    pub(super) fn emit(&self, events: Vec<DiscoveryEvent>) {
        for event in &events {
            crate::observe::discovery_event(&self.service, event);
        }
        if let Some(observer) = &self.config.observer {
            for event in &events {
                observer(event);
            }
        }
    }

    /// Prepares a call: its id (from the metadata or the counter), hash key and
    /// overall deadline (the request's timeout, shortened by an inherited one).
    pub(super) fn call_info(&self, request: OutgoingRequest) -> CallInfo {
        let meta = |key: &str| {
            request
                .metadata
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        let id = meta(&self.config.call_id_key)
            .and_then(|value| value.parse::<u64>().ok())
            .unwrap_or_else(|| self.next_call.fetch_add(1, Ordering::Relaxed));
        let key = meta(&self.config.hash_key);
        let now = Instant::now();
        let deadline = crate::context::call_deadline(request.timeout, now);
        CallInfo {
            id,
            key,
            deadline,
            request,
            scope: crate::observe::Scope::current(),
        }
    }

    /// The endpoint set now.
    pub(super) fn endpoints(&self) -> Vec<Endpoint> {
        self.lock().endpoints.clone()
    }

    /// The breaker state of `addr`, if it is known and has a breaker.
    pub(super) fn breaker_state(&self, addr: &str) -> Option<crate::BreakerState> {
        let state = self.lock();
        let breaker = state.members.get(addr)?.breaker.as_ref()?;
        Some(breaker.state())
    }

    /// Replaces the endpoint set: new members get a fresh breaker, departed
    /// members are dropped (their pools close once their last attempt ends).
    pub(super) fn set_endpoints(&self, mut endpoints: Vec<Endpoint>) {
        Endpoint::normalize(&mut endpoints);
        let mut events = Vec::new();
        {
            let mut state = self.lock();
            if state.endpoints == endpoints {
                return;
            }
            let addrs_changed = !state
                .endpoints
                .iter()
                .map(|e| &e.addr)
                .eq(endpoints.iter().map(|e| &e.addr));
            state.balancer.update(&endpoints);
            let keep: BTreeSet<&str> = endpoints.iter().map(|e| e.addr.as_str()).collect();
            state.members.retain(|addr, _| keep.contains(addr.as_str()));
            for endpoint in &endpoints {
                if !state.members.contains_key(&endpoint.addr) {
                    let member = self.new_member(&endpoint.addr);
                    state.members.insert(endpoint.addr.clone(), member);
                }
            }
            state.endpoints = endpoints;
            let instances = !state.endpoints.is_empty();
            self.readiness.send_if_modified(|readiness| {
                let changed = readiness.instances != instances;
                readiness.instances = instances;
                changed
            });
            if addrs_changed {
                events.push(DiscoveryEvent::EndpointsChanged {
                    endpoints: state.endpoints.iter().map(|e| e.addr.clone()).collect(),
                });
            }
        }
        self.emit(events);
    }

    fn new_member(&self, addr: &str) -> Member<T> {
        let breaker = self.config.breaker.clone().map(|config| {
            CircuitBreaker::new(config, self.config.seed.stream(&format!("breaker/{addr}")))
        });
        Member {
            pool: None,
            breaker,
            incarnation: self.incarnations.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Records whether the resolver has answered (or given up).
    pub(super) fn set_resolved(&self, resolved: bool) {
        self.readiness.send_if_modified(|readiness| {
            let changed = readiness.resolved != resolved;
            readiness.resolved = resolved;
            changed
        });
    }

    /// Records a new call in the budgets.
    pub(super) fn deposit(&self) {
        let now = Instant::now();
        let mut state = self.lock();
        if let Some(budget) = &mut state.budget {
            budget.deposit(now);
        }
        if let Some(budget) = &mut state.hedge_budget {
            budget.deposit(now);
        }
    }

    /// How long after sending to hedge, if hedging is configured and trusted yet.
    pub(super) fn hedge_delay(&self) -> Option<Duration> {
        let policy = self.config.hedge?;
        policy.hedge_after(&self.lock().latencies)
    }

    /// Chooses an endpoint as `want` says and sends attempt `attempt` of `info`
    /// there. A hedge also needs a hedge-budget token. Fails with `Unavailable`
    /// (not executed) when no endpoint is available.
    pub(super) fn begin(
        self: &Arc<Self>,
        info: &CallInfo,
        attempt: u32,
        hedge: bool,
        want: Want<'_>,
    ) -> Result<Running<T>, Status> {
        let now = Instant::now();
        let mut events = Vec::new();
        let started = self.begin_locked(info, attempt, hedge, want, now, &mut events);
        self.emit(events);
        started
    }

    fn begin_locked(
        self: &Arc<Self>,
        info: &CallInfo,
        attempt: u32,
        hedge: bool,
        want: Want<'_>,
        now: Instant,
        events: &mut Vec<DiscoveryEvent>,
    ) -> Result<Running<T>, Status> {
        let mut state = self.lock();
        let state = &mut *state;
        let addr = self
            .choose(state, info, want, now)
            .ok_or_else(|| self.no_endpoint(state, now))?;
        if hedge {
            let granted = state
                .hedge_budget
                .as_mut()
                .is_some_and(|budget| budget.try_withdraw(now));
            if !granted {
                return Err(Status::resource_exhausted("hedge budget exhausted").not_executed());
            }
        }
        let member = state
            .members
            .get_mut(&addr)
            .expect("a chosen endpoint is a member");
        let permit = match &mut member.breaker {
            Some(breaker) => {
                let permit = breaker.try_acquire(now);
                drain_transitions(&addr, breaker, events);
                // `choose` only offers endpoints whose breaker is available now,
                // and nothing ran in between: a refusal here is a bug.
                Some(permit.expect("an available breaker admits a call"))
            }
            None => None,
        };
        let incarnation = member.incarnation;
        let pool = member
            .pool
            .get_or_insert_with(|| {
                Pool::new(
                    self.transport.clone(),
                    &addr,
                    self.config.channel.clone(),
                    self.config.pool_size,
                )
            })
            .clone();
        state.balancer.on_start(&addr, now);
        events.push(DiscoveryEvent::Attempt {
            call: info.id,
            attempt,
            endpoint: addr.clone(),
            hedge,
        });
        let mut request = info.request.clone();
        // The server gets the attempt's deadline: the call's, or the
        // per-attempt bound when that comes first.
        let attempt_deadline = self.config.retry.attempt_timeout.map(|t| now + t);
        let deadline = match (info.deadline, attempt_deadline) {
            (Some(call), Some(attempt)) => Some(call.min(attempt)),
            (call, attempt) => call.or(attempt),
        };
        if let Some(deadline) = deadline {
            request.timeout = Some(deadline.saturating_duration_since(now));
        }
        let call = info
            .scope
            .with_attempt(attempt)
            .enter(|| pool.call(request));
        Ok(Running {
            guard: AttemptGuard {
                inner: Arc::clone(self),
                call: info.id,
                attempt,
                endpoint: addr,
                started: now,
                permit,
                incarnation,
                finished: false,
            },
            call,
            _pool: pool,
        })
    }

    /// The address `want` gets, or `None` if no endpoint is available.
    fn choose(
        &self,
        state: &mut State<T>,
        info: &CallInfo,
        want: Want<'_>,
        now: Instant,
    ) -> Option<String> {
        let (avoid, strict) = match want {
            Want::Same(addr) => {
                let admits = state.members.get(addr).is_some_and(|member| {
                    member
                        .breaker
                        .as_ref()
                        .is_none_or(|breaker| breaker.is_available(now))
                });
                if admits {
                    return Some(addr.to_owned());
                }
                (None, false)
            }
            Want::Any { avoid, strict } => (Some(avoid), strict),
        };
        let picked = pick(state, info, now, avoid);
        let picked = match picked {
            None if avoid.is_some() && !strict => pick(state, info, now, None),
            picked => picked,
        };
        picked.map(|index| state.endpoints[index].addr.clone())
    }

    /// `Unavailable`, not executed: nothing could be tried.
    fn no_endpoint(&self, state: &State<T>, now: Instant) -> Status {
        if state.endpoints.is_empty() {
            return Status::unavailable(format!(
                "no instance of service {} is known: none is listed yet (with \
                 wait_for_ready, a call waits for one until its deadline)",
                self.service
            ))
            .not_executed();
        }
        let open = state
            .members
            .values()
            .filter(|member| {
                member
                    .breaker
                    .as_ref()
                    .is_some_and(|breaker| !breaker.is_available(now))
            })
            .count();
        Status::unavailable(format!(
            "no endpoint available for service {}: {} known, {open} with open breakers",
            self.service,
            state.endpoints.len()
        ))
        .not_executed()
    }

    /// Records an attempt's outcome: balancer load, breaker health, latency.
    fn finish_attempt(
        &self,
        guard: &AttemptGuard<T>,
        permit: Option<Permit>,
        outcome: Result<(), Status>,
    ) {
        let now = Instant::now();
        let rtt = now.saturating_duration_since(guard.started);
        let addr = guard.endpoint.as_str();
        let mut events = Vec::new();
        {
            let mut state = self.lock();
            state.balancer.on_finish(addr, rtt, now);
            if outcome.is_ok() {
                state.latencies.record(rtt);
            }
            let breaker = state
                .members
                .get_mut(addr)
                .filter(|member| member.incarnation == guard.incarnation)
                .and_then(|member| member.breaker.as_mut());
            if let (Some(breaker), Some(permit)) = (breaker, permit) {
                let health = match &outcome {
                    Ok(()) => BreakerOutcome::Success,
                    Err(status) => BreakerOutcome::of_status(status),
                };
                breaker.record(permit, now, rtt, health);
                drain_transitions(addr, breaker, &mut events);
            }
            // A permit of a departed endpoint (or of an earlier incarnation of a
            // rejoined one) is simply dropped with its breaker's state.
        }
        events.push(DiscoveryEvent::AttemptFinished {
            call: guard.call,
            attempt: guard.attempt,
            endpoint: guard.endpoint.clone(),
            outcome,
            rtt,
        });
        self.emit(events);
    }

    /// Decides about `status`, the failure of the call's latest attempt
    /// (`attempt`), and reports the decision.
    pub(super) fn decide(&self, info: &CallInfo, attempt: u32, status: &Status) -> Next {
        let (next, decision) = self.decide_quietly(info, attempt, status);
        self.emit(vec![DiscoveryEvent::RetryDecision {
            call: info.id,
            attempt,
            decision,
        }]);
        next
    }

    fn decide_quietly(&self, info: &CallInfo, attempt: u32, status: &Status) -> (Next, String) {
        let now = Instant::now();
        let stop = |reason: &str| (Next::Stop, format!("stop:{reason}"));
        if info.deadline.is_some_and(|deadline| deadline <= now) {
            return stop("deadline");
        }
        if self.config.fail_mode == FailMode::FailFast {
            return stop("fail_fast");
        }
        let policy = &self.config.retry;
        if let RetryDecision::Stop(reason) = policy.decide(status, attempt, info.request.idempotent)
        {
            return stop(reason.as_str());
        }
        let mut state = self.lock();
        let delay = policy.delay(attempt, &mut state.jitter);
        if info
            .deadline
            .is_some_and(|deadline| now + delay >= deadline)
        {
            return stop("deadline");
        }
        if let Some(budget) = &mut state.budget {
            if !budget.try_withdraw(now) {
                return (Next::Stop, "budget_exhausted".to_owned());
            }
        }
        (Next::Retry(delay), "retry".to_owned())
    }
}

/// The balancer's pick among endpoints whose breaker admits a call and that are
/// not in `avoid`.
/// Picks an endpoint whose breaker admits calls, preferring those whose pool is
/// not degraded (lost its connection, reconnecting): like gRPC's round_robin,
/// which only picks READY subchannels. If every admissible endpoint is
/// degraded, one of them is picked anyway (its pool fails fast or waits for
/// its reconnect), so a call is never refused while something might answer.
fn pick<T: Transport>(
    state: &mut State<T>,
    info: &CallInfo,
    now: Instant,
    avoid: Option<&BTreeSet<String>>,
) -> Option<usize> {
    let State {
        endpoints,
        members,
        balancer,
        ..
    } = state;
    let admissible = |index: usize, healthy_only: bool| {
        let Some(endpoint) = endpoints.get(index) else {
            return false;
        };
        if avoid.is_some_and(|avoid| avoid.contains(&endpoint.addr)) {
            return false;
        }
        members.get(&endpoint.addr).is_some_and(|member| {
            let breaker_ok = member
                .breaker
                .as_ref()
                .is_none_or(|breaker| breaker.is_available(now));
            let pool_ok = !healthy_only
                || member
                    .pool
                    .as_ref()
                    .is_none_or(|pool| pool.health() != PoolHealth::Degraded);
            breaker_ok && pool_ok
        })
    };
    let healthy = |index: usize| admissible(index, true);
    let picked = balancer.pick(&Pick {
        key: info.key.as_deref(),
        now,
        available: &healthy,
    });
    if picked.is_some() {
        return picked;
    }
    let any = |index: usize| admissible(index, false);
    balancer.pick(&Pick {
        key: info.key.as_deref(),
        now,
        available: &any,
    })
}

/// Moves the breaker's transitions into `events`.
fn drain_transitions(addr: &str, breaker: &mut CircuitBreaker, events: &mut Vec<DiscoveryEvent>) {
    for transition in breaker.take_transitions() {
        events.push(DiscoveryEvent::BreakerTransition {
            endpoint: addr.to_owned(),
            from: transition.from,
            to: transition.to,
            reason: transition.reason,
        });
    }
}
