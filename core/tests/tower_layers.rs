//! tower on both ends, over real loopback TCP: tower's own server layers
//! (`TimeoutLayer`, `ConcurrencyLimitLayer`, `LoadShedLayer`) stack on
//! `Server::layer` with no adapter and each changes what a caller sees; tower's
//! `Timeout` and `Retry` wrap a squall client (`Channel`, `Pool`) as any
//! `tower::Service`.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use squall::client::{OutgoingRequest, Reply};
use squall::server::middleware::{Metrics, Rejection};
use squall::{
    Channel, ChannelConfig, Code, Codec, Context, Pool, Router, Server, ServiceClient, Status, Tcp,
};
use tokio::sync::Semaphore;
use tower::limit::ConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower::timeout::TimeoutLayer;
use tower::ServiceExt as _;

/// Long enough never to fire on a healthy build on a loaded machine; a hang
/// fails the test with a message instead of stalling the suite.
const HANG_GUARD: Duration = Duration::from_secs(20);

async fn guard<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(HANG_GUARD, future)
        .await
        .unwrap_or_else(|_| panic!("hang guard: {what} did not finish within {HANG_GUARD:?}"))
}

/// Polls `condition` every 5 ms, at most [`HANG_GUARD`] long.
async fn wait_until(what: &str, condition: impl Fn() -> bool) {
    guard(what, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// Serves `server` on an ephemeral loopback port; returns its address.
async fn start(server: Server) -> String {
    let listener = Tcp.bind("127.0.0.1:0").await.expect("bind loopback");
    let addr = listener.local_addr().expect("bound address").to_string();
    tokio::spawn(server.serve(listener, std::future::pending()));
    addr
}

async fn connect(addr: &str) -> Channel {
    guard(
        "connect",
        Channel::connect(&Tcp, addr, ChannelConfig::default()),
    )
    .await
    .expect("connect to the test server")
}

/// A JSON request for `method` with `args`, bounded by `timeout`.
fn request<A: serde::Serialize>(method: &str, args: &A, timeout: Duration) -> OutgoingRequest {
    let body = Codec::Json.encode(args).expect("encode args");
    OutgoingRequest::new(method, Codec::Json, body).with_timeout(timeout)
}

fn decode<R: serde::de::DeserializeOwned>(reply: Reply) -> R {
    reply.codec.decode(&reply.body).expect("decode reply")
}

/// `Gate.Wait` counts its runs, then waits for a permit of `gate`;
/// `Gate.Pass` counts its runs and answers at once; `Slow.Sleep` sleeps 30 s.
fn gated_router(gate: Arc<Semaphore>, waits: Arc<AtomicU64>, passes: Arc<AtomicU64>) -> Router {
    Router::new()
        .route("Gate.Wait", move |_ctx: Context, (): ()| {
            let gate = Arc::clone(&gate);
            let waits = Arc::clone(&waits);
            async move {
                waits.fetch_add(1, Ordering::SeqCst);
                let permit = gate
                    .acquire()
                    .await
                    .map_err(|_| Status::internal("closed"))?;
                permit.forget();
                Ok::<(), Status>(())
            }
        })
        .route("Gate.Pass", move |_ctx: Context, n: u64| {
            let passes = Arc::clone(&passes);
            async move {
                passes.fetch_add(1, Ordering::SeqCst);
                Ok::<u64, Status>(n)
            }
        })
        .route("Slow.Sleep", |_ctx: Context, (): ()| async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok::<(), Status>(())
        })
}

fn counters() -> (Arc<Semaphore>, Arc<AtomicU64>, Arc<AtomicU64>) {
    (
        Arc::new(Semaphore::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    )
}

#[tokio::test]
async fn towers_timeout_layer_on_the_server_ends_a_slow_handler_with_deadline_exceeded() {
    // Proves Server::layer accepts tower's TimeoutLayer (error BoxError) and
    // maps its Elapsed to DeadlineExceeded, may have executed: the handler
    // sleeps 30 s, the layer allows 100 ms, the caller would wait 15 s.
    let (gate, waits, passes) = counters();
    let server = Server::new(gated_router(gate, waits, passes))
        .layer(TimeoutLayer::new(Duration::from_millis(100)));
    let channel = connect(&start(server).await).await;

    let status = guard(
        "a call the timeout layer ends",
        channel.oneshot(request("Slow.Sleep", &(), Duration::from_secs(15))),
    )
    .await
    .expect_err("the timeout layer ends the call");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status}");
    assert!(status.may_have_executed(), "{status}");
    assert!(status.message().contains("timeout layer"), "{status}");
}

#[tokio::test]
async fn towers_load_shed_over_a_concurrency_limit_sheds_the_call_over_the_limit_unexecuted() {
    // Proves tower's ConcurrencyLimitLayer and LoadShedLayer stack on the
    // server: with a limit of 1 and one call held inside its handler, a second
    // call is shed at once with ResourceExhausted, not executed (its handler
    // never ran), and once the first finishes a new call is admitted. Our
    // Metrics, above them, counts the shed call as a load-shed rejection.
    let (gate, waits, passes) = counters();
    let router = gated_router(Arc::clone(&gate), Arc::clone(&waits), Arc::clone(&passes));
    let metrics = Metrics::new(&router);
    let server = Server::new(router)
        .layer(ConcurrencyLimitLayer::new(1))
        .layer(LoadShedLayer::new())
        .layer(metrics.layer());
    let channel = connect(&start(server).await).await;

    let held = tokio::spawn(channel.clone().oneshot(request(
        "Gate.Wait",
        &(),
        Duration::from_secs(15),
    )));
    wait_until("the first call to run", || {
        waits.load(Ordering::SeqCst) == 1
    })
    .await;

    let shed = guard(
        "a call over the limit",
        channel
            .clone()
            .oneshot(request("Gate.Pass", &1u64, Duration::from_secs(15))),
    )
    .await
    .expect_err("the call over the limit is shed");
    assert_eq!(shed.code(), Code::ResourceExhausted, "{shed}");
    assert!(!shed.may_have_executed(), "{shed}");
    assert!(shed.is_retryable(), "{shed}");
    assert_eq!(
        passes.load(Ordering::SeqCst),
        0,
        "the shed handler never ran"
    );

    gate.add_permits(1);
    guard("the held call", held)
        .await
        .expect("task")
        .expect("the held call succeeds once released");
    let admitted: u64 = decode(
        guard(
            "a call after the first finished",
            channel.oneshot(request("Gate.Pass", &2u64, Duration::from_secs(15))),
        )
        .await
        .expect("admitted once the slot is free"),
    );
    assert_eq!(admitted, 2);
    assert_eq!(passes.load(Ordering::SeqCst), 1);
    let counted = metrics.snapshot()["Gate.Pass"].rejected.clone();
    assert_eq!(
        counted.into_iter().collect::<Vec<_>>(),
        [(Rejection::LoadShed, 1)]
    );
}

#[tokio::test]
async fn towers_concurrency_limit_alone_makes_a_second_call_wait_for_the_first() {
    // Proves ConcurrencyLimitLayer has effect on its own: with a limit of 1
    // and one call held, a second call (whose handler would answer at once)
    // does not run; it waits until its own 1 s deadline ends it. Without the
    // limit it would be answered in about a millisecond.
    let (gate, waits, passes) = counters();
    let server = Server::new(gated_router(
        Arc::clone(&gate),
        Arc::clone(&waits),
        Arc::clone(&passes),
    ))
    .layer(ConcurrencyLimitLayer::new(1));
    let channel = connect(&start(server).await).await;

    let held = tokio::spawn(channel.clone().oneshot(request(
        "Gate.Wait",
        &(),
        Duration::from_secs(15),
    )));
    wait_until("the first call to run", || {
        waits.load(Ordering::SeqCst) == 1
    })
    .await;
    let waited = guard(
        "a call behind the limit",
        channel
            .clone()
            .oneshot(request("Gate.Pass", &1u64, Duration::from_secs(1))),
    )
    .await
    .expect_err("the second call waits behind the limit until its deadline");
    assert_eq!(waited.code(), Code::DeadlineExceeded, "{waited}");
    assert_eq!(passes.load(Ordering::SeqCst), 0, "its handler never ran");

    gate.add_permits(1);
    guard("the held call", held)
        .await
        .expect("task")
        .expect("the held call succeeds once released");
}

#[tokio::test]
async fn towers_timeout_wraps_a_channel_and_ends_a_call_the_server_is_still_running() {
    // Proves Channel is a tower::Service: tower's Timeout (100 ms) ends a call
    // the server would run for 30 s, with tower's Elapsed error, while the
    // call's own budget (15 s) is far away.
    let (gate, waits, passes) = counters();
    let addr = start(Server::new(gated_router(gate, waits, passes))).await;
    let channel = connect(&addr).await;
    let timeout = tower::timeout::Timeout::new(channel.clone(), Duration::from_millis(100));

    let error = guard(
        "a call tower's timeout ends",
        timeout.oneshot(request("Slow.Sleep", &(), Duration::from_secs(15))),
    )
    .await
    .expect_err("tower's timeout ends the call");
    assert!(
        error.is::<tower::timeout::error::Elapsed>(),
        "expected Elapsed, got {error}"
    );
    // The channel is still fine for the next call.
    let answer: u64 = decode(
        guard(
            "a call after the timeout",
            channel.oneshot(request("Gate.Pass", &5u64, Duration::from_secs(15))),
        )
        .await
        .expect("the channel still works"),
    );
    assert_eq!(answer, 5);
}

/// Retries a call while its status is retryable and either it did not execute
/// or the request is idempotent, at most `attempts_left` more times.
#[derive(Clone, Debug)]
struct RetrySafe {
    /// Retries still allowed.
    attempts_left: u32,
}

impl tower::retry::Policy<OutgoingRequest, Reply, Status> for RetrySafe {
    type Future = std::future::Ready<()>;

    fn retry(
        &mut self,
        request: &mut OutgoingRequest,
        result: &mut Result<Reply, Status>,
    ) -> Option<Self::Future> {
        let status = result.as_ref().err()?;
        let safe = !status.may_have_executed() || request.idempotent;
        if self.attempts_left == 0 || !status.is_retryable() || !safe {
            return None;
        }
        self.attempts_left -= 1;
        Some(std::future::ready(()))
    }

    fn clone_request(&mut self, request: &OutgoingRequest) -> Option<OutgoingRequest> {
        Some(request.clone())
    }
}

/// `Flaky.Call` fails with Unavailable (not executed) until it has been tried
/// `failures` times, then answers its argument; `Flaky.Broken` always fails
/// with Unavailable, may have executed. Both count their attempts.
fn flaky_router(failures: u64, attempts: Arc<AtomicU64>) -> Router {
    let broken_attempts = Arc::clone(&attempts);
    Router::new()
        .route("Flaky.Call", move |_ctx: Context, n: u64| {
            let attempts = Arc::clone(&attempts);
            async move {
                if attempts.fetch_add(1, Ordering::SeqCst) < failures {
                    return Err(Status::unavailable("not yet").not_executed());
                }
                Ok::<u64, Status>(n)
            }
        })
        .route("Flaky.Broken", move |_ctx: Context, (): ()| {
            let attempts = Arc::clone(&broken_attempts);
            async move {
                attempts.fetch_add(1, Ordering::SeqCst);
                Err::<(), Status>(Status::unavailable("half done"))
            }
        })
}

#[tokio::test]
async fn towers_retry_wraps_a_pool_and_retries_only_what_is_safe() {
    // Proves Pool is a tower::Service that tower's Retry can drive with a
    // policy reading squall's Status: a call failing twice with a retryable,
    // not-executed status succeeds on the third attempt; a failure that may
    // have executed on a non-idempotent call is not retried (one attempt).
    let attempts = Arc::new(AtomicU64::new(0));
    let addr = start(Server::new(flaky_router(2, Arc::clone(&attempts)))).await;
    let pool = Pool::new(Tcp, &addr, ChannelConfig::default(), 1);
    let retry = tower::retry::Retry::new(RetrySafe { attempts_left: 3 }, pool);

    let answer: u64 = decode(
        guard(
            "a retried call",
            retry
                .clone()
                .oneshot(request("Flaky.Call", &9u64, Duration::from_secs(15))),
        )
        .await
        .expect("the third attempt succeeds"),
    );
    assert_eq!(answer, 9);
    assert_eq!(attempts.load(Ordering::SeqCst), 3);

    attempts.store(0, Ordering::SeqCst);
    let status = guard(
        "a call that may have executed",
        retry.oneshot(request("Flaky.Broken", &(), Duration::from_secs(15))),
    )
    .await
    .expect_err("the broken call fails");
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        1,
        "a non-idempotent call that may have executed is not re-sent"
    );
}

