//! Failures over real loopback TCP: handler panics, a peer that stops
//! answering (keepalive), malformed and oversized frames from a raw socket, and
//! frame limits on both sides. Each failure must stay contained: the caller gets
//! a status, never a hang, and other connections keep working.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::{guard, TestServer};
use squall::protocol::{encode_to_bytes, Frame, FrameKind, Limits, HEADER_LEN, MAGIC, VERSION};
use squall::server::ServerConfig;
use squall::{ChannelConfig, Client, Code, Context, Router, Status};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Panics with `message`: a handler bug, as far as the server knows.
fn crash(message: &str) -> Result<(), Status> {
    panic!("{message}")
}

/// `Crash.Now` panics on its first poll, `Crash.Later` after an await (so on
/// the spawned handler task), `Echo.Echo` answers its argument, and `Big.Reply`
/// answers a string of the requested length.
fn router() -> Router {
    Router::new()
        .route("Crash.Now", |_ctx: Context, (): ()| async move {
            crash("deliberate panic before any await")
        })
        .route("Crash.Later", |_ctx: Context, (): ()| async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            crash("deliberate panic after an await")
        })
        .route("Echo.Echo", |_ctx: Context, n: u64| async move {
            Ok::<u64, Status>(n)
        })
        .route("Big.Reply", |_ctx: Context, len: usize| async move {
            Ok::<String, Status>("x".repeat(len))
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_panic_is_internal_and_the_connection_keeps_serving() {
    // Proves a panicking handler (whether it panics on its first poll or later,
    // on its own task) turns into an Internal reply naming the panic, and that
    // later calls on the same connection still succeed.
    let server = TestServer::start_router(router(), ServerConfig::default()).await;
    let client = common::client(&server.addr).await;
    for (method, message) in [
        ("Crash.Now", "deliberate panic before any await"),
        ("Crash.Later", "deliberate panic after an await"),
    ] {
        let error = guard(method, client.call::<_, ()>(method, &()))
            .await
            .expect_err("a panicking handler fails the call");
        assert_eq!(error.code(), Code::Internal, "{method}: {error}");
        assert!(error.message().contains(message), "{method}: {error}");
        let echoed: Result<u64, Status> =
            guard("a call after the panic", client.call("Echo.Echo", &7u64)).await;
        assert_eq!(
            echoed,
            Ok(7),
            "the connection survived the panic in {method}"
        );
    }
    assert_eq!(
        client.caller().calls_started(),
        4,
        "all calls shared one connection"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_answering_is_detected_by_keepalive_and_pending_calls_fail_unavailable() {
    // Proves keepalive: a "server" that accepts and then never reads or writes
    // (a black hole, the socket held open so no FIN or RST ever arrives) is
    // declared dead, and every call waiting on it — none has a timeout — fails
    // with Unavailable instead of hanging forever.
    let black_hole = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind an ephemeral loopback port");
    let addr = black_hole.local_addr().expect("bound address").to_string();
    let accepted = tokio::spawn(async move {
        let (socket, _) = black_hole.accept().await.expect("accept the one client");
        socket
    });
    let config = ChannelConfig {
        keepalive_interval: Duration::from_millis(200),
        keepalive_timeout: Duration::from_millis(200),
        ..ChannelConfig::default()
    };
    let channel = common::connect_with(&addr, config).await;
    let _socket_held_open = guard("accepting", accepted).await.expect("accept task");
    let client = Client::new(channel.clone()).with_timeout(None);

    let pending: Vec<_> = (0..8u64)
        .map(|n| client.go::<_, u64>("Echo.Echo", &n))
        .collect();
    for (n, call) in pending.into_iter().enumerate() {
        let error = guard("a call to a dead peer", call)
            .await
            .expect_err("a black hole never answers");
        assert_eq!(error.code(), Code::Unavailable, "call {n}: {error}");
        assert!(error.message().contains("keepalive"), "call {n}: {error}");
    }
    assert!(!channel.is_usable(), "a dead channel takes no new calls");
    let error = guard(
        "a call after death",
        client.call::<_, u64>("Echo.Echo", &9u64),
    )
    .await
    .expect_err("the channel is closed");
    assert_eq!(error.code(), Code::Unavailable, "{error}");
    assert!(!error.may_have_executed(), "{error}");
}

/// Log lines written by every test in this binary (tracing's global subscriber
/// is per process, and the server logs from runtime worker threads).
fn captured_logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let writer = SharedBuffer(Arc::clone(&logs));
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other global subscriber in this test binary");
        logs
    })
}

/// A `MakeWriter` target appending to a shared buffer.
#[derive(Clone)]
struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The captured warn lines that mention `needle` and `peer`.
fn warn_lines_with(needle: &str, peer: &str) -> Vec<String> {
    let logs = captured_logs()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    String::from_utf8_lossy(&logs)
        .lines()
        .filter(|line| line.contains("WARN") && line.contains(needle) && line.contains(peer))
        .map(str::to_owned)
        .collect()
}

/// Sends `bytes` on a fresh raw socket to `addr` and asserts the server closes
/// that socket (EOF) without answering. Returns the socket's local address, which
/// is the peer the server logs.
async fn send_raw_and_expect_eof(addr: &str, bytes: &[u8]) -> String {
    let mut raw = tokio::net::TcpStream::connect(addr)
        .await
        .expect("raw connect");
    let local = raw.local_addr().expect("local address").to_string();
    raw.write_all(bytes).await.expect("raw write");
    let mut buf = [0u8; 256];
    let read = guard("the server closing the raw socket", raw.read(&mut buf)).await;
    assert_eq!(
        read.expect("the server closes cleanly, not with a reset"),
        0,
        "the server must close the connection without answering (saw {:?})",
        &buf[..16]
    );
    local
}

/// A valid header declaring a body of `body_len` bytes, and no body.
fn header_declaring(body_len: u32) -> Vec<u8> {
    let mut header = Vec::with_capacity(HEADER_LEN);
    header.extend_from_slice(&MAGIC);
    header.push(VERSION);
    header.push(FrameKind::Request as u8);
    header.push(squall::protocol::CodecId::MessagePack as u8);
    header.push(0); // flags
    header.extend_from_slice(&1u64.to_be_bytes()); // request id
    header.extend_from_slice(&0u32.to_be_bytes()); // metadata length
    header.extend_from_slice(&body_len.to_be_bytes());
    assert_eq!(header.len(), HEADER_LEN);
    header
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_oversized_frames_close_only_their_own_connection() {
    // Proves a connection that sends bytes that are not squall (an HTTP request)
    // or a header declaring a frame over the server's limit is closed — the raw
    // socket sees EOF — with a warn line naming the malformed frame and the peer,
    // while a healthy channel to the same server works before and after.
    let logs = captured_logs();
    let config = ServerConfig {
        limits: Limits {
            frame_len_max: 1024,
            ..Limits::default()
        },
        ..ServerConfig::default()
    };
    let server = TestServer::start_router(router(), config).await;
    let healthy = Client::new(common::connect(&server.addr).await);
    let echoed: Result<u64, Status> =
        guard("healthy call before", healthy.call("Echo.Echo", &1u64)).await;
    assert_eq!(echoed, Ok(1));

    let http = b"GET / HTTP/1.1\r\nHost: squall.invalid\r\n\r\n";
    let http_peer = send_raw_and_expect_eof(&server.addr, http).await;
    let oversized_peer = send_raw_and_expect_eof(&server.addr, &header_declaring(2000)).await;

    let echoed: Result<u64, Status> =
        guard("healthy call after", healthy.call("Echo.Echo", &2u64)).await;
    assert_eq!(echoed, Ok(2), "the healthy connection was not disturbed");
    assert!(healthy.caller().is_usable());

    let http_lines = warn_lines_with("malformed frame", &http_peer);
    assert!(
        http_lines.iter().any(|line| line.contains("bad magic")),
        "expected a warn line for {http_peer} naming the bad magic; logs:\n{}",
        String::from_utf8_lossy(&logs.lock().unwrap_or_else(|p| p.into_inner()))
    );
    let oversized_lines = warn_lines_with("malformed frame", &oversized_peer);
    assert!(
        oversized_lines
            .iter()
            .any(|line| line.contains("exceeds the limit")),
        "expected a warn line for {oversized_peer} naming the limit; logs:\n{}",
        String::from_utf8_lossy(&logs.lock().unwrap_or_else(|p| p.into_inner()))
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_the_clients_frame_limit_is_refused_before_sending() {
    // Proves the client enforces its own frame limit on encode: a request too
    // large is InvalidArgument, not executed and not retryable, nothing reaches
    // the server, and the channel stays usable.
    let server = TestServer::start_router(router(), ServerConfig::default()).await;
    let config = ChannelConfig {
        limits: Limits {
            frame_len_max: 1024,
            ..Limits::default()
        },
        ..ChannelConfig::default()
    };
    let client = Client::new(common::connect_with(&server.addr, config).await);
    let too_big = "y".repeat(2000);
    let error = guard(
        "an oversized request",
        client.call::<_, String>("Big.Reply", &too_big),
    )
    .await
    .expect_err("2000 bytes do not fit a 1024-byte frame");
    assert_eq!(error.code(), Code::InvalidArgument, "{error}");
    assert!(!error.may_have_executed(), "{error}");
    assert!(!error.is_retryable(), "{error}");
    let echoed: Result<u64, Status> =
        guard("a call after it", client.call("Echo.Echo", &3u64)).await;
    assert_eq!(echoed, Ok(3), "the channel is still usable");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_over_the_servers_frame_limit_is_an_internal_error_not_a_hang() {
    // Proves the server enforces its frame limit on encode: a reply too large is
    // replaced by an Internal error the caller receives (no timeout set, so a lost
    // reply would hang), and the connection keeps serving.
    let config = ServerConfig {
        limits: Limits {
            frame_len_max: 1024,
            ..Limits::default()
        },
        ..ServerConfig::default()
    };
    let server = TestServer::start_router(router(), config).await;
    let client = common::client(&server.addr).await.with_timeout(None);
    let fits: Result<String, Status> =
        guard("a reply that fits", client.call("Big.Reply", &100usize)).await;
    assert_eq!(fits.map(|s| s.len()), Ok(100));
    let error = guard(
        "an oversized reply",
        client.call::<_, String>("Big.Reply", &4096usize),
    )
    .await
    .expect_err("a 4096-byte reply does not fit a 1024-byte frame");
    assert_eq!(error.code(), Code::Internal, "{error}");
    assert!(error.message().contains("exceeds the limit"), "{error}");
    let echoed: Result<u64, Status> =
        guard("a call after it", client.call("Echo.Echo", &4u64)).await;
    assert_eq!(echoed, Ok(4));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_frame_built_by_hand_is_answered() {
    // Proves the raw-socket helpers speak the real protocol, so the EOFs seen in
    // the malformed-frame test are caused by the malformation and not by a raw
    // socket the server would reject anyway: a hand-sent valid request with a
    // small body gets a response frame.
    let server = TestServer::start_router(router(), ServerConfig::default()).await;
    let mut frame = Frame::control(FrameKind::Request, 77);
    frame.codec = squall::protocol::CodecId::Json;
    frame.meta.method = Some("Echo.Echo".to_owned());
    frame.body = bytes::Bytes::from_static(b"5");
    let encoded = encode_to_bytes(&frame, Limits::default()).expect("a small frame encodes");
    let mut raw = tokio::net::TcpStream::connect(&server.addr)
        .await
        .expect("raw connect");
    raw.write_all(&encoded).await.expect("raw write");
    let mut header = [0u8; HEADER_LEN];
    guard("the response header", raw.read_exact(&mut header))
        .await
        .expect("a response arrives");
    assert_eq!(&header[..2], &MAGIC);
    assert_eq!(header[3], FrameKind::Response as u8);
    assert_eq!(
        u64::from_be_bytes(header[6..14].try_into().expect("8 bytes")),
        77
    );
    drop(raw);
    server.shutdown().await;
}
