//! MetricsLayer over real loopback TCP (issue 9, finding 7): its memory is
//! bounded by the router, whatever method names callers send, and every call is
//! counted once however it ends — replied, refused, panicked, dropped at its
//! deadline or cancelled.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{guard, wait_until, TestServer};
use squall::client::OutgoingRequest;
use squall::protocol::{encode_to_bytes, CodecId, Frame, FrameKind, Limits};
use squall::server::middleware::{
    LoadShedLayer, MethodSnapshot, Metrics, RateLimitLayer, Rejection, UNKNOWN_METHOD,
};
use squall::{Caller, Code, Codec, Context, Router, Server, Status};
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;

/// `Svc.Echo` answers its argument; `Svc.Panic` panics at once and
/// `Svc.PanicLater` after a sleep; `Svc.Hang` signals `started` and sleeps far
/// past any test.
fn router(started: Arc<Notify>) -> Router {
    Router::new()
        .route("Svc.Echo", |_ctx: Context, n: u64| async move {
            Ok::<u64, Status>(n)
        })
        .route("Svc.Panic", |_ctx: Context, (): ()| async move {
            if true {
                panic!("handler bug");
            }
            Ok::<(), Status>(())
        })
        .route("Svc.PanicLater", |_ctx: Context, (): ()| async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            if true {
                panic!("handler bug after an await");
            }
            Ok::<(), Status>(())
        })
        .route("Svc.Hang", move |_ctx: Context, (): ()| {
            let started = Arc::clone(&started);
            async move {
                started.notify_one();
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok::<(), Status>(())
            }
        })
}

/// A server for [`router`] behind `MetricsLayer`, and its store.
async fn start(started: Arc<Notify>) -> (TestServer, Metrics) {
    let router = router(started);
    let metrics = Metrics::new(&router);
    let server = TestServer::start(Server::new(router).layer(metrics.layer())).await;
    (server, metrics)
}

