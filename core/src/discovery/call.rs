//! One call's orchestration: attempts, hedges, retries with backoff, the overall
//! deadline — and the [`ServiceCall`] future that carries it.

use std::collections::BTreeSet;
use std::future::{pending, poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use tokio::task::JoinHandle;
use tokio::time::{sleep, sleep_until, Instant};
use tracing::Instrument;

use super::state::{CallInfo, Inner, Next, Running, Want};
use super::DiscoveryEvent;
use crate::client::Reply;
use crate::resilience::FailMode;
use crate::transport::Transport;
use crate::Status;

/// A call through a [`ServiceClient`](super::ServiceClient).
///
/// The call runs on a tokio task of its own, spawned when the call is made, so
/// it makes progress (attempts, backoffs, hedges) whether or not this future is
/// polled — it can be awaited later, like net/rpc's `Go`. Dropping the future
/// aborts the task: attempts in flight are dropped, which cancels them at the
/// server, and are reported as `Cancelled`.
#[derive(Debug)]
pub struct ServiceCall {
    /// The task running the call.
    task: JoinHandle<Result<Reply, Status>>,
}

impl ServiceCall {
    /// Spawns `info`'s call on the current runtime.
    pub(super) fn spawn<T: Transport>(inner: Arc<Inner<T>>, info: CallInfo) -> ServiceCall {
        let span = tracing::debug_span!(
            "rpc.client.call",
            service = %inner.service,
            method = %info.request.method,
            call = info.id,
            attempts = tracing::field::Empty,
            code = tracing::field::Empty,
            latency_us = tracing::field::Empty,
        );
        ServiceCall {
            task: tokio::spawn(run(inner, info).instrument(span)),
        }
    }
}

impl Future for ServiceCall {
    type Output = Result<Reply, Status>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.task).poll(cx).map(|joined| {
            joined.unwrap_or_else(|error| {
                Err(Status::internal(format!(
                    "service client call task failed: {error}"
                )))
            })
        })
    }
}

impl Drop for ServiceCall {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reports `CallFinished` exactly once: with the outcome, or as `Cancelled` if
/// the call's task is aborted first.
struct CallTracker<T: Transport> {
    /// Where to report.
    inner: Arc<Inner<T>>,
    /// The call's id.
    call: u64,
    /// Attempts sent so far, hedges included.
    attempts: u32,
    /// Whether any attempt so far (hedges included) may have run on a server.
    /// Sticky: a later attempt that provably did not run cannot undo an earlier
    /// one that may have, and the call's failure must say so — non-idempotent
    /// callers decide on it whether re-sending is safe.
    may_have_executed: bool,
    /// Whether `CallFinished` was reported.
    finished: bool,
}

impl<T: Transport> CallTracker<T> {
    /// Records a failed (or abandoned) attempt's status.
    fn note(&mut self, status: &Status) {
        self.may_have_executed |= status.may_have_executed();
    }

    /// The call's final failure: `status`, marked as possibly executed if any
    /// attempt may have been — saying so when the last attempt itself did not.
    fn final_status(&self, status: Status) -> Status {
        if !self.may_have_executed || status.may_have_executed() {
            return status;
        }
        let message = format!(
            "{}; an earlier attempt of this call may have run on a server",
            status.message()
        );
        Status::new(status.code(), message).with_retryable(status.is_retryable())
    }

    fn report(&mut self, outcome: Result<(), Status>) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        self.inner.emit(vec![DiscoveryEvent::CallFinished {
            call: self.call,
            attempts: self.attempts,
            outcome,
        }]);
    }
}

impl<T: Transport> Drop for CallTracker<T> {
    fn drop(&mut self) {
        self.report(Err(Status::cancelled("call dropped by the caller")));
    }
}

/// Runs one call to its end.
pub(super) async fn run<T: Transport>(
    inner: Arc<Inner<T>>,
    info: CallInfo,
) -> Result<Reply, Status> {
    let mut tracker = CallTracker {
        inner: Arc::clone(&inner),
        call: info.id,
        attempts: 0,
        may_have_executed: false,
        finished: false,
    };
    let started = Instant::now();
    let result = drive(&inner, &info, &mut tracker)
        .await
        .map_err(|status| tracker.final_status(status));
    tracker.report(result.as_ref().map(|_| ()).map_err(Clone::clone));
    let code = crate::observe::code_of(&result);
    let latency = started.elapsed();
    let span = tracing::Span::current();
    span.record("attempts", tracker.attempts);
    span.record("code", code.as_str());
    span.record("latency_us", latency.as_micros() as u64);
    #[cfg(feature = "metrics")]
    crate::observe::metrics::client_call(&info.request.method, code, latency);
    result
}

/// Waits (up to the call's deadline) until the endpoint set is first known and,
/// with `wait_for_ready`, holds an instance.
async fn wait_for_endpoints<T: Transport>(inner: &Arc<Inner<T>>, info: &CallInfo) {
    let wait_for_ready = inner.config.wait_for_ready;
    let mut readiness = inner.readiness.subscribe();
    if readiness.borrow_and_update().admits(wait_for_ready) {
        return;
    }
    let wait = readiness.wait_for(|readiness| readiness.admits(wait_for_ready));
    match info.deadline {
        Some(deadline) => {
            let _ = tokio::time::timeout_at(deadline, wait).await;
        }
        None => {
            let _ = wait.await;
        }
    }
}

