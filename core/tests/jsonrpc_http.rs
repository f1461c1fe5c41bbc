//! JSON-RPC 2.0 over HTTP (feature `http`) over real loopback TCP, with a raw
//! HTTP/1.1 client: the endpoint runs calls through the same middleware stack
//! as the binary protocol (auth, tower layers), answers batches and
//! notifications as the spec says, and bounds what a peer can send.
#![cfg(feature = "http")]

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use squall::http::{HttpConfig, JsonRpcServer};
use squall::server::middleware::AuthLayer;
use squall::{Context, Router, Server, Status, Tcp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

const HANG_GUARD: Duration = Duration::from_secs(20);

async fn guard<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(HANG_GUARD, future)
        .await
        .unwrap_or_else(|_| panic!("hang guard: {what} did not finish within {HANG_GUARD:?}"))
}

fn router() -> Router {
    Router::new()
        .route(
            "Arith.Add",
            |_ctx: Context, (a, b): (i64, i64)| async move { Ok::<i64, Status>(a + b) },
        )
        .route("Arith.Sleep", |_ctx: Context, (): ()| async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok::<(), Status>(())
        })
        .route("Meta.Trace", |ctx: Context, (): ()| async move {
            Ok::<Option<String>, Status>(ctx.get("trace-id").map(str::to_owned))
        })
}

/// Serves `server` over HTTP with `config` on an ephemeral loopback port.
async fn start(server: Server, config: HttpConfig) -> String {
    let listener = Tcp.bind("127.0.0.1:0").await.expect("bind loopback");
    let addr = listener.local_addr().expect("bound address").to_string();
    let endpoint = JsonRpcServer::new(&server).with_config(config);
    tokio::spawn(endpoint.serve(listener, std::future::pending()));
    addr
}

/// Sends `head` (request line and headers, without the blank line) and
/// `body` on a fresh connection that closes after the answer; returns the
/// status code, the head and the body of the answer.
async fn exchange(addr: &str, head: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
    guard("an HTTP exchange", async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let request = format!(
            "{head}\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream
            .write_all(request.as_bytes())
            .await
            .expect("write head");
        stream.write_all(body).await.expect("write body");
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.expect("read answer");
        let split = answer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("an HTTP answer has a head");
        let head = String::from_utf8_lossy(&answer[..split]).into_owned();
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .expect("a status line");
        (status, head, answer[split + 4..].to_vec())
    })
    .await
}

/// POSTs a JSON body to /jsonrpc with `headers` (each `Name: value`); the
/// answer is parsed when the status is 200.
async fn post(addr: &str, body: &Value, headers: &[&str]) -> (u16, Option<Value>) {
    let mut head = "POST /jsonrpc HTTP/1.1\r\nContent-Type: application/json".to_owned();
    for header in headers {
        head.push_str("\r\n");
        head.push_str(header);
    }
    let (status, _, body) = exchange(addr, &head, body.to_string().as_bytes()).await;
    // Only a 200 carries JSON; refusals are plain text.
    let parsed = (status == 200).then(|| serde_json::from_slice(&body).expect("a JSON answer"));
    (status, parsed)
}

#[tokio::test]
async fn http_calls_pass_through_the_servers_middleware_stack() {
    // Proves the endpoint serves the Server's stack, not the bare router: an
    // AuthLayer refuses a call without the Authorization header (-32000,
    // Unauthenticated, not executed) and lets it through with the token;
    // `Squall-Meta-*` headers reach the handler as metadata.
    let server = Server::new(router()).layer(AuthLayer::tokens(["s3cret".to_owned()]));
    let addr = start(server, HttpConfig::default()).await;
    let call = json!({"jsonrpc": "2.0", "method": "Arith.Add", "params": [2, 3], "id": 1});

    let (status, refused) = post(&addr, &call, &[]).await;
    let refused = refused.expect("an answer");
    assert_eq!(status, 200);
    assert_eq!(refused["error"]["code"], -32000, "{refused}");
    assert_eq!(refused["error"]["data"]["status"], "Unauthenticated");
    assert_eq!(refused["error"]["data"]["may_have_executed"], false);

    let (_, allowed) = post(&addr, &call, &["Authorization: s3cret"]).await;
    assert_eq!(
        allowed,
        Some(json!({"jsonrpc": "2.0", "result": 5, "id": 1}))
    );

    let trace = json!({"jsonrpc": "2.0", "method": "Meta.Trace", "id": 2});
    let (_, traced) = post(
        &addr,
        &trace,
        &["Authorization: s3cret", "Squall-Meta-Trace-Id: t-7"],
    )
    .await;
    assert_eq!(traced.expect("an answer")["result"], "t-7");
}

