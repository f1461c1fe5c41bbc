//! Graceful shutdown under load over real loopback TCP.
//!
//! The contract: once shutdown begins, every call the server had accepted runs
//! to completion and is answered `Ok`; every call it had not accepted is refused
//! with `Unavailable` marked *not executed* (so a client may safely retry it
//! elsewhere); nothing hangs and no other error appears; and `serve` returns only
//! after the accepted calls have finished.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{guard, wait_until, TestServer};
use squall::server::ServerConfig;
use squall::{Channel, ChannelConfig, Client, Code, Context, Router, Status, Tcp};
use tokio::task::JoinSet;

/// Handlers started and finished, counted on the server side.
#[derive(Debug, Default)]
struct Counters {
    /// Handlers that began running.
    started: AtomicU64,
    /// Handlers that ran to the end (their reply is on its way).
    completed: AtomicU64,
}

/// `Work.Do(n)` takes 50..=200 ms (pseudo-random per `n`) and answers `n`.
fn work_router(counters: Arc<Counters>) -> Router {
    Router::new().route("Work.Do", move |_ctx: Context, n: u64| {
        let counters = Arc::clone(&counters);
        async move {
            counters.started.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50 + (n * 7919) % 151)).await;
            counters.completed.fetch_add(1, Ordering::SeqCst);
            Ok::<u64, Status>(n)
        }
    })
}

/// Outcomes of a batch of calls.
#[derive(Debug, Default)]
struct Tally {
    /// Calls answered with their own argument.
    ok: u64,
    /// Calls refused with a not-executed `Unavailable`.
    refused: u64,
}

