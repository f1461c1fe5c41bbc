//! Per-method call counts by outcome and latency histograms, readable from code.
//!
//! Cardinality is bounded by the router, not by callers: a store is built from
//! the [`Router`] it measures, keeps an entry only for registered methods, and
//! counts every other name a caller sends under one [`UNKNOWN_METHOD`] entry.
//! (Each entry holds a latency histogram of ≈ 188 KiB; when every distinct name
//! got its own, 2,000 made-up names cost a server ≈ 377 MB.)
//!
//! Every call the layer sees is counted exactly once, including the ones that
//! never return a response to it: a handler that panics (the connection turns
//! the panic into `Internal`), and a handler dropped before it finished — at its
//! deadline (`DeadlineExceeded`) or because the caller cancelled, the connection
//! closed or shutdown's grace ran out (`Cancelled`).
//!
//! Refusals made by the connection before any middleware runs (the in-flight
//! limit, a full reply backlog, shutdown, a request that arrives past its
//! deadline) never reach this layer; the connection logs them.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};

use hdrhistogram::Histogram;
use tokio::time::Instant;
use tower::Layer;

use super::{Inner, ResponseFuture};
use crate::server::{Request, Response, Router};
use crate::status::{Code, Status};

/// Latencies above this (one hour) are recorded as this.
const LATENCY_MAX_US: u64 = 3_600_000_000;

/// The entry every method name the router does not know is counted under. It
/// cannot clash with a registered method: those are always `Service.Method`.
pub const UNKNOWN_METHOD: &str = "unknown";

/// Why a call was refused before its handler ran, as far as the reply tells:
/// a reply marked *not executed*, by its code (and, for the built-in limit
/// layers, which of them refused it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rejection {
    /// The method is not registered (`NotFound`).
    UnknownMethod,
    /// The arguments did not decode (`InvalidArgument`).
    InvalidArgument,
    /// Authentication failed (`Unauthenticated`, `PermissionDenied`).
    Unauthenticated,
    /// [`RateLimitLayer`](super::RateLimitLayer) refused it (`ResourceExhausted`).
    RateLimited,
    /// [`LoadShedLayer`](super::LoadShedLayer) shed it (`ResourceExhausted`).
    LoadShed,
    /// Any other refusal (a custom layer's), by its code.
    Other(Code),
}

impl Rejection {
    /// The reason `status` gives, if it says the handler never ran.
    fn of(status: &Status) -> Option<Rejection> {
        if status.may_have_executed() {
            return None;
        }
        let rejection = match status.code() {
            Code::NotFound => Rejection::UnknownMethod,
            Code::InvalidArgument => Rejection::InvalidArgument,
            Code::Unauthenticated | Code::PermissionDenied => Rejection::Unauthenticated,
            Code::ResourceExhausted if status.message().ends_with(super::limit::RATE_LIMITED) => {
                Rejection::RateLimited
            }
            Code::ResourceExhausted if status.message().ends_with(super::limit::SHED) => {
                Rejection::LoadShed
            }
            code => Rejection::Other(code),
        };
        Some(rejection)
    }
}

/// How one call ended, as the layer saw it.
#[derive(Clone, Copy, Debug)]
enum Outcome {
    /// A response came back through the layer.
    Replied(Code, Option<Rejection>),
    /// The handler panicked (the caller gets `Internal`).
    Panicked,
    /// The handler was dropped at or after its deadline.
    DroppedAtDeadline,
    /// The handler was dropped before its deadline: cancelled.
    Dropped,
}

#[derive(Debug)]
struct MethodStats {
    /// Calls by the code the caller got.
    by_code: BTreeMap<Code, u64>,
    /// Calls refused before the handler ran, by reason.
    rejected: BTreeMap<Rejection, u64>,
    /// Handlers that panicked.
    panics: u64,
    /// Handlers dropped before they finished, before their deadline.
    cancelled: u64,
    /// Handlers dropped at their deadline.
    deadline_dropped: u64,
    /// Handler latency in microseconds (3 significant figures).
    latency_us: Histogram<u64>,
}

/// A summary of one method's calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MethodSnapshot {
    /// Calls finished, however they ended.
    pub calls: u64,
    /// Calls by the code the caller got (`Ok` included): a panic is `Internal`,
    /// a handler dropped at its deadline `DeadlineExceeded`, one dropped before
    /// it `Cancelled`.
    pub by_code: BTreeMap<Code, u64>,
    /// Calls refused before the handler ran, by reason (a subset of `by_code`).
    pub rejected: BTreeMap<Rejection, u64>,
    /// Handlers that panicked (counted under `Internal` too).
    pub panics: u64,
    /// Handlers dropped unfinished before their deadline: the caller cancelled,
    /// the connection closed, or shutdown's grace ran out (under `Cancelled`).
    pub cancelled: u64,
    /// Handlers dropped unfinished at their deadline (under `DeadlineExceeded`,
    /// together with handlers that returned it themselves).
    pub deadline_dropped: u64,
    /// Median latency, µs.
    pub latency_p50_us: u64,
    /// 99th percentile latency, µs.
    pub latency_p99_us: u64,
    /// Largest latency, µs.
    pub latency_max_us: u64,
}

/// The metrics store: build it from the router, clone it before adding the
/// layer, read it any time.
#[derive(Clone, Debug)]
pub struct Metrics {
    /// The router's methods: the only names that get an entry of their own.
    registered: Arc<BTreeSet<String>>,
    /// Stats by method name (registered ones and [`UNKNOWN_METHOD`]), created
    /// on a method's first call.
    methods: Arc<Mutex<BTreeMap<String, MethodStats>>>,
}