/// Attempts, retries and backoffs until a reply, a stop or the deadline.
async fn drive<T: Transport>(
    inner: &Arc<Inner<T>>,
    info: &CallInfo,
    tracker: &mut CallTracker<T>,
) -> Result<Reply, Status> {
    inner.deposit();
    wait_for_endpoints(inner, info).await;
    let mut tried: BTreeSet<String> = BTreeSet::new();
    let mut last: Option<(Status, String)> = None;
    let mut hedged = false;
    loop {
        let want = match (&last, inner.config.fail_mode) {
            (Some((_, endpoint)), FailMode::FailTry) => Want::Same(endpoint),
            _ => Want::Any {
                avoid: &tried,
                strict: false,
            },
        };
        let first = match inner.begin(info, tracker.attempts + 1, false, want) {
            Ok(first) => first,
            // Nothing to retry on (every breaker open, or the set emptied):
            // the last real failure says more than "no endpoint".
            Err(status) => return Err(last.map_or(status, |(status, _)| status)),
        };
        tracker.attempts += 1;
        tried.insert(first.guard.endpoint.clone());
        let failure = match round(inner, info, tracker, first, &mut tried, &mut hedged).await {
            Ok(reply) => return Ok(reply),
            Err(failure) => failure,
        };
        match inner.decide(info, tracker.attempts, &failure.0) {
            Next::Stop => return Err(failure.0),
            Next::Retry(delay) => {
                last = Some(failure);
                sleep(delay).await;
            }
        }
    }
}

/// What woke a round up.
enum Wake {
    /// Attempt `index` of the running ones ended.
    Done(usize, Result<Reply, Status>),
    /// The hedge delay passed.
    Hedge,
    /// The call's deadline passed.
    Deadline,
}

/// Waits for `first` (and, if the hedge delay passes, one hedge to another
/// endpoint): the first reply wins and the other attempt is dropped. Fails with
/// the last failure and its endpoint when every attempt failed.
async fn round<T: Transport>(
    inner: &Arc<Inner<T>>,
    info: &CallInfo,
    tracker: &mut CallTracker<T>,
    first: Running<T>,
    tried: &mut BTreeSet<String>,
    hedged: &mut bool,
) -> Result<Reply, (Status, String)> {
    let mut hedge_at = match *hedged || !info.request.idempotent {
        true => None,
        false => inner.hedge_delay().map(|delay| Instant::now() + delay),
    };
    let mut running = vec![first];
    loop {
        let wake = tokio::select! {
            biased;
            (index, result) = poll_any(&mut running) => Wake::Done(index, result),
            () = maybe_sleep_until(hedge_at) => Wake::Hedge,
            () = maybe_sleep_until(info.deadline) => Wake::Deadline,
        };
        match wake {
            Wake::Done(index, Ok(reply)) => {
                let winner = running.swap_remove(index);
                winner.guard.finish(&Ok(reply.clone()));
                for loser in running.drain(..) {
                    let lost = Status::cancelled("hedge lost: another attempt replied first");
                    loser.guard.finish(&Err(lost));
                }
                return Ok(reply);
            }
            Wake::Done(index, Err(status)) => {
                let failed = running.swap_remove(index);
                tracker.note(&status);
                let endpoint = failed.guard.endpoint.clone();
                failed.guard.finish(&Err(status.clone()));
                if running.is_empty() {
                    return Err((status, endpoint));
                }
            }
            Wake::Hedge => {
                hedge_at = None;
                let avoid = Want::Any {
                    avoid: tried,
                    strict: true,
                };
                // No other endpoint, or no hedge budget: keep waiting for the first.
                if let Ok(hedge) = inner.begin(info, tracker.attempts + 1, true, avoid) {
                    tracker.attempts += 1;
                    *hedged = true;
                    tried.insert(hedge.guard.endpoint.clone());
                    running.push(hedge);
                }
            }
            Wake::Deadline => {
                let status = Status::deadline_exceeded(format!(
                    "{} on service {}: the call's deadline passed after {} attempt(s)",
                    info.request.method, inner.service, tracker.attempts
                ));
                let mut endpoint = String::new();
                // Abandoned mid-flight: each may have run (the status says so).
                tracker.note(&status);
                for attempt in running.drain(..) {
                    endpoint = attempt.guard.endpoint.clone();
                    attempt.guard.finish(&Err(status.clone()));
                }
                return Err((status, endpoint));
            }
        }
    }
}

/// Resolves with the index and result of the first running attempt to end.
fn poll_any<T: Transport>(
    running: &mut [Running<T>],
) -> impl Future<Output = (usize, Result<Reply, Status>)> + '_ {
    poll_fn(move |cx| {
        for (index, attempt) in running.iter_mut().enumerate() {
            if let Poll::Ready(result) = Pin::new(&mut attempt.call).poll(cx) {
                return Poll::Ready((index, result));
            }
        }
        Poll::Pending
    })
}

/// Sleeps until `at`, or for ever.
async fn maybe_sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => pending().await,
    }
}