impl Tally {
    /// Records one call's outcome, failing the test on any outcome the contract
    /// does not allow.
    fn record(&mut self, n: u64, reply: Result<u64, Status>) {
        match reply {
            Ok(echo) => {
                assert_eq!(echo, n, "call {n} received someone else's reply");
                self.ok += 1;
            }
            Err(status) => {
                assert_eq!(
                    status.code(),
                    Code::Unavailable,
                    "call {n}: only Unavailable is allowed during shutdown, got {status}"
                );
                assert!(
                    !status.may_have_executed(),
                    "call {n}: a refused call must be marked not executed, got {status}"
                );
                self.refused += 1;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_under_load_finishes_accepted_calls_and_refuses_the_rest() {
    // Proves the shutdown contract above with 200 calls: 150 started 1 ms apart
    // with shutdown triggered once 40 handlers are running, then 50 more after
    // the client has seen the goaway. Checks each outcome, that `serve` returned
    // only after every accepted handler completed (completed count at return ==
    // Ok replies), that no handler was abandoned, and that a connection attempt
    // after shutdown is refused as not executed.
    let counters = Arc::new(Counters::default());
    let mut server =
        TestServer::start_router(work_router(Arc::clone(&counters)), ServerConfig::default()).await;
    let channel = common::connect(&server.addr).await;
    let client = Client::new(channel.clone()).with_timeout(None);

    let mut calls = JoinSet::new();
    for n in 0..150u64 {
        let client = client.clone();
        calls.spawn(async move {
            tokio::time::sleep(Duration::from_millis(n)).await;
            (n, client.call::<_, u64>("Work.Do", &n).await)
        });
    }
    wait_until("40 handlers running", || {
        counters.started.load(Ordering::SeqCst) >= 40
    })
    .await;
    server.trigger_shutdown();
    let addr = server.addr.clone();
    let serve_returned = {
        let counters = Arc::clone(&counters);
        tokio::spawn(async move {
            server.join().await;
            counters.completed.load(Ordering::SeqCst)
        })
    };

    wait_until("the client seeing the goaway", || !channel.is_usable()).await;
    for n in 150..200u64 {
        let client = client.clone();
        calls.spawn(async move { (n, client.call::<_, u64>("Work.Do", &n).await) });
    }

    let mut tally = Tally::default();
    while let Some(joined) = guard("calls during shutdown", calls.join_next()).await {
        let (n, reply) = joined.expect("caller task does not panic");
        tally.record(n, reply);
    }
    assert_eq!(tally.ok + tally.refused, 200);
    assert!(
        tally.ok >= 40,
        "the 40 running handlers finish Ok: {tally:?}"
    );
    assert!(
        tally.refused >= 50,
        "calls after the goaway are refused: {tally:?}"
    );

    let completed_at_return = guard("serve returning", serve_returned)
        .await
        .expect("the serve task does not panic");
    assert_eq!(
        completed_at_return, tally.ok,
        "serve returned before every accepted call completed, or a completed call's reply was lost"
    );
    assert_eq!(
        counters.started.load(Ordering::SeqCst),
        counters.completed.load(Ordering::SeqCst),
        "no handler was abandoned mid-way"
    );

    let error = guard(
        "connecting after shutdown",
        Channel::connect(&Tcp, &addr, ChannelConfig::default()),
    )
    .await
    .expect_err("the listener is closed after shutdown");
    assert_eq!(error.code(), Code::Unavailable, "{error}");
    assert!(!error.may_have_executed(), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_no_calls_in_flight_returns_and_later_calls_are_refused_not_executed() {
    // Proves an idle server's `serve` returns on shutdown, that its goaway makes
    // a channel opened before shutdown unusable, and that a call on that channel
    // then fails at once with a not-executed Unavailable rather than hanging.
    let counters = Arc::new(Counters::default());
    let server =
        TestServer::start_router(work_router(Arc::clone(&counters)), ServerConfig::default()).await;
    let client = Client::new(common::connect(&server.addr).await).with_timeout(None);
    let reply: Result<u64, Status> =
        guard("a call before shutdown", client.call("Work.Do", &1u64)).await;
    assert_eq!(reply, Ok(1));
    server.shutdown().await;
    let channel = client.caller().clone();
    wait_until("the client seeing the goaway", || !channel.is_usable()).await;

    let error = guard(
        "a call after shutdown",
        client.call::<_, u64>("Work.Do", &2u64),
    )
    .await
    .expect_err("the server is gone");
    assert_eq!(error.code(), Code::Unavailable, "{error}");
    assert!(!error.may_have_executed(), "{error}");
    assert_eq!(
        counters.started.load(Ordering::SeqCst),
        1,
        "the refused call never ran"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_finishes_calls_in_flight_through_a_pool() {
    // Proves the shutdown contract holds through a `Pool`, not only a `Channel`:
    // calls running when shutdown begins still complete Ok even if the pool is
    // used again after the goaway (a new call, which must be refused as not
    // executed), and no handler is abandoned.
    let counters = Arc::new(Counters::default());
    let mut server =
        TestServer::start_router(work_router(Arc::clone(&counters)), ServerConfig::default()).await;
    let pool = squall::Pool::new(Tcp, &server.addr, ChannelConfig::default(), 1);
    guard("warming the pool", pool.warm_up())
        .await
        .expect("warm-up connects");
    let client = Client::new(pool.clone()).with_timeout(None);

    // n = 1..=10: every handler takes 50..=200 ms.
    let in_flight: Vec<_> = (1..=10u64)
        .map(|n| (n, client.go::<_, u64>("Work.Do", &n)))
        .collect();
    wait_until("10 handlers running", || {
        counters.started.load(Ordering::SeqCst) == 10
    })
    .await;
    server.trigger_shutdown();
    wait_until("the pool seeing the goaway", || pool.open_channels() == 0).await;

    let late = guard(
        "a call after the goaway",
        client.call::<_, u64>("Work.Do", &11u64),
    )
    .await
    .expect_err("the server is shutting down");
    assert_eq!(late.code(), Code::Unavailable, "{late}");
    assert!(!late.may_have_executed(), "{late}");

    for (n, call) in in_flight {
        let reply = guard("a call in flight at shutdown", call).await;
        assert_eq!(reply, Ok(n), "call {n} was running when shutdown began");
    }
    server.join().await;
    assert_eq!(
        counters.completed.load(Ordering::SeqCst),
        10,
        "no handler was abandoned"
    );
}
