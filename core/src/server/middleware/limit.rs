//! Admission limits that reject instead of queueing: a token-bucket rate limit
//! and a load shedder bounding calls in progress. A rejection is
//! `ResourceExhausted`, retryable and *not executed*.
//!
//! Why these are ours and not tower's (tower's `limit` and `load-shed` layers
//! also stack on [`Server`](crate::Server), and the tests show they work):
//!
//! - tower's `RateLimit` does not reject: over the rate its `poll_ready` waits
//!   for the next window. On a squall connection that wait stops the reader,
//!   so every call on that connection (and its cancels) stalls behind it;
//!   callers see latency rather than a refusal they can retry elsewhere, and
//!   [`Metrics`](super::Metrics) cannot count a rate-limit rejection.
//! - tower's `LoadShed` over `ConcurrencyLimit` sheds the same calls at first,
//!   but a service clone it shed stays queued for the next free slot, and the
//!   semaphore hands that slot to it even though it has no call to run: each
//!   connection that was shed once can hold a slot idle until its next
//!   request, so the server runs fewer calls than its bound while shedding
//!   others. Ours takes a slot only for a call in hand (the test
//!   `towers_shedder_keeps_a_freed_slot_for_the_clone_it_shed_and_ours_does_not`
//!   pins the difference, and fails once tower behaves like ours).

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower::Layer;

use super::{Inner, ResponseFuture};
use crate::server::{Request, Response};
use crate::status::Status;

/// How a rate-limit refusal's message ends: [`Metrics`](super::Metrics) tells
/// it from a load-shed one (both are `ResourceExhausted`) by it.
pub(super) const RATE_LIMITED: &str = "rate limit exceeded";

/// How a load-shed refusal's message ends, for the same reason.
pub(super) const SHED: &str = "shed";

/// A token bucket on tokio's clock (virtual in the simulation).
#[derive(Debug)]
struct Bucket {
    /// Tokens added per second.
    rate_per_sec: f64,
    /// Most tokens held (the burst).
    burst: f64,
    /// Tokens now.
    tokens: f64,
    /// When `tokens` was last brought up to date.
    updated: Option<Instant>,
}

impl Bucket {
    fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = self
            .updated
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        self.updated = Some(now);
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.rate_per_sec).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Adds [`RateLimit`]: ours rather than tower's `RateLimitLayer`, which delays
/// instead of refusing (see the module docs). At most `rate_per_sec` calls per second on average, with
/// bursts up to `burst`, shared by every connection of the server.
#[derive(Clone, Debug)]
pub struct RateLimitLayer {
    /// Shared by every service this layer creates.
    bucket: Arc<Mutex<Bucket>>,
}

impl RateLimitLayer {
    /// # Panics
    /// If `rate_per_sec` is not positive or `burst` is zero (programmer errors).
    pub fn new(rate_per_sec: f64, burst: u32) -> RateLimitLayer {
        assert!(
            rate_per_sec > 0.0 && burst > 0,
            "rate and burst must be positive"
        );
        RateLimitLayer {
            bucket: Arc::new(Mutex::new(Bucket {
                rate_per_sec,
                burst: f64::from(burst),
                tokens: f64::from(burst),
                updated: None,
            })),
        }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;
    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit {
            inner,
            bucket: Arc::clone(&self.bucket),
        }
    }
}

/// Rejects calls over the rate.
#[derive(Clone, Debug)]
pub struct RateLimit<S> {
    /// The wrapped service.
    inner: S,
    /// The shared bucket.
    bucket: Arc<Mutex<Bucket>>,
}

impl<S: Inner> tower::Service<Request> for RateLimit<S> {
    type Response = Response;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> ResponseFuture {
        let admitted = self
            .bucket
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .try_take(Instant::now());
        if !admitted {
            let status =
                Status::resource_exhausted(format!("{}: {RATE_LIMITED}", request.ctx.method()));
            return Box::pin(std::future::ready(Ok(Response::error(
                status.not_executed(),
            ))));
        }
        Box::pin(self.inner.call(request))
    }
}

/// Adds [`LoadShed`]: ours rather than tower's `LoadShed` over
/// `ConcurrencyLimit`, which can park freed slots (see the module docs). At most `max_in_progress` calls run at once across the
/// server; the rest are shed at once rather than queued (queueing under overload
/// only adds latency to calls that will time out anyway).
#[derive(Clone, Debug)]
pub struct LoadShedLayer {
    /// Calls running now, shared by every connection.
    in_progress: Arc<AtomicUsize>,
    /// The bound.
    max_in_progress: usize,
}

impl LoadShedLayer {
    /// A shedder admitting `max_in_progress` concurrent calls.
    pub fn new(max_in_progress: usize) -> LoadShedLayer {
        LoadShedLayer {
            in_progress: Arc::new(AtomicUsize::new(0)),
            max_in_progress,
        }
    }

