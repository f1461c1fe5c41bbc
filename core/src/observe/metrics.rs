//! Metric emission through the `metrics` facade (feature `metrics`). Nothing
//! is recorded until the application installs a recorder (for example
//! `metrics-exporter-prometheus`); without one every call here is a no-op.
//!
//! Every label set is bounded: server methods by the router (unregistered names
//! share the `unknown` label), codes by [`Code`], endpoints by the endpoint
//! set, retry decisions by their fixed vocabulary.

use std::sync::Arc;
use std::time::Duration;

use crate::resilience::BreakerState;
use crate::status::Code;

/// Server calls finished, by method and code.
pub const SERVER_CALLS: &str = "rpc_server_calls_total";
/// Server call latency (arrival to reply), by method.
pub const SERVER_DURATION: &str = "rpc_server_duration_seconds";
/// Server connections open now.
pub const SERVER_CONNECTIONS: &str = "rpc_server_connections";
/// Client attempts finished (each request sent on a connection), by method and code.
pub const CLIENT_ATTEMPTS: &str = "rpc_client_attempts_total";
/// Client calls finished (what the caller saw, after retries), by method and code.
pub const CLIENT_CALLS: &str = "rpc_client_calls_total";
/// Client call latency (start to outcome, retries included), by method.
pub const CLIENT_DURATION: &str = "rpc_client_duration_seconds";
/// Client connections open now.
pub const CLIENT_CONNECTIONS: &str = "rpc_client_connections";
/// Retry decisions after a failed attempt, by decision.
pub const CLIENT_RETRY_DECISIONS: &str = "rpc_client_retry_decisions_total";
/// Hedges sent.
pub const CLIENT_HEDGES: &str = "rpc_client_hedges_total";
/// Breaker state by endpoint: 0 closed, 1 half-open, 2 open.
pub const CLIENT_BREAKER_STATE: &str = "rpc_client_breaker_state";
/// Endpoints a discovery-aware client knows, by service.
pub const CLIENT_ENDPOINTS: &str = "rpc_client_endpoints";

pub(crate) fn server_call(method: &Arc<str>, code: Code, latency: Duration) {
    let method = metrics::SharedString::from_shared(Arc::clone(method));
    metrics::counter!(SERVER_CALLS, "method" => method.clone(), "code" => code.as_str())
        .increment(1);
    metrics::histogram!(SERVER_DURATION, "method" => method).record(latency.as_secs_f64());
}

pub(crate) fn server_connections(delta: f64) {
    metrics::gauge!(SERVER_CONNECTIONS).increment(delta);
}

/// A finished attempt; `attempt` 0 means a direct call (so also the whole call).
pub(crate) fn client_attempt(method: &str, attempt: u32, code: Code, latency: Duration) {
    metrics::counter!(CLIENT_ATTEMPTS, "method" => method.to_owned(), "code" => code.as_str())
        .increment(1);
    if attempt == 0 {
        client_call(method, code, latency);
    }
}

pub(crate) fn client_call(method: &str, code: Code, latency: Duration) {
    metrics::counter!(CLIENT_CALLS, "method" => method.to_owned(), "code" => code.as_str())
        .increment(1);
    metrics::histogram!(CLIENT_DURATION, "method" => method.to_owned())
        .record(latency.as_secs_f64());
}

/// Counts one client connection in [`CLIENT_CONNECTIONS`] while it lives.
#[derive(Debug)]
pub(crate) struct ClientConnection(());

impl ClientConnection {
    pub(crate) fn open() -> ClientConnection {
        metrics::gauge!(CLIENT_CONNECTIONS).increment(1.0);
        ClientConnection(())
    }
}

impl Drop for ClientConnection {
    fn drop(&mut self) {
        metrics::gauge!(CLIENT_CONNECTIONS).decrement(1.0);
    }
}

pub(crate) fn retry_decision(decision: &str) {
    // `stop:<reason>` and the rest are a fixed vocabulary (see DiscoveryEvent).
    metrics::counter!(CLIENT_RETRY_DECISIONS, "decision" => decision.to_owned()).increment(1);
}

pub(crate) fn hedge() {
    metrics::counter!(CLIENT_HEDGES).increment(1);
}

pub(crate) fn breaker_state(endpoint: &str, state: BreakerState) {
    let value = match state {
        BreakerState::Closed => 0.0,
        BreakerState::HalfOpen => 1.0,
        BreakerState::Open => 2.0,
    };
    metrics::gauge!(CLIENT_BREAKER_STATE, "endpoint" => endpoint.to_owned()).set(value);
}

pub(crate) fn endpoints(service: &str, count: usize) {
    metrics::gauge!(CLIENT_ENDPOINTS, "service" => service.to_owned()).set(count as f64);
}