#[tokio::test]
async fn a_tower_timeout_layer_bounds_http_calls_too() {
    // Proves a tower layer on the Server acts on HTTP calls: TimeoutLayer's
    // Elapsed reaches the JSON-RPC caller as DeadlineExceeded, may have executed.
    let server = Server::new(router()).layer(tower::timeout::TimeoutLayer::new(
        Duration::from_millis(100),
    ));
    let addr = start(server, HttpConfig::default()).await;
    let call = json!({"jsonrpc": "2.0", "method": "Arith.Sleep", "id": "s"});
    let (_, answer) = post(&addr, &call, &[]).await;
    let answer = answer.expect("an answer");
    assert_eq!(answer["error"]["code"], -32000, "{answer}");
    assert_eq!(answer["error"]["data"]["status"], "DeadlineExceeded");
    assert_eq!(answer["error"]["data"]["may_have_executed"], true);
    assert_eq!(answer["id"], "s");
}

#[tokio::test]
async fn a_batch_answers_its_requests_and_an_all_notification_batch_is_204() {
    // Proves batch semantics: one answer per request with an id, none for a
    // notification, -32601 for an unknown method, and 204 with no body when
    // every entry is a notification.
    let addr = start(Server::new(router()), HttpConfig::default()).await;
    let batch = json!([
        {"jsonrpc": "2.0", "method": "Arith.Add", "params": [1, 2], "id": 1},
        {"jsonrpc": "2.0", "method": "Arith.Add", "params": [5, 5]},
        {"jsonrpc": "2.0", "method": "Arith.Missing", "id": 2},
    ]);
    let (status, answers) = post(&addr, &batch, &[]).await;
    assert_eq!(status, 200);
    let answers = answers.expect("answers");
    let answers = answers.as_array().expect("a batch answer is an array");
    assert_eq!(answers.len(), 2, "{answers:?}");
    assert_eq!(answers[0], json!({"jsonrpc": "2.0", "result": 3, "id": 1}));
    assert_eq!(answers[1]["error"]["code"], -32601);
    assert_eq!(answers[1]["id"], 2);

    let notifications = json!([
        {"jsonrpc": "2.0", "method": "Arith.Add", "params": [1, 2]},
        {"jsonrpc": "2.0", "method": "Arith.Missing"},
    ]);
    let (status, body) = post(&addr, &notifications, &[]).await;
    assert_eq!((status, body), (204, None));
}

#[tokio::test]
async fn limits_refuse_long_batches_large_bodies_and_wrong_requests() {
    // Proves the bounds: a batch over batch_len_max is one -32600 error and
    // nothing runs; a body over body_bytes_max is 413; GET is 405 (Allow:
    // POST); another path is 404; another content type is 415; a head over
    // header_bytes_max is 431.
    let config = HttpConfig {
        batch_len_max: 2,
        body_bytes_max: 256,
        ..HttpConfig::default()
    };
    let addr = start(Server::new(router()), config).await;
    let entry = json!({"jsonrpc": "2.0", "method": "Arith.Add", "params": [1, 1], "id": 1});
    let (status, answer) = post(&addr, &json!([entry, entry, entry]), &[]).await;
    assert_eq!(status, 200);
    let answer = answer.expect("an answer");
    assert_eq!(answer["error"]["code"], -32600, "{answer}");
    assert!(answer["id"].is_null());

    let large =
        json!({"jsonrpc": "2.0", "method": "Arith.Add", "params": ["x".repeat(300)], "id": 1});
    assert_eq!(post(&addr, &large, &[]).await.0, 413);

    let (status, head, _) = exchange(&addr, "GET /jsonrpc HTTP/1.1", b"").await;
    assert_eq!(status, 405);
    assert!(head.to_ascii_lowercase().contains("allow: post"), "{head}");
    let (status, _, _) = exchange(
        &addr,
        "POST /other HTTP/1.1\r\nContent-Type: application/json",
        b"{}",
    )
    .await;
    assert_eq!(status, 404);
    let (status, _, _) = exchange(
        &addr,
        "POST /jsonrpc HTTP/1.1\r\nContent-Type: text/plain",
        b"{}",
    )
    .await;
    assert_eq!(status, 415);
    let huge_header = format!(
        "POST /jsonrpc HTTP/1.1\r\nContent-Type: application/json\r\nX-Pad: {}",
        "p".repeat(HttpConfig::default().header_bytes_max + 1)
    );
    let (status, _, _) = exchange(&addr, &huge_header, b"{}").await;
    assert_eq!(status, 431);
}

