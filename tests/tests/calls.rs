//! Calls over real loopback TCP: many concurrent calls multiplexed on one
//! connection with replies out of order, every status a caller can see, both
//! payload codecs, and deadlines (timeouts, cancellation of the server-side
//! handler, and propagation of the remaining budget through a nested call).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{guard, TestServer};
use squall::client::OutgoingRequest;
use squall::server::ServerConfig;
use squall::{CallOptions, Caller, Code, Codec, Context, Router, Status};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// The sleep of call `n`: pseudo-random in 0..20 ms, so replies come back in a
/// different order from the requests.
fn scrambled_delay(n: u64) -> Duration {
    Duration::from_millis((n * 7919) % 20)
}

/// A router whose `Echo.Slow` answers `n` after [`scrambled_delay`]`(n)`.
fn echo_router() -> Router {
    Router::new()
        .route("Echo.Slow", |_ctx: Context, n: u64| async move {
            tokio::time::sleep(scrambled_delay(n)).await;
            Ok::<u64, Status>(n)
        })
        .route("Echo.Now", |_ctx: Context, n: u64| async move {
            Ok::<u64, Status>(n)
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_concurrent_calls_on_one_channel_each_get_their_own_reply() {
    // Proves multiplexing: 500 calls share one TCP connection, the server
    // finishes them in a scrambled order, and every caller still receives the
    // echo of its own argument. Also proves `go`: a call started before the
    // others and awaited after all of them completes with its own reply.
    let server = TestServer::start_router(echo_router(), ServerConfig::default()).await;
    let client = common::client(&server.addr).await;
    let early = client.go::<_, u64>("Echo.Slow", &1_000_001);

    // Completion order, recorded by the callers, to show replies were reordered.
    let completion_order = Arc::new(Mutex::new(Vec::new()));
    let mut calls = JoinSet::new();
    for n in 0..500u64 {
        let client = client.clone();
        let completion_order = Arc::clone(&completion_order);
        calls.spawn(async move {
            let reply: Result<u64, Status> = client.call("Echo.Slow", &n).await;
            completion_order
                .lock()
                .expect("no test task panics while holding the lock")
                .push(n);
            (n, reply)
        });
    }
    let mut answered = 0;
    while let Some(joined) = guard("500 concurrent calls", calls.join_next()).await {
        let (n, reply) = joined.expect("caller task does not panic");
        assert_eq!(reply, Ok(n), "call {n} received someone else's reply");
        answered += 1;
    }
    assert_eq!(answered, 500);
    assert_eq!(
        client.caller().calls_started(),
        501,
        "every call went over the one channel"
    );

    let order = completion_order.lock().expect("lock").clone();
    let inversions = order.windows(2).filter(|pair| pair[0] > pair[1]).count();
    assert!(
        inversions > 0,
        "replies were expected out of request order (handlers sleep 0..20 ms)"
    );

    let early_reply = guard("the early `go` call", early).await;
    assert_eq!(early_reply, Ok(1_000_001));
    server.shutdown().await;
}

/// A router for status tests.
fn status_router() -> Router {
    Router::new()
        .route("Math.Add", |_ctx: Context, (a, b): (i64, i64)| async move {
            Ok::<i64, Status>(a + b)
        })
        .route("Math.Refuse", |_ctx: Context, (): ()| async move {
            Err::<(), Status>(Status::new(
                Code::FailedPrecondition,
                "the ledger is closed for the day",
            ))
        })
        .route("Codec.Which", |ctx: Context, (): ()| async move {
            Ok::<String, Status>(format!("{:?}", ctx.codec()))
        })
}

#[tokio::test]
async fn unknown_method_is_not_found_and_not_executed() {
    // Proves an unknown method is answered (not a dropped connection) with
    // NotFound, marked not executed so it is safe to retry elsewhere, and that
    // the connection stays usable.
    let server = TestServer::start_router(status_router(), ServerConfig::default()).await;
    let client = common::client(&server.addr).await;
    let error = guard(
        "unknown method",
        client.call::<_, i64>("Math.Subtract", &(1, 2)),
    )
    .await
    .expect_err("an unknown method fails");
    assert_eq!(error.code(), Code::NotFound, "{error}");
    assert!(!error.may_have_executed(), "{error}");
    assert!(error.message().contains("Math.Subtract"), "{error}");
    let sum: Result<i64, Status> = guard("a call after it", client.call("Math.Add", &(1, 2))).await;
    assert_eq!(sum, Ok(3));
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_method_replies_do_not_list_the_registered_methods() {
    // Proves finding 8's disclosure is gone: a caller probing with an unknown
    // name learns only that the name is unknown, not the server's other
    // methods (before the fix the reply listed every registered method).
    let server = TestServer::start_router(status_router(), ServerConfig::default()).await;
    let client = common::client(&server.addr).await;
    let error = guard(
        "unknown method",
        client.call::<_, ()>("Probe.Anything", &()),
    )
    .await
    .expect_err("an unknown method fails");
    assert_eq!(error.code(), Code::NotFound, "{error}");
    assert_eq!(error.message(), "unknown method \"Probe.Anything\"");
    server.shutdown().await;
}

#[tokio::test]
async fn a_router_that_opts_in_lists_its_methods_in_unknown_method_replies() {
    // Proves the debugging option: `Router::list_methods_in_errors` puts the
    // registered methods back into the reply, for a server you own.
    let router = status_router().list_methods_in_errors();
    let server = TestServer::start_router(router, ServerConfig::default()).await;
    let client = common::client(&server.addr).await;
    let error = guard(
        "unknown method",
        client.call::<_, ()>("Probe.Anything", &()),
    )
    .await
    .expect_err("an unknown method fails");
    assert_eq!(error.code(), Code::NotFound, "{error}");
    assert!(error.message().contains("registered: "), "{error}");
    assert!(error.message().contains("Math.Add"), "{error}");
    server.shutdown().await;
}

#[tokio::test]
async fn arguments_of_the_wrong_type_are_invalid_argument_and_not_executed() {
    // Proves a request whose body does not decode as the handler's argument type
    // is InvalidArgument, and marked not executed (the handler never ran).
    let server = TestServer::start_router(status_router(), ServerConfig::default()).await;
    let client = common::client(&server.addr).await;
    for codec in [Codec::Json, Codec::MessagePack] {
        let error = guard(
            "a call with the wrong argument type",
            client.call_with::<_, i64>(
                "Math.Add",
                &"not a pair of integers",
                CallOptions::new().codec(codec),
            ),
        )
        .await
        .expect_err("a string is not an (i64, i64)");
        assert_eq!(error.code(), Code::InvalidArgument, "{codec:?}: {error}");
        assert!(!error.may_have_executed(), "{codec:?}: {error}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_status_returned_by_a_handler_reaches_the_caller_unchanged() {
    // Proves a handler's own error crosses the wire with its code and message,
    // and is marked as possibly executed (the handler did run).
    let server = TestServer::start_router(status_router(), ServerConfig::default()).await;
    let client = common::client(&server.addr).await;
    let error = guard("Math.Refuse", client.call::<_, ()>("Math.Refuse", &()))
        .await
        .expect_err("the handler refuses");
    assert_eq!(error.code(), Code::FailedPrecondition, "{error}");
    assert_eq!(error.message(), "the ledger is closed for the day");
    assert!(error.may_have_executed(), "{error}");
    server.shutdown().await;
}

#[tokio::test]
async fn json_and_messagepack_both_work_and_the_server_answers_in_the_codec_asked() {
    // Proves both payload codecs carry a call end to end; that a per-call codec
    // overrides the client's default; and that the server decodes in and answers
    // in the codec of each request (the handler reports `ctx.codec()`, and the raw
    // reply frame is tagged with, and parses as, that codec).
    let server = TestServer::start_router(status_router(), ServerConfig::default()).await;
    let channel = common::connect(&server.addr).await;
    let json_client = squall::Client::new(channel.clone()).with_codec(Codec::Json);
    let msgpack_client = squall::Client::new(channel.clone()).with_codec(Codec::MessagePack);

    let sum: Result<i64, Status> = guard("JSON call", json_client.call("Math.Add", &(2, 3))).await;
    assert_eq!(sum, Ok(5));
    let sum: Result<i64, Status> =
        guard("MessagePack call", msgpack_client.call("Math.Add", &(4, 5))).await;
    assert_eq!(sum, Ok(9));

    let seen: Result<String, Status> =
        guard("default codec", json_client.call("Codec.Which", &())).await;
    assert_eq!(seen.as_deref(), Ok("Json"));
    let seen: Result<String, Status> = guard(
        "per-call override",
        json_client.call_with(
            "Codec.Which",
            &(),
            CallOptions::new().codec(Codec::MessagePack),
        ),
    )
    .await;
    assert_eq!(seen.as_deref(), Ok("MessagePack"));
    let seen: Result<String, Status> = guard(
        "per-call override",
        msgpack_client.call_with("Codec.Which", &(), CallOptions::new().codec(Codec::Json)),
    )
    .await;
    assert_eq!(seen.as_deref(), Ok("Json"));

    // Below the typed client: the reply frame itself is in the codec asked.
    let request = OutgoingRequest {
        method: "Math.Add".to_owned(),
        codec: Codec::Json,
        body: Bytes::from_static(b"[20,22]"),
        metadata: Vec::new(),
        timeout: Some(common::HANG_GUARD),
        idempotent: false,
    };
    let reply = guard("raw JSON call", channel.call(request))
        .await
        .expect("raw JSON call succeeds");
    assert_eq!(reply.codec, Codec::Json);
    assert_eq!(&reply.body[..], b"42", "the reply body is JSON text");
    server.shutdown().await;
}

/// Sends `completed` on the channel when dropped: observes whether a handler's
/// future was dropped before it finished (cancelled) or after.
struct DropProbe {
    /// Where the observation goes.
    tx: mpsc::UnboundedSender<bool>,
    /// Set by the handler when it runs to completion.
    completed: bool,
}

impl Drop for DropProbe {
    fn drop(&mut self) {
        let _ = self.tx.send(self.completed);
    }
}

/// `Slow.Forever` sleeps 60 s (far past any hang guard) holding a [`DropProbe`];
/// `started` receives a message when each call begins.
fn forever_router(
    dropped: mpsc::UnboundedSender<bool>,
    started: mpsc::UnboundedSender<()>,
) -> Router {
    Router::new().route("Slow.Forever", move |_ctx: Context, (): ()| {
        let dropped = dropped.clone();
        let started = started.clone();
        async move {
            let mut probe = DropProbe {
                tx: dropped,
                completed: false,
            };
            let _ = started.send(());
            tokio::time::sleep(Duration::from_secs(60)).await;
            probe.completed = true;
            Ok::<(), Status>(())
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_call_is_deadline_exceeded_and_its_server_handler_is_cancelled() {
    // Proves a call bounded by a 100 ms timeout fails with DeadlineExceeded while
    // its handler sleeps for a minute, and that the server drops the handler's
    // future (it is cancelled, not left running) long before it would finish.
    let (dropped_tx, mut dropped) = mpsc::unbounded_channel();
    let (started_tx, _started) = mpsc::unbounded_channel();
    let server = TestServer::start_router(
        forever_router(dropped_tx, started_tx),
        ServerConfig::default(),
    )
    .await;
    let client = common::client(&server.addr).await;
    let error = guard(
        "a call with a 100 ms timeout",
        client.call_with::<_, ()>(
            "Slow.Forever",
            &(),
            CallOptions::new().timeout(Duration::from_millis(100)),
        ),
    )
    .await
    .expect_err("the handler never answers in time");
    assert_eq!(error.code(), Code::DeadlineExceeded, "{error}");
    let completed = guard("the handler being dropped", dropped.recv())
        .await
        .expect("the probe reports its drop");
    assert!(!completed, "the handler was dropped before it finished");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_go_handle_cancels_the_server_handler() {
    // Proves cancellation without any deadline: dropping the handle of a call
    // with no timeout sends a cancel, and the server drops the running handler.
    let (dropped_tx, mut dropped) = mpsc::unbounded_channel();
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let server = TestServer::start_router(
        forever_router(dropped_tx, started_tx),
        ServerConfig::default(),
    )
    .await;
    let client = common::client(&server.addr).await.with_timeout(None);
    let handle = client.go::<_, ()>("Slow.Forever", &());
    guard("the handler starting", started.recv())
        .await
        .expect("the handler signals its start");
    drop(handle);
    let completed = guard("the handler being dropped", dropped.recv())
        .await
        .expect("the probe reports its drop");
    assert!(!completed, "the handler was dropped before it finished");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nested_call_inherits_the_remaining_deadline_of_its_handler() {
    // Proves deadline propagation across two servers: the outer handler waits
    // 300 ms, then calls the inner server through a client that has no timeout of
    // its own. The inner handler must see a deadline, and its remaining budget
    // must be at most the outer budget minus the 300 ms already spent.
    let outer_budget = Duration::from_secs(5);
    let spent_before_nested_call = Duration::from_millis(300);

    let inner_router = Router::new().route("Inner.Remaining", |ctx: Context, (): ()| async move {
        Ok::<Option<u64>, Status>(ctx.remaining().map(|r| r.as_micros() as u64))
    });
    let inner = TestServer::start_router(inner_router, ServerConfig::default()).await;
    let inner_client = common::client(&inner.addr).await.with_timeout(None);

    let outer_router = Router::new().route("Outer.Relay", move |ctx: Context, (): ()| {
        let inner_client = inner_client.clone();
        async move {
            let outer_remaining = ctx.remaining().map(|r| r.as_micros() as u64);
            tokio::time::sleep(spent_before_nested_call).await;
            let inner_remaining: Option<u64> = inner_client.call("Inner.Remaining", &()).await?;
            Ok::<_, Status>((outer_remaining, inner_remaining))
        }
    });
    let outer = TestServer::start_router(outer_router, ServerConfig::default()).await;
    let client = common::client(&outer.addr).await;

    let (outer_remaining, inner_remaining): (Option<u64>, Option<u64>) = guard(
        "the nested call",
        client.call_with("Outer.Relay", &(), CallOptions::new().timeout(outer_budget)),
    )
    .await
    .expect("the nested call succeeds");
    let outer_remaining_us = outer_remaining.expect("the outer handler has a deadline");
    let inner_remaining_us =
        inner_remaining.expect("the inner handler inherited a deadline without being given one");
    let budget_us = outer_budget.as_micros() as u64;
    let spent_us = spent_before_nested_call.as_micros() as u64;
    assert!(
        outer_remaining_us <= budget_us,
        "outer saw {outer_remaining_us} µs"
    );
    assert!(
        inner_remaining_us <= outer_remaining_us - spent_us,
        "inner saw {inner_remaining_us} µs; outer had {outer_remaining_us} µs and spent {spent_us} µs first"
    );
    assert!(inner_remaining_us > 0, "the budget was not yet spent");
    outer.shutdown().await;
    inner.shutdown().await;
}

#[tokio::test]
async fn a_reply_of_the_wrong_type_is_an_internal_error_for_the_caller() {
    // Proves a reply that does not decode as the type the caller asked for
    // surfaces as Internal (not a panic, not a hang).
    let server = TestServer::start_router(echo_router(), ServerConfig::default()).await;
    let client = common::client(&server.addr).await;
    let error = guard(
        "a call decoding the wrong type",
        client.call::<_, String>("Echo.Now", &7u64),
    )
    .await
    .expect_err("a u64 is not a String");
    assert_eq!(error.code(), Code::Internal, "{error}");
    server.shutdown().await;
}
