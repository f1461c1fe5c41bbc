//! Built-in observability: a `tracing` span per call on both sides, W3C trace
//! context carried across hops in request metadata, and (feature `metrics`)
//! counters and histograms through the `metrics` facade. `docs/OBSERVABILITY.md`
//! lists every span, field, event and metric.
//!
//! Cheap when nobody listens: the per-call spans are at `DEBUG`, so a
//! subscriber at `INFO` (or none) gets a disabled span, which costs a callsite
//! check; fields are formatted and latency is read from the clock only for an
//! enabled span (or when metrics are compiled in).
//!
//! Trace context: a call *continues* any trace it is made under (a handler's
//! outgoing calls are children of its server span) and *starts* one only where
//! a span records it. Ids come from a per-thread ChaCha stream seeded from the
//! OS once ([`seed_trace_ids`] pins it for a simulated run); they are hex of a
//! fixed width on the wire, so a frame's size never depends on them.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use rand::RngCore;
use tokio::time::Instant;
use tracing::Span;

use crate::rng::{Rng, SeedSource};
use crate::status::Code;

#[cfg(feature = "metrics")]
pub mod metrics;

/// The metadata key carrying trace context, in the W3C Trace Context
/// `traceparent` format: `00-<trace id, 32 hex>-<parent span id, 16 hex>-01`.
pub const TRACEPARENT: &str = "traceparent";

/// Where a call sits in a distributed trace: the trace it belongs to and the
/// span that is the parent of whatever it calls next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceContext {
    /// The trace, shared by every span of one end-to-end request. Never 0.
    pub trace_id: u128,
    /// The span the next hop's span is a child of. Never 0.
    pub span_id: u64,
}

impl TraceContext {
    /// Reads a `traceparent` value (version 00; later versions are read as far
    /// as 00 defines). `None` for anything malformed or all-zero ids.
    pub fn parse(value: &str) -> Option<TraceContext> {
        let mut parts = value.split('-');
        let version = parts.next()?;
        let trace = parts.next()?;
        let span = parts.next()?;
        let flags = parts.next()?;
        let well_formed = version.len() == 2
            && version != "ff"
            && trace.len() == 32
            && span.len() == 16
            && flags.len() == 2
            && (version != "00" || parts.next().is_none());
        if !well_formed || !is_lower_hex(version) || !is_lower_hex(flags) {
            return None;
        }
        let trace_id = parse_hex_u128(trace)?;
        let span_id = parse_hex_u64(span)?;
        (trace_id != 0 && span_id != 0).then_some(TraceContext { trace_id, span_id })
    }

    /// The `traceparent` value (always 55 bytes; sampled flag set).
    pub fn to_traceparent(&self) -> String {
        format!("00-{:032x}-{:016x}-01", self.trace_id, self.span_id)
    }

    /// The trace context of the handler running on this task, if any: the
    /// parent of the calls it makes.
    pub fn current() -> Option<TraceContext> {
        Scope::current().trace
    }
}

fn is_lower_hex(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn parse_hex_u128(text: &str) -> Option<u128> {
    is_lower_hex(text)
        .then(|| u128::from_str_radix(text, 16).ok())
        .flatten()
}

fn parse_hex_u64(text: &str) -> Option<u64> {
    is_lower_hex(text)
        .then(|| u64::from_str_radix(text, 16).ok())
        .flatten()
}

thread_local! {
    /// This thread's id stream; seeded from the OS on first use unless pinned.
    static IDS: RefCell<Option<Rng>> = const { RefCell::new(None) };
}

/// Pins this thread's trace and span id stream to `seed` (a simulated run
/// calls it first, so its ids replay; elsewhere the OS seeds it once).
pub fn seed_trace_ids(seed: SeedSource) {
    IDS.with(|ids| *ids.borrow_mut() = Some(seed.stream("trace-ids")));
}

fn next_u64() -> u64 {
    IDS.with(|ids| {
        let mut ids = ids.borrow_mut();
        let rng = ids.get_or_insert_with(|| SeedSource::from_os().stream("trace-ids"));
        // Zero is the invalid id; one redraw in 2^64 is enough of a bound.
        match rng.next_u64() {
            0 => rng.next_u64() | 1,
            id => id,
        }
    })
}

fn new_trace_id() -> u128 {
    (u128::from(next_u64()) << 64) | u128::from(next_u64())
}

tokio::task_local! {
    /// The call scope of the code running on this task.
    static SCOPE: Scope;
}

/// What a call made from here inherits: the trace it continues and, inside a
/// discovery-aware client, which attempt it is.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Scope {
    /// The trace context calls made in this scope continue.
    pub(crate) trace: Option<TraceContext>,
    /// The attempt number (1 = first) when a `ServiceClient` makes the call;
    /// 0 for a call made directly on a channel or pool.
    pub(crate) attempt: u32,
}