#[tokio::test]
async fn the_typed_client_calls_through_a_tower_stack_with_tower_caller() {
    // Proves TowerCaller turns a tower stack over a Pool back into a Caller:
    // the typed Client's call goes through tower's Retry (three attempts, the
    // first two refused unexecuted) and decodes the reply.
    let attempts = Arc::new(AtomicU64::new(0));
    let addr = start(Server::new(flaky_router(2, Arc::clone(&attempts)))).await;
    let pool = Pool::new(Tcp, &addr, ChannelConfig::default(), 1);
    let stack = tower::retry::Retry::new(RetrySafe { attempts_left: 3 }, pool);
    let client = squall::Client::new(squall::client::TowerCaller::new(stack));
    let answer: u64 = guard(
        "a typed call through tower",
        client.call("Flaky.Call", &11u64),
    )
    .await
    .expect("the third attempt succeeds");
    assert_eq!(answer, 11);
    assert_eq!(attempts.load(Ordering::SeqCst), 3);
}

#[test]
fn every_caller_is_a_tower_service_of_outgoing_requests() {
    // Proves at compile time that the three callers fit any tower middleware
    // expecting Service<OutgoingRequest, Response = Reply, Error = Status>.
    fn is_service<S: tower::Service<OutgoingRequest, Response = Reply, Error = Status>>() {}
    is_service::<Channel>();
    is_service::<Pool<Tcp>>();
    is_service::<ServiceClient<Tcp>>();
}
