//! Helpers shared by the end-to-end tests: start a real server on an ephemeral
//! loopback port, connect to it, and bound every wait so a broken build fails
//! with a message instead of hanging the suite.

#![allow(dead_code)] // Each test binary uses a different subset.

use std::future::Future;
use std::time::Duration;

use squall::server::ServerConfig;
use squall::{Channel, ChannelConfig, Client, Server, Tcp};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The hang guard: long enough never to fire on a healthy build, even on a
/// loaded two-core machine; short enough that a hang fails the suite quickly.
pub const HANG_GUARD: Duration = Duration::from_secs(10);

/// Awaits `future`, failing the test with `what` if it takes longer than [`HANG_GUARD`].
pub async fn guard<F: Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(HANG_GUARD, future).await {
        Ok(output) => output,
        Err(_) => panic!("hang guard: {what} did not finish within {HANG_GUARD:?}"),
    }
}

/// Polls `condition` every 5 ms until it holds, failing the test with `what`
/// after [`HANG_GUARD`]. Bounded: at most `HANG_GUARD / 5 ms` polls.
pub async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let step = Duration::from_millis(5);
    let polls_max = HANG_GUARD.as_millis() / step.as_millis();
    for _ in 0..polls_max {
        if condition() {
            return;
        }
        tokio::time::sleep(step).await;
    }
    panic!("hang guard: {what} did not happen within {HANG_GUARD:?}");
}

/// A server running on its own task, bound to an ephemeral loopback port.
#[derive(Debug)]
pub struct TestServer {
    /// `127.0.0.1:<port>`.
    pub addr: String,
    /// Completing (or dropping) this starts the server's graceful shutdown.
    stop: Option<oneshot::Sender<()>>,
    /// The `serve` future; ends once shutdown has drained every connection.
    task: JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    /// Starts `server` on `127.0.0.1:0`.
    pub async fn start(server: Server) -> TestServer {
        let listener = Tcp
            .bind("127.0.0.1:0")
            .await
            .expect("bind an ephemeral loopback port");
        let addr = squall::Listener::local_addr(&listener)
            .expect("a bound listener has an address")
            .to_string();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(listener, async move {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            stop: Some(stop),
            task,
        }
    }

    /// Starts a server with default middleware and `config`.
    pub async fn start_router(router: squall::Router, config: ServerConfig) -> TestServer {
        TestServer::start(Server::new(router).with_config(config)).await
    }

    /// Begins graceful shutdown without waiting for it.
    pub fn trigger_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Begins graceful shutdown and waits (bounded) for `serve` to return.
    pub async fn shutdown(mut self) {
        self.trigger_shutdown();
        self.join().await;
    }

    /// Waits (bounded) for `serve` to return; panics if it failed.
    pub async fn join(self) {
        let served = guard("Server::serve returning", self.task).await;
        served
            .expect("the serve task does not panic")
            .expect("serve returns Ok");
    }
}

/// A channel to `addr` with default settings.
pub async fn connect(addr: &str) -> Channel {
    connect_with(addr, ChannelConfig::default()).await
}

/// A channel to `addr` with `config`.
pub async fn connect_with(addr: &str, config: ChannelConfig) -> Channel {
    guard("connecting", Channel::connect(&Tcp, addr, config))
        .await
        .unwrap_or_else(|status| panic!("connect to {addr}: {status}"))
}

/// A typed client over a fresh channel to `addr`.
pub async fn client(addr: &str) -> Client<Channel> {
    Client::new(connect(addr).await)
}