impl Scope {
    /// The scope of this task (empty outside any).
    pub(crate) fn current() -> Scope {
        SCOPE.try_with(|scope| *scope).unwrap_or_default()
    }

    /// This scope, as attempt `attempt`.
    pub(crate) fn with_attempt(mut self, attempt: u32) -> Scope {
        self.attempt = attempt;
        self
    }

    /// Runs `f` in this scope.
    pub(crate) fn enter<R>(self, f: impl FnOnce() -> R) -> R {
        SCOPE.sync_scope(self, f)
    }
}

/// A future polled inside a span and a scope (a handler: its outgoing calls
/// are children of the server span and continue its trace).
pub(crate) struct Scoped<F> {
    /// The wrapped future.
    inner: F,
    /// Entered on every poll.
    span: Span,
    /// Set on every poll.
    scope: Scope,
    /// Whether there is a span or a trace to enter: when neither, polls go
    /// straight to `inner` (no task-local swap on the untraced hot path).
    active: bool,
}

impl<F> Scoped<F> {
    pub(crate) fn new(inner: F, span: Span, scope: Scope) -> Scoped<F> {
        let active = !span.is_disabled() || scope.trace.is_some();
        Scoped {
            inner,
            span,
            scope,
            active,
        }
    }
}

impl<F: Future + Unpin> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        if !this.active {
            return Pin::new(&mut this.inner).poll(cx);
        }
        let _entered = this.span.enter();
        SCOPE.sync_scope(this.scope, || Pin::new(&mut this.inner).poll(cx))
    }
}

/// The observed side of one server call: its span, its scope, when it began.
#[derive(Debug)]
pub(crate) struct ServerCall {
    /// `rpc.server` (disabled when nobody listens at DEBUG).
    pub(crate) span: Span,
    /// What the handler's own calls inherit.
    pub(crate) scope: Scope,
    /// When the request arrived.
    arrived: Instant,
    /// Whether the outcome was recorded (a call dropped first is `Cancelled`).
    finished: bool,
    /// The bounded method label (feature `metrics`).
    #[cfg(feature = "metrics")]
    label: std::sync::Arc<str>,
}

/// The method labels a server's metrics may use: its router's methods, and
/// `unknown` for every other name a caller sends, so callers cannot grow the
/// number of series (without feature `metrics`, nothing is kept).
#[derive(Debug, Default)]
pub(crate) struct MethodLabels {
    /// The router's methods.
    #[cfg(feature = "metrics")]
    known: std::collections::BTreeSet<std::sync::Arc<str>>,
    /// The label every other name shares.
    #[cfg(feature = "metrics")]
    unknown: std::sync::Arc<str>,
}

impl MethodLabels {
    /// The labels for `router`'s methods.
    pub(crate) fn new(router: &crate::Router) -> MethodLabels {
        #[cfg(not(feature = "metrics"))]
        let _ = router;
        MethodLabels {
            #[cfg(feature = "metrics")]
            known: router.method_names().into_iter().map(Into::into).collect(),
            #[cfg(feature = "metrics")]
            unknown: crate::server::middleware::UNKNOWN_METHOD.into(),
        }
    }

    /// The label for `method`.
    #[cfg(feature = "metrics")]
    fn label(&self, method: &str) -> std::sync::Arc<str> {
        let label = self.known.get(method).unwrap_or(&self.unknown);
        std::sync::Arc::clone(label)
    }
}