impl Metrics {
    /// A store for `router`'s methods; every other name is [`UNKNOWN_METHOD`].
    pub fn new(router: &Router) -> Metrics {
        Metrics {
            registered: Arc::new(router.method_names().into_iter().collect()),
            methods: Arc::default(),
        }
    }

    /// The layer that records into this store.
    pub fn layer(&self) -> MetricsLayer {
        MetricsLayer {
            metrics: self.clone(),
        }
    }

    /// The entry `method` is counted under.
    fn entry_name<'a>(&self, method: &'a str) -> &'a str {
        if self.registered.contains(method) {
            method
        } else {
            UNKNOWN_METHOD
        }
    }

    fn record(&self, method: &str, outcome: Outcome, elapsed_us: u64) {
        let mut methods = self.methods.lock().unwrap_or_else(|p| p.into_inner());
        if !methods.contains_key(method) {
            let Ok(latency_us) = Histogram::new_with_bounds(1, LATENCY_MAX_US, 3) else {
                return;
            };
            let stats = MethodStats {
                by_code: BTreeMap::new(),
                rejected: BTreeMap::new(),
                panics: 0,
                cancelled: 0,
                deadline_dropped: 0,
                latency_us,
            };
            methods.insert(method.to_owned(), stats);
        }
        let Some(stats) = methods.get_mut(method) else {
            return;
        };
        let code = match outcome {
            Outcome::Replied(code, rejection) => {
                if let Some(rejection) = rejection {
                    *stats.rejected.entry(rejection).or_default() += 1;
                }
                code
            }
            Outcome::Panicked => {
                stats.panics += 1;
                Code::Internal
            }
            Outcome::DroppedAtDeadline => {
                stats.deadline_dropped += 1;
                Code::DeadlineExceeded
            }
            Outcome::Dropped => {
                stats.cancelled += 1;
                Code::Cancelled
            }
        };
        *stats.by_code.entry(code).or_default() += 1;
        stats
            .latency_us
            .saturating_record(elapsed_us.clamp(1, LATENCY_MAX_US));
    }

    /// A summary per method called at least once, sorted by method name.
    pub fn snapshot(&self) -> BTreeMap<String, MethodSnapshot> {
        let methods = self.methods.lock().unwrap_or_else(|p| p.into_inner());
        methods
            .iter()
            .map(|(name, stats)| {
                let snapshot = MethodSnapshot {
                    calls: stats.by_code.values().sum(),
                    by_code: stats.by_code.clone(),
                    rejected: stats.rejected.clone(),
                    panics: stats.panics,
                    cancelled: stats.cancelled,
                    deadline_dropped: stats.deadline_dropped,
                    latency_p50_us: stats.latency_us.value_at_quantile(0.5),
                    latency_p99_us: stats.latency_us.value_at_quantile(0.99),
                    latency_max_us: stats.latency_us.max(),
                };
                (name.clone(), snapshot)
            })
            .collect()
    }
}

/// Adds [`MetricsService`].
#[derive(Clone, Debug)]
pub struct MetricsLayer {
    /// Where to record.
    metrics: Metrics,
}

impl<S> Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;
    fn layer(&self, inner: S) -> MetricsService<S> {
        MetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// Records every call's outcome and latency.
#[derive(Clone, Debug)]
pub struct MetricsService<S> {
    /// The wrapped service.
    inner: S,
    /// Where to record.
    metrics: Metrics,
}

/// Records one call when it ends. A drop guard rather than code after the
/// `await`, because a panicking or dropped handler never reaches that code:
/// the guard is dropped either way, and tells the cases apart.
struct CallRecord {
    /// Where to record.
    metrics: Metrics,
    /// The entry: the method if registered, else [`UNKNOWN_METHOD`].
    entry: String,
    /// When the layer received the call.
    start: Instant,
    /// The call's deadline: a drop at or after it is the deadline's doing.
    deadline: Option<Instant>,
    /// Set once recorded, so the drop records nothing more.
    recorded: bool,
}

impl CallRecord {
    fn finish(&mut self, outcome: Outcome) {
        if !self.recorded {
            self.recorded = true;
            let elapsed_us = u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX);
            self.metrics.record(&self.entry, outcome, elapsed_us);
        }
    }
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        let outcome = if std::thread::panicking() {
            Outcome::Panicked
        } else if self
            .deadline
            .is_some_and(|deadline| Instant::now() >= deadline)
        {
            Outcome::DroppedAtDeadline
        } else {
            Outcome::Dropped
        };
        self.finish(outcome);
    }
}

impl<S: Inner> tower::Service<Request> for MetricsService<S> {
    type Response = Response;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> ResponseFuture {
        // Made before the inner `call`, so a panic in a layer's synchronous
        // part is counted too.
        let mut record = CallRecord {
            metrics: self.metrics.clone(),
            entry: self.metrics.entry_name(request.ctx.method()).to_owned(),
            start: Instant::now(),
            deadline: request.ctx.deadline(),
            recorded: false,
        };
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await;
            let outcome = match &response {
                Ok(Response { result: Ok(_) }) => Outcome::Replied(Code::Ok, None),
                Ok(Response {
                    result: Err(status),
                }) => Outcome::Replied(status.code(), Rejection::of(status)),
                Err(never) => match *never {},
            };
            record.finish(outcome);
            response
        })
    }
}