    /// Calls running now.
    pub fn in_progress(&self) -> usize {
        self.in_progress.load(Ordering::Relaxed)
    }
}

impl<S> Layer<S> for LoadShedLayer {
    type Service = LoadShed<S>;
    fn layer(&self, inner: S) -> LoadShed<S> {
        LoadShed {
            inner,
            in_progress: Arc::clone(&self.in_progress),
            max_in_progress: self.max_in_progress,
        }
    }
}

/// Sheds calls over the concurrency bound.
#[derive(Clone, Debug)]
pub struct LoadShed<S> {
    /// The wrapped service.
    inner: S,
    /// Calls running now.
    in_progress: Arc<AtomicUsize>,
    /// The bound.
    max_in_progress: usize,
}

/// Decrements the in-progress count however the call ends (even if aborted).
struct InProgress(Arc<AtomicUsize>);

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<S: Inner> tower::Service<Request> for LoadShed<S> {
    type Response = Response;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> ResponseFuture {
        let previous = self.in_progress.fetch_add(1, Ordering::AcqRel);
        let guard = InProgress(Arc::clone(&self.in_progress));
        if previous >= self.max_in_progress {
            let status = Status::resource_exhausted(format!(
                "{}: server overloaded ({} calls in progress), {SHED}",
                request.ctx.method(),
                self.max_in_progress
            ));
            return Box::pin(std::future::ready(Ok(Response::error(
                status.not_executed(),
            ))));
        }
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await;
            drop(guard);
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use bytes::Bytes;
    use tower::{Service, ServiceBuilder, ServiceExt};

    use super::*;
    use crate::context::Context;
    use crate::protocol::{Codec, Metadata};

    fn request() -> Request {
        let peer: SocketAddr = "127.0.0.1:1".parse().expect("an address");
        let ctx = Context::new(
            "A.B".to_owned(),
            1,
            peer,
            None,
            Metadata::default(),
            Codec::Json,
            false,
        );
        Request {
            ctx,
            body: Bytes::new(),
        }
    }

    /// A handler that waits for a permit of `gate`, then answers.
    fn gated(
        gate: &Arc<tokio::sync::Semaphore>,
    ) -> impl tower::Service<
        Request,
        Response = Response,
        Error = Infallible,
        Future = impl std::future::Future<Output = Result<Response, Infallible>> + Send,
    > + Clone
           + Send
           + 'static {
        let gate = Arc::clone(gate);
        tower::service_fn(move |_request: Request| {
            let gate = Arc::clone(&gate);
            async move {
                if let Ok(permit) = gate.acquire().await {
                    permit.forget();
                }
                Ok::<Response, Infallible>(Response {
                    result: Ok(Bytes::new()),
                })
            }
        })
    }

    #[tokio::test]
    async fn towers_shedder_keeps_a_freed_slot_for_the_clone_it_shed_and_ours_does_not() {
        // Why LoadShedLayer is ours (see the module docs): with room for one
        // call, clone `a` runs one, clone `b` is shed, `a`'s call finishes;
        // then clone `c` (another connection) brings a call. tower sheds it:
        // the freed slot went to `b`, which has nothing to run. Ours admits it.
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let tower_stack = ServiceBuilder::new()
            .load_shed()
            .concurrency_limit(1)
            .service(gated(&gate));
        let (mut a, mut b, mut c) = (tower_stack.clone(), tower_stack.clone(), tower_stack);
        let running = a.ready().await.expect("ready").call(request());
        let shed = b.ready().await.expect("ready").call(request()).await;
        assert!(shed.is_err(), "b is shed while a's call runs");
        gate.add_permits(1);
        running.await.expect("a's call finishes");
        let after = c.ready().await.expect("ready").call(request()).await;
        assert!(
            after.is_err(),
            "tower now admits c: its shedder no longer parks slots, so LoadShedLayer \
             could become tower's (update the module docs)"
        );

        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let ours = LoadShedLayer::new(1);
        let stack = ours.layer(gated(&gate));
        let (mut a, mut b, mut c) = (stack.clone(), stack.clone(), stack);
        let running = a.ready().await.expect("ready").call(request());
        let Ok(shed) = b.ready().await.expect("ready").call(request()).await;
        assert!(shed.result.is_err(), "b is shed while a's call runs");
        gate.add_permits(2);
        let Ok(finished) = running.await;
        assert!(finished.result.is_ok());
        let Ok(after) = c.ready().await.expect("ready").call(request()).await;
        assert!(after.result.is_ok(), "ours admits c once the slot is free");
        assert_eq!(ours.in_progress(), 0);
    }
}