impl ServerCall {
    /// Opens the span for request `request_id` of `method` from `peer`, arrived
    /// at `arrived`, continuing the trace in `traceparent` if any; `labels`
    /// bound its metric label.
    pub(crate) fn start(
        method: &str,
        request_id: u64,
        peer: std::net::SocketAddr,
        traceparent: Option<&str>,
        arrived: Instant,
        labels: &MethodLabels,
    ) -> ServerCall {
        #[cfg(not(feature = "metrics"))]
        let _ = labels;
        let incoming = traceparent.and_then(TraceContext::parse);
        let span = tracing::debug_span!(
            "rpc.server",
            method,
            request_id,
            %peer,
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
            parent_span_id = tracing::field::Empty,
            code = tracing::field::Empty,
            latency_us = tracing::field::Empty,
        );
        // A disabled span passes the incoming context through unchanged, so the
        // next hop links to the last span anyone recorded.
        let trace = match span.is_disabled() {
            true => incoming,
            false => Some(open_span(&span, incoming)),
        };
        ServerCall {
            span,
            scope: Scope { trace, attempt: 0 },
            arrived,
            finished: false,
            #[cfg(feature = "metrics")]
            label: labels.label(method),
        }
    }

    /// Runs `f` (the middleware's synchronous `call`) in the span and scope,
    /// when there is either.
    pub(crate) fn in_scope<R>(&self, f: impl FnOnce() -> R) -> R {
        if self.span.is_disabled() && self.scope.trace.is_none() {
            return f();
        }
        let _entered = self.span.enter();
        self.scope.enter(f)
    }

    /// Records how the call ended.
    pub(crate) fn finish(&mut self, code: Code) {
        self.finished = true;
        if self.span.is_disabled() && !cfg!(feature = "metrics") {
            return;
        }
        let latency = self.arrived.elapsed();
        self.span.record("code", code.as_str());
        self.span.record("latency_us", latency.as_micros() as u64);
        #[cfg(feature = "metrics")]
        metrics::server_call(&self.label, code, latency);
    }
}

impl Drop for ServerCall {
    fn drop(&mut self) {
        if !self.finished {
            self.finish(Code::Cancelled);
        }
    }
}

/// Records a new span id (and the trace it belongs to) on `span`: a child of
/// `parent`, or the root of a new trace.
fn open_span(span: &Span, parent: Option<TraceContext>) -> TraceContext {
    let context = TraceContext {
        trace_id: parent.map_or_else(new_trace_id, |parent| parent.trace_id),
        span_id: next_u64(),
    };
    span.record(
        "trace_id",
        tracing::field::display(format_args!("{:032x}", context.trace_id)),
    );
    span.record(
        "span_id",
        tracing::field::display(format_args!("{:016x}", context.span_id)),
    );
    if let Some(parent) = parent {
        span.record(
            "parent_span_id",
            tracing::field::display(format_args!("{:016x}", parent.span_id)),
        );
    }
    context
}

/// The observed side of one client call on a channel (one attempt).
#[derive(Debug)]
pub(crate) struct ClientCall {
    /// `rpc.client` (disabled when nobody listens at DEBUG).
    span: Span,
    /// When it was sent.
    started: Instant,
    /// Whether the outcome was recorded (a call dropped first is `Cancelled`).
    finished: bool,
    /// 0 when called directly (then this is the whole call), else the attempt
    /// number within a `ServiceClient` call.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    attempt: u32,
    /// The method (feature `metrics`: the label).
    #[cfg(feature = "metrics")]
    method: String,
}

impl ClientCall {
    /// Opens the span for `method` to `peer`, and returns the `traceparent`
    /// value to send, unless the caller set one in `metadata` itself.
    pub(crate) fn start(
        method: &str,
        peer: &str,
        metadata: &[(String, String)],
        now: Instant,
    ) -> (ClientCall, Option<String>) {
        let scope = Scope::current();
        let attempt = scope.attempt;
        let span = tracing::debug_span!(
            "rpc.client",
            method,
            peer,
            attempt = attempt.max(1),
            request_id = tracing::field::Empty,
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
            parent_span_id = tracing::field::Empty,
            code = tracing::field::Empty,
            latency_us = tracing::field::Empty,
        );
        let explicit = metadata.iter().any(|(key, _)| key == TRACEPARENT);
        let traceparent = match (explicit, span.is_disabled()) {
            (true, _) => None,
            (false, true) => scope.trace.map(|trace| trace.to_traceparent()),
            (false, false) => Some(open_span(&span, scope.trace).to_traceparent()),
        };
        let call = ClientCall {
            span,
            started: now,
            finished: false,
            attempt,
            #[cfg(feature = "metrics")]
            method: method.to_owned(),
        };
        (call, traceparent)
    }