/// `Gate.Wait` counts its runs in `entered`, then waits for a permit of `gate`.
fn gated_router(gate: Arc<Semaphore>, entered: Arc<AtomicU64>) -> Router {
    Router::new().route("Gate.Wait", move |_ctx: Context, (): ()| {
        let gate = Arc::clone(&gate);
        let entered = Arc::clone(&entered);
        async move {
            entered.fetch_add(1, Ordering::SeqCst);
            let permit = gate
                .acquire()
                .await
                .map_err(|_| Status::internal("closed"))?;
            permit.forget();
            Ok::<u64, Status>(7)
        }
    })
}

async fn wait_until(what: &str, condition: impl Fn() -> bool) {
    guard(what, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn shutdown_answers_the_request_in_progress_and_then_serve_returns() {
    // Proves graceful shutdown: a call running when shutdown begins is still
    // answered (200, its result), and `serve` returns once it has been.
    let gate = Arc::new(Semaphore::new(0));
    let entered = Arc::new(AtomicU64::new(0));
    let server = Server::new(gated_router(Arc::clone(&gate), Arc::clone(&entered)));
    let listener = Tcp.bind("127.0.0.1:0").await.expect("bind loopback");
    let addr = listener.local_addr().expect("bound address").to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(JsonRpcServer::new(&server).serve(listener, async move {
        let _ = stopped.await;
    }));
    let call = {
        let addr = addr.clone();
        tokio::spawn(async move {
            let body = json!({"jsonrpc": "2.0", "method": "Gate.Wait", "id": 1});
            post(&addr, &body, &[]).await
        })
    };
    wait_until("the call to start", || entered.load(Ordering::SeqCst) == 1).await;
    stop.send(()).expect("the server is running");
    gate.add_permits(1);
    let (status, answer) = guard("the call in progress", call).await.expect("task");
    assert_eq!(status, 200);
    assert_eq!(
        answer,
        Some(json!({"jsonrpc": "2.0", "result": 7, "id": 1}))
    );
    guard("serve to return", serving)
        .await
        .expect("task")
        .expect("serve ends cleanly");
}

#[tokio::test]
async fn past_the_connection_limit_a_new_connection_is_closed_unanswered() {
    // Proves connections_max: with a limit of one and one connection open
    // (sending nothing), a second connection is closed with no answer; once
    // the first leaves, a new connection is served.
    let config = HttpConfig {
        connections_max: 1,
        ..HttpConfig::default()
    };
    let addr = start(Server::new(router()), config).await;
    let holder = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    // The holder's slot is taken once the server has accepted it; a refused
    // connection reads end-of-stream with nothing in it.
    let request = "POST /jsonrpc HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";
    let mut refused = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let _ = refused.write_all(request.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = guard(
        "the refused connection to close",
        refused.read_to_end(&mut answer),
    )
    .await;
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));

    drop(holder);
    let call = json!({"jsonrpc": "2.0", "method": "Arith.Add", "params": [4, 4], "id": 1});
    guard("a connection once the slot is free", async {
        loop {
            let mut stream = tokio::net::TcpStream::connect(&addr).await.expect("connect");
            let body = call.to_string();
            let head = format!(
                "POST /jsonrpc HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(body.as_bytes()).await;
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer).await;
            if answer.starts_with(b"HTTP/1.1 200") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}