fn entry(metrics: &Metrics, name: &str) -> Option<MethodSnapshot> {
    metrics.snapshot().get(name).cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_distinct_unknown_method_names_share_one_unknown_entry() {
    // Proves finding 7's memory attack is gone: 2,000 made-up method names
    // (each one an ≈ 188 KiB entry before the fix) are all counted under the
    // single `unknown` entry, beside the registered method actually called.
    let (server, metrics) = start(Arc::new(Notify::new())).await;
    let client = common::client(&server.addr).await;
    for n in 0..2_000 {
        let name = format!("Probe.Method{n}");
        let missing = guard("an unknown method", client.call::<_, ()>(&name, &())).await;
        assert_eq!(missing.map_err(|s| s.code()), Err(Code::NotFound));
    }
    let echoed: Result<u64, Status> = guard("Svc.Echo", client.call("Svc.Echo", &7u64)).await;
    assert_eq!(echoed, Ok(7));

    let snapshot = metrics.snapshot();
    assert_eq!(
        snapshot.keys().collect::<Vec<_>>(),
        ["Svc.Echo", UNKNOWN_METHOD],
        "entries are bounded by the router, not by callers"
    );
    let unknown = &snapshot[UNKNOWN_METHOD];
    assert_eq!(unknown.calls, 2_000);
    assert_eq!(unknown.by_code.get(&Code::NotFound), Some(&2_000));
    assert_eq!(
        unknown.rejected.get(&Rejection::UnknownMethod),
        Some(&2_000)
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_is_counted_as_a_panic_and_as_internal() {
    // Proves panics are counted, as the middleware docs promise: a handler that
    // panics on its first poll and one that panics after an await each count
    // once, under `Internal` and as a panic (before the fix neither was
    // counted: the panic unwound past the layer's bookkeeping).
    let (server, metrics) = start(Arc::new(Notify::new())).await;
    let client = common::client(&server.addr).await;
    for method in ["Svc.Panic", "Svc.PanicLater"] {
        let error = guard(method, client.call::<_, ()>(method, &()))
            .await
            .expect_err("a panicking handler fails the call");
        assert_eq!(error.code(), Code::Internal, "{method}: {error}");
        // The reply is sent by the connection after the layer's future has
        // unwound, so the count is already there.
        let stats = entry(&metrics, method).unwrap_or_else(|| panic!("{method} is counted"));
        assert_eq!(stats.calls, 1, "{method}: {stats:?}");
        assert_eq!(stats.panics, 1, "{method}: {stats:?}");
        assert_eq!(
            stats.by_code.get(&Code::Internal),
            Some(&1),
            "{method}: {stats:?}"
        );
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_dropped_at_its_deadline_is_counted_as_deadline_exceeded() {
    // Proves deadline drops are counted: a request with a 50 ms budget sent
    // from a raw socket (which, unlike a Channel, never sends a cancel when its
    // own timer fires) runs a handler that outlives it; the server drops the
    // handler at the deadline and the layer counts one DeadlineExceeded.
    let started = Arc::new(Notify::new());
    let (server, metrics) = start(Arc::clone(&started)).await;
    let mut socket = guard("connect", tokio::net::TcpStream::connect(&server.addr))
        .await
        .expect("connect over loopback");
    let mut request = Frame::control(FrameKind::Request, 1);
    request.codec = CodecId::MessagePack;
    request.meta.method = Some("Svc.Hang".to_owned());
    request.meta.deadline = Some(Duration::from_millis(50));
    request.body = Codec::MessagePack.encode(&()).expect("() encodes");
    let bytes = encode_to_bytes(&request, Limits::default()).expect("the request encodes");
    guard("send", socket.write_all(&bytes))
        .await
        .expect("send the request");
    guard("the handler starting", started.notified()).await;

    wait_until("the dropped handler is counted", || {
        entry(&metrics, "Svc.Hang").is_some_and(|stats| stats.calls == 1)
    })
    .await;
    let stats = entry(&metrics, "Svc.Hang").expect("counted");
    assert_eq!(stats.deadline_dropped, 1, "{stats:?}");
    assert_eq!(
        stats.by_code.get(&Code::DeadlineExceeded),
        Some(&1),
        "{stats:?}"
    );
    assert_eq!(stats.cancelled, 0, "{stats:?}");
    drop(socket);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_cancelled_by_its_caller_is_counted_as_cancelled() {
    // Proves cancellations are counted: the caller drops a call whose handler
    // is running (the channel sends a cancel), the server drops the handler, and
    // the layer counts one Cancelled.
    let started = Arc::new(Notify::new());
    let (server, metrics) = start(Arc::clone(&started)).await;
    let channel = common::connect(&server.addr).await;
    let pending = channel.call(OutgoingRequest {
        method: "Svc.Hang".to_owned(),
        codec: Codec::MessagePack,
        body: Codec::MessagePack.encode(&()).expect("() encodes"),
        metadata: Vec::new(),
        timeout: None,
        idempotent: false,
    });
    guard("the handler starting", started.notified()).await;
    drop(pending);

    wait_until("the cancelled handler is counted", || {
        entry(&metrics, "Svc.Hang").is_some_and(|stats| stats.calls == 1)
    })
    .await;
    let stats = entry(&metrics, "Svc.Hang").expect("counted");
    assert_eq!(stats.cancelled, 1, "{stats:?}");
    assert_eq!(stats.by_code.get(&Code::Cancelled), Some(&1), "{stats:?}");
    assert_eq!(stats.deadline_dropped, 0, "{stats:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_rejection_reason_is_counted_apart() {
    // Proves rejections are counted by reason: with a load shed of one call in
    // progress inside a rate limit of three calls, the first call is
    // undecodable, a hanging call takes the shed slot, the next is shed, and the
    // fourth is over the rate; each is counted under its own reason.
    let started = Arc::new(Notify::new());
    let router = router(Arc::clone(&started));
    let metrics = Metrics::new(&router);
    let server = Server::new(router)
        .layer(LoadShedLayer::new(1))
        .layer(RateLimitLayer::new(0.001, 3))
        .layer(metrics.layer());
    let server = TestServer::start(server).await;
    let client = common::client(&server.addr).await;
    let undecodable = guard("bad arguments", client.call::<_, u64>("Svc.Echo", &"text")).await;
    assert_eq!(
        undecodable.map_err(|s| s.code()),
        Err(Code::InvalidArgument)
    );
    let hanging = client.go::<_, ()>("Svc.Hang", &());
    guard("the handler starting", started.notified()).await;
    let shed = guard("a shed call", client.call::<_, u64>("Svc.Echo", &1u64)).await;
    assert_eq!(shed.map_err(|s| s.code()), Err(Code::ResourceExhausted));
    let limited = guard(
        "a call over the rate",
        client.call::<_, u64>("Svc.Echo", &2u64),
    )
    .await;
    assert_eq!(limited.map_err(|s| s.code()), Err(Code::ResourceExhausted));

    let stats = entry(&metrics, "Svc.Echo").expect("counted");
    assert_eq!(
        stats.rejected.into_iter().collect::<Vec<_>>(),
        [
            (Rejection::InvalidArgument, 1),
            (Rejection::RateLimited, 1),
            (Rejection::LoadShed, 1),
        ],
    );
    drop(hanging);
    server.shutdown().await;
}
