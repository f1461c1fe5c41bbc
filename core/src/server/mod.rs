//! The server: a [`Router`] behind a stack of `tower` layers, served on any
//! [`Listener`].
//!
//! Per connection: one reader loop, one writer task, one task per request.
//! Bounded connections (a semaphore) and bounded in-flight requests per
//! connection. Graceful shutdown: goaway to every client, in-flight calls finish
//! within a grace period, new calls are refused with `Unavailable` (not executed).

mod connection;
pub mod middleware;
mod router;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tower::util::BoxCloneService;
use tower::Layer;

pub use router::{Methods, Request, Response, Router, Service};

use crate::protocol::Limits;
use crate::transport::Listener;

/// The type-erased middleware stack every connection clones.
pub type BoxService = BoxCloneService<Request, Response, Infallible>;

/// Server limits and timings. Every field has a bound; defaults are in [`Default`].
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Most simultaneous connections; extra connections are closed at once.
    pub max_connections: usize,
    /// Most requests running at once on one connection; more are refused with
    /// `ResourceExhausted` (not executed, so safe to retry).
    pub max_in_flight_per_connection: usize,
    /// Frame limits, enforced on both encode and decode.
    pub limits: Limits,
    /// Most unwritten bytes per connection before responses are dropped (a peer
    /// that does not read must not exhaust memory).
    pub write_backlog_max: usize,
    /// How long in-flight calls may run after shutdown begins.
    pub shutdown_grace: Duration,
    /// A connection with no frames and no calls for this long is closed.
    pub idle_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            max_connections: 1024,
            max_in_flight_per_connection: 1024,
            limits: Limits::default(),
            write_backlog_max: 32 * 1024 * 1024,
            shutdown_grace: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
        }
    }
}

/// A server: middleware stack plus configuration.
#[derive(Clone)]
pub struct Server {
    /// The stack: layers around the router.
    service: BoxService,
    /// Limits and timings.
    config: ServerConfig,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("config", &self.config)
            .finish()
    }
}

impl Server {
    /// A server dispatching to `router`, with default limits.
    pub fn new(router: Router) -> Server {
        Server {
            service: BoxCloneService::new(router),
            config: ServerConfig::default(),
        }
    }

    /// Replaces the configuration.
    pub fn with_config(mut self, config: ServerConfig) -> Server {
        self.config = config;
        self
    }

    /// Wraps the current stack in `layer`. The last layer added runs first.
    pub fn layer<L>(mut self, layer: L) -> Server
    where
        L: Layer<BoxService>,
        L::Service: tower::Service<Request, Response = Response, Error = Infallible>
            + Clone
            + Send
            + 'static,
        <L::Service as tower::Service<Request>>::Future: Send + 'static,
    {
        self.service = BoxCloneService::new(layer.layer(self.service));
        self
    }

    /// Serves connections from `listener` until `shutdown` completes, then drains:
    /// goaway to every client, waits up to the grace period for in-flight calls.
    pub async fn serve<L: Listener>(
        self,
        mut listener: L,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let config = Arc::new(self.config);
        let permits = Arc::new(Semaphore::new(config.max_connections));
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                accepted = listener.accept() => {
                    let conn = match accepted {
                        Ok(conn) => conn,
                        Err(error) => {
                            tracing::warn!(%error, "accept failed");
                            // Back off so a persistent error (no file descriptors) does not spin.
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    };
                    let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                        tracing::warn!(peer = %conn.peer, limit = config.max_connections, "refusing connection: at the connection limit");
                        continue;
                    };
                    connections.spawn(connection::serve_connection(
                        conn,
                        self.service.clone(),
                        Arc::clone(&config),
                        stop_rx.clone(),
                        permit,
                    ));
                }
            }
        }
        drop(listener);
        let _ = stop_tx.send(true);
        while connections.join_next().await.is_some() {}
        Ok(())
    }
}
