//! Per-method call counts by status and latency histograms, readable from code.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};

use hdrhistogram::Histogram;
use tokio::time::Instant;
use tower::Layer;

use super::{Inner, ResponseFuture};
use crate::server::{Request, Response};
use crate::status::Code;

/// Latencies above this (one hour) are recorded as this.
const LATENCY_MAX_US: u64 = 3_600_000_000;

#[derive(Debug)]
struct MethodStats {
    /// Calls by outcome.
    by_code: BTreeMap<Code, u64>,
    /// Handler latency in microseconds (3 significant figures).
    latency_us: Histogram<u64>,
}

/// A summary of one method's calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MethodSnapshot {
    /// Calls finished.
    pub calls: u64,
    /// Calls by outcome (`Ok` included).
    pub by_code: BTreeMap<Code, u64>,
    /// Median latency, µs.
    pub latency_p50_us: u64,
    /// 99th percentile latency, µs.
    pub latency_p99_us: u64,
    /// Largest latency, µs.
    pub latency_max_us: u64,
}

/// The metrics store: clone it before adding the layer, read it any time.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    /// Stats by method name.
    methods: Arc<Mutex<BTreeMap<String, MethodStats>>>,
}

impl Metrics {
    /// An empty store.
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// The layer that records into this store.
    pub fn layer(&self) -> MetricsLayer {
        MetricsLayer {
            metrics: self.clone(),
        }
    }

    fn record(&self, method: &str, code: Code, elapsed_us: u64) {
        let mut methods = self.methods.lock().unwrap_or_else(|p| p.into_inner());
        if !methods.contains_key(method) {
            let Ok(latency_us) = Histogram::new_with_bounds(1, LATENCY_MAX_US, 3) else {
                return;
            };
            methods.insert(
                method.to_owned(),
                MethodStats {
                    by_code: BTreeMap::new(),
                    latency_us,
                },
            );
        }
        if let Some(stats) = methods.get_mut(method) {
            *stats.by_code.entry(code).or_default() += 1;
            stats
                .latency_us
                .saturating_record(elapsed_us.clamp(1, LATENCY_MAX_US));
        }
    }

    /// A summary per method, sorted by method name.
    pub fn snapshot(&self) -> BTreeMap<String, MethodSnapshot> {
        let methods = self.methods.lock().unwrap_or_else(|p| p.into_inner());
        methods
            .iter()
            .map(|(name, stats)| {
                let snapshot = MethodSnapshot {
                    calls: stats.by_code.values().sum(),
                    by_code: stats.by_code.clone(),
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

impl<S: Inner> tower::Service<Request> for MetricsService<S> {
    type Response = Response;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> ResponseFuture {
        let method = request.ctx.method().to_owned();
        let metrics = self.metrics.clone();
        let start = Instant::now();
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await;
            let code = match &response {
                Ok(Response { result: Ok(_) }) => Code::Ok,
                Ok(Response {
                    result: Err(status),
                }) => status.code(),
                Err(never) => match *never {},
            };
            metrics.record(&method, code, start.elapsed().as_micros() as u64);
            response
        })
    }
}