    /// Records the request id the channel gave the call.
    pub(crate) fn sent(&self, request_id: u64) {
        self.span.record("request_id", request_id);
    }

    /// Records how the call ended.
    pub(crate) fn finish(&mut self, code: Code) {
        self.finished = true;
        if self.span.is_disabled() && !cfg!(feature = "metrics") {
            return;
        }
        let latency = self.started.elapsed();
        self.span.record("code", code.as_str());
        self.span.record("latency_us", latency.as_micros() as u64);
        #[cfg(feature = "metrics")]
        metrics::client_attempt(&self.method, self.attempt, code, latency);
    }
}

impl Drop for ClientCall {
    fn drop(&mut self) {
        if !self.finished {
            self.finish(Code::Cancelled);
        }
    }
}

/// Reports a discovery-aware client's event as a `tracing` event (target
/// `squall::discovery`, field `event` naming it) and, with feature `metrics`,
/// in the metrics it feeds.
pub(crate) fn discovery_event(service: &str, event: &crate::DiscoveryEvent) {
    use crate::DiscoveryEvent as E;
    const TARGET: &str = "squall::discovery";
    match event {
        E::EndpointsChanged { endpoints } => {
            tracing::info!(target: TARGET, event = "endpoints_changed", service, count = endpoints.len(), ?endpoints, "endpoint set changed");
            #[cfg(feature = "metrics")]
            metrics::endpoints(service, endpoints.len());
        }
        E::Attempt {
            call,
            attempt,
            endpoint,
            hedge,
        } => {
            tracing::debug!(target: TARGET, event = "attempt", service, call, attempt, endpoint, hedge, "attempt sent");
            #[cfg(feature = "metrics")]
            if *hedge {
                metrics::hedge();
            }
        }
        E::AttemptFinished {
            call,
            attempt,
            endpoint,
            outcome,
            rtt,
        } => {
            let code = code_of(outcome);
            let rtt_us = rtt.as_micros() as u64;
            tracing::debug!(target: TARGET, event = "attempt_finished", service, call, attempt, endpoint, code = code.as_str(), rtt_us, "attempt finished");
        }
        E::RetryDecision {
            call,
            attempt,
            decision,
        } => {
            tracing::debug!(target: TARGET, event = "retry_decision", service, call, attempt, decision, "retry decision");
            #[cfg(feature = "metrics")]
            metrics::retry_decision(decision);
        }
        // The `rpc.client.call` span records the outcome.
        E::CallFinished { .. } => {}
        E::BreakerTransition {
            endpoint,
            from,
            to,
            reason,
        } => {
            tracing::info!(target: TARGET, event = "breaker_transition", service, endpoint, ?from, ?to, ?reason, "circuit breaker changed state");
            #[cfg(feature = "metrics")]
            metrics::breaker_state(endpoint, *to);
        }
        E::RegistryStale { .. } => {
            tracing::warn!(target: TARGET, event = "registry_stale", service, "registry unreachable: serving the last known endpoints");
        }
        E::RegistryRecovered => {
            tracing::info!(target: TARGET, event = "registry_recovered", service, "registry reachable again");
        }
    }
}

/// The code of a call's outcome.
pub(crate) fn code_of<T>(result: &Result<T, crate::Status>) -> Code {
    match result {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_has_a_fixed_width() {
        let context = TraceContext {
            trace_id: 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736,
            span_id: 0x00f0_67aa_0ba9_02b7,
        };
        let value = context.to_traceparent();
        assert_eq!(
            value,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        assert_eq!(TraceContext::parse(&value), Some(context));
        let small = TraceContext {
            trace_id: 1,
            span_id: 1,
        };
        assert_eq!(small.to_traceparent().len(), value.len());
    }

    #[test]
    fn malformed_or_zero_traceparents_are_ignored() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn pinned_ids_replay() {
        seed_trace_ids(SeedSource::new(7));
        let first = (new_trace_id(), next_u64());
        seed_trace_ids(SeedSource::new(7));
        assert_eq!((new_trace_id(), next_u64()), first);
    }
}
