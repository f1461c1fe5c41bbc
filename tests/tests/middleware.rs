//! The built-in middleware over real loopback TCP: authentication, metrics,
//! rate limiting and load shedding. Every rejection must reach the caller as a
//! status marked *not executed* — the handler provably never ran, which is what
//! makes retrying elsewhere safe — and the handler-run counters confirm it.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::{guard, wait_until, TestServer};
use squall::server::middleware::{
    AuthLayer, LoadShedLayer, Metrics, RateLimitLayer, Rejection, UNKNOWN_METHOD,
};
use squall::{CallOptions, Code, Context, Router, Server, Status};
use tokio::sync::Semaphore;

/// `Echo.Echo` answers its argument and counts its runs in `runs`;
/// `Echo.Refuse` fails with InvalidArgument.
fn counting_router(runs: Arc<AtomicU64>) -> Router {
    Router::new()
        .route("Echo.Echo", move |_ctx: Context, n: u64| {
            let runs = Arc::clone(&runs);
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok::<u64, Status>(n)
            }
        })
        .route("Echo.Refuse", |_ctx: Context, (): ()| async move {
            Err::<(), Status>(Status::invalid_argument("refused on purpose"))
        })
}

#[tokio::test]
async fn auth_rejects_a_missing_or_wrong_token_unexecuted_and_accepts_the_right_one() {
    // Proves AuthLayer::tokens: no `authorization` metadata and a wrong token are
    // each Unauthenticated, not executed and not retryable, and the handler does
    // not run; the right token is let through.
    let runs = Arc::new(AtomicU64::new(0));
    let server = Server::new(counting_router(Arc::clone(&runs)))
        .layer(AuthLayer::tokens(["s3cret".to_owned()]));
    let server = TestServer::start(server).await;
    let client = common::client(&server.addr).await;

    let missing = guard(
        "a call without a token",
        client.call::<_, u64>("Echo.Echo", &1u64),
    )
    .await
    .expect_err("no token is rejected");
    let wrong = guard(
        "a call with a wrong token",
        client.call_with::<_, u64>(
            "Echo.Echo",
            &2u64,
            CallOptions::new().metadata("authorization", "guess"),
        ),
    )
    .await
    .expect_err("a wrong token is rejected");
    for (what, error) in [("missing", &missing), ("wrong", &wrong)] {
        assert_eq!(error.code(), Code::Unauthenticated, "{what}: {error}");
        assert!(!error.may_have_executed(), "{what}: {error}");
        assert!(!error.is_retryable(), "{what}: {error}");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 0, "rejected calls never ran");

    let accepted: Result<u64, Status> = guard(
        "a call with the right token",
        client.call_with(
            "Echo.Echo",
            &3u64,
            CallOptions::new().metadata("authorization", "s3cret"),
        ),
    )
    .await;
    assert_eq!(accepted, Ok(3));
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn metrics_count_finished_calls_by_code_per_method() {
    // Proves MetricsLayer records each call under its method with its outcome
    // code: successes, handler errors and unknown methods (under `unknown`), with a
    // latency summary.
    let runs = Arc::new(AtomicU64::new(0));
    let router = counting_router(Arc::clone(&runs));
    let metrics = Metrics::new(&router);
    let server = Server::new(router).layer(metrics.layer());
    let server = TestServer::start(server).await;
    let client = common::client(&server.addr).await;

    for n in 0..3u64 {
        let echoed: Result<u64, Status> = guard("Echo.Echo", client.call("Echo.Echo", &n)).await;
        assert_eq!(echoed, Ok(n));
    }
    for _ in 0..2 {
        let refused = guard("Echo.Refuse", client.call::<_, ()>("Echo.Refuse", &())).await;
        assert_eq!(refused.map_err(|s| s.code()), Err(Code::InvalidArgument));
    }
    let missing = guard(
        "an unknown method",
        client.call::<_, ()>("Echo.Missing", &()),
    )
    .await;
    assert_eq!(missing.map_err(|s| s.code()), Err(Code::NotFound));

    let snapshot = metrics.snapshot();
    let echo = &snapshot["Echo.Echo"];
    assert_eq!(echo.calls, 3);
    assert_eq!(echo.by_code.get(&Code::Ok), Some(&3));
    assert_eq!(echo.by_code.len(), 1, "{echo:?}");
    assert!(echo.latency_max_us >= echo.latency_p50_us, "{echo:?}");
    let refuse = &snapshot["Echo.Refuse"];
    assert_eq!(refuse.calls, 2);
    assert_eq!(refuse.by_code.get(&Code::InvalidArgument), Some(&2));
    let missing = &snapshot[UNKNOWN_METHOD];
    assert_eq!(missing.by_code.get(&Code::NotFound), Some(&1));
    assert_eq!(missing.rejected.get(&Rejection::UnknownMethod), Some(&1));
    assert_eq!(
        snapshot.len(),
        3,
        "one entry per registered method called, one for unknown names: {snapshot:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn rate_limit_rejects_calls_over_the_rate_unexecuted() {
    // Proves RateLimitLayer: with a burst of 3 and a refill of one token per
    // 1000 s (so no refill can happen during the test), exactly the first 3 calls
    // run and the next 2 are ResourceExhausted, not executed, and retryable.
    let runs = Arc::new(AtomicU64::new(0));
    let server =
        Server::new(counting_router(Arc::clone(&runs))).layer(RateLimitLayer::new(0.001, 3));
    let server = TestServer::start(server).await;
    let client = common::client(&server.addr).await;

    for n in 0..3u64 {
        let echoed: Result<u64, Status> =
            guard("a call within the burst", client.call("Echo.Echo", &n)).await;
        assert_eq!(echoed, Ok(n), "call {n} is within the burst");
    }
    for n in 3..5u64 {
        let error = guard(
            "a call over the rate",
            client.call::<_, u64>("Echo.Echo", &n),
        )
        .await
        .expect_err("the bucket is empty");
        assert_eq!(error.code(), Code::ResourceExhausted, "call {n}: {error}");
        assert!(!error.may_have_executed(), "call {n}: {error}");
        assert!(error.is_retryable(), "call {n}: {error}");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 3, "rejected calls never ran");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_shed_rejects_calls_over_the_concurrency_bound_unexecuted() {
    // Proves LoadShedLayer: with a bound of 2, while two calls are held inside
    // their handlers a third is shed at once with a not-executed
    // ResourceExhausted; once the two finish, a new call is admitted again.
    let entered = Arc::new(AtomicU64::new(0));
    let gate = Arc::new(Semaphore::new(0));
    let router = {
        let entered = Arc::clone(&entered);
        let gate = Arc::clone(&gate);
        Router::new().route("Gate.Pass", move |_ctx: Context, n: u64| {
            let entered = Arc::clone(&entered);
            let gate = Arc::clone(&gate);
            async move {
                entered.fetch_add(1, Ordering::SeqCst);
                let _permit = gate
                    .acquire()
                    .await
                    .map_err(|_| Status::internal("gate closed"))?;
                Ok::<u64, Status>(n)
            }
        })
    };
    let shedder = LoadShedLayer::new(2);
    let server = TestServer::start(Server::new(router).layer(shedder.clone())).await;
    let client = common::client(&server.addr).await;

    let first = client.go::<_, u64>("Gate.Pass", &1u64);
    let second = client.go::<_, u64>("Gate.Pass", &2u64);
    wait_until("two handlers held at the gate", || {
        entered.load(Ordering::SeqCst) == 2
    })
    .await;
    assert_eq!(shedder.in_progress(), 2);

    let error = guard(
        "a call over the bound",
        client.call::<_, u64>("Gate.Pass", &3u64),
    )
    .await
    .expect_err("a third concurrent call is shed");
    assert_eq!(error.code(), Code::ResourceExhausted, "{error}");
    assert!(!error.may_have_executed(), "{error}");
    assert_eq!(entered.load(Ordering::SeqCst), 2, "the shed call never ran");

    gate.add_permits(3);
    assert_eq!(guard("the first held call", first).await, Ok(1));
    assert_eq!(guard("the second held call", second).await, Ok(2));
    wait_until("the shedder seeing both calls end", || {
        shedder.in_progress() == 0
    })
    .await;
    let admitted: Result<u64, Status> =
        guard("a call under the bound", client.call("Gate.Pass", &4u64)).await;
    assert_eq!(admitted, Ok(4));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_auth_check_is_internal_and_the_connection_keeps_serving() {
    // Proves panic containment covers middleware, not only handlers (the
    // middleware module promises "a panic always becomes an Internal reply and
    // the server lives on"): an auth check that panics for one token gives that
    // caller Internal, and the same connection keeps serving other calls.
    let check = |token: Option<&str>, _ctx: &Context| match token {
        Some("panic") => panic!("auth backend bug"),
        _ => Ok(()),
    };
    let server =
        Server::new(counting_router(Arc::new(AtomicU64::new(0)))).layer(AuthLayer::new(check));
    let server = TestServer::start(server).await;
    let client = common::client(&server.addr).await;

    let error = guard(
        "a call whose auth check panics",
        client.call_with::<_, u64>(
            "Echo.Echo",
            &1u64,
            CallOptions::new().metadata("authorization", "panic"),
        ),
    )
    .await
    .expect_err("a panicking check fails the call");
    assert_eq!(error.code(), Code::Internal, "{error}");
    let echoed: Result<u64, Status> =
        guard("a call after the panic", client.call("Echo.Echo", &2u64)).await;
    assert_eq!(echoed, Ok(2), "the connection survived the panic");
    server.shutdown().await;
}
