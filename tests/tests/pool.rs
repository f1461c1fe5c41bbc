//! The connection pool over real loopback TCP: it spreads concurrent calls over
//! up to its size in connections, and replaces a connection the server closed.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{guard, wait_until, TestServer};
use squall::server::ServerConfig;
use squall::{ChannelConfig, Client, Context, Pool, Router, Status, Tcp};
use tokio::task::JoinSet;

/// `Echo.Slow(n)` answers `n` after 0..10 ms and records the caller's address
/// (one per client connection) in `peers`.
fn peer_recording_router(peers: Arc<Mutex<BTreeSet<SocketAddr>>>) -> Router {
    Router::new().route("Echo.Slow", move |ctx: Context, n: u64| {
        let peers = Arc::clone(&peers);
        async move {
            peers
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .insert(ctx.peer());
            tokio::time::sleep(Duration::from_millis((n * 7919) % 10)).await;
            Ok::<u64, Status>(n)
        }
    })
}

/// Runs `count` concurrent `Echo.Slow` calls through `client`, asserting each
/// gets its own reply.
async fn run_concurrent_calls(client: &Client<Pool<Tcp>>, count: u64) {
    let mut calls = JoinSet::new();
    for n in 0..count {
        calls.spawn(client.go::<_, u64>("Echo.Slow", &n));
    }
    let mut n_answered = 0;
    while let Some(joined) = guard("concurrent pool calls", calls.join_next()).await {
        let reply = joined.expect("call task does not panic");
        assert!(reply.is_ok(), "pool call failed: {reply:?}");
        n_answered += 1;
    }
    assert_eq!(n_answered, count);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_pool_of_four_spreads_concurrent_calls_over_all_four_connections() {
    // Proves a warmed pool of size 4 sends 400 concurrent calls over exactly its
    // four connections (the server sees four distinct client addresses), reusing
    // open connections for every call and opening no fifth.
    let peers = Arc::new(Mutex::new(BTreeSet::new()));
    let server = TestServer::start_router(
        peer_recording_router(Arc::clone(&peers)),
        ServerConfig::default(),
    )
    .await;
    let pool = Pool::new(Tcp, &server.addr, ChannelConfig::default(), 4);
    guard("warming the pool", pool.warm_up())
        .await
        .expect("warm-up connects");
    assert_eq!(pool.open_channels(), 4);
    let client = Client::new(pool.clone());

    run_concurrent_calls(&client, 400).await;

    let stats = pool.stats();
    assert_eq!(stats.connects, 4, "{stats:?}");
    assert_eq!(stats.reused, 400, "{stats:?}");
    assert_eq!(stats.connect_failures, 0, "{stats:?}");
    let distinct_peers = peers.lock().expect("lock").len();
    assert_eq!(distinct_peers, 4, "calls were spread over every connection");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_pool_of_four_opens_at_most_four_connections_under_load() {
    // Proves a pool that starts with no connections serves 400 concurrent calls
    // (in two waves, so the second finds open channels) while never opening more
    // than its size, and reuses open connections.
    let peers = Arc::new(Mutex::new(BTreeSet::new()));
    let server = TestServer::start_router(
        peer_recording_router(Arc::clone(&peers)),
        ServerConfig::default(),
    )
    .await;
    let pool = Pool::new(Tcp, &server.addr, ChannelConfig::default(), 4);
    let client = Client::new(pool.clone());

    run_concurrent_calls(&client, 200).await;
    run_concurrent_calls(&client, 200).await;

    let stats = pool.stats();
    assert!(
        (1..=4).contains(&stats.connects),
        "between one and four connections: {stats:?}"
    );
    assert!(stats.reused > 0, "open connections were reused: {stats:?}");
    assert_eq!(stats.reused + stats.waited_for_connect, 400, "{stats:?}");
    let distinct_peers = peers.lock().expect("lock").len() as u64;
    // A connection opened in the background may not have carried a call yet.
    assert!(
        (1..=stats.connects).contains(&distinct_peers),
        "calls arrived over {distinct_peers} connections: {stats:?}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_replaces_a_connection_the_server_closed() {
    // Proves recovery: the server closes the pool's only connection when it
    // idles for 200 ms; the pool notices the channel is dead and the next call
    // opens a fresh connection and succeeds.
    let peers = Arc::new(Mutex::new(BTreeSet::new()));
    let config = ServerConfig {
        idle_timeout: Duration::from_millis(200),
        ..ServerConfig::default()
    };
    let server = TestServer::start_router(peer_recording_router(Arc::clone(&peers)), config).await;
    let pool = Pool::new(Tcp, &server.addr, ChannelConfig::default(), 1);
    let client = Client::new(pool.clone());

    let first: Result<u64, Status> = guard("the first call", client.call("Echo.Slow", &1u64)).await;
    assert_eq!(first, Ok(1));
    assert_eq!(pool.stats().connects, 1);
    wait_until("the server closing the idle connection", || {
        pool.open_channels() == 0
    })
    .await;

    let second: Result<u64, Status> =
        guard("a call after the close", client.call("Echo.Slow", &2u64)).await;
    assert_eq!(second, Ok(2));
    let stats = pool.stats();
    assert_eq!(
        stats.connects, 2,
        "a fresh connection replaced the closed one: {stats:?}"
    );
    assert_eq!(
        peers.lock().expect("lock").len(),
        2,
        "the server saw two connections"
    );
    server.shutdown().await;
}
