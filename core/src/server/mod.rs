//! The server: a [`Router`] behind a stack of `tower` layers, served on any
//! [`Listener`].
//!
//! Per connection: one task reads frames and writes replies (the engine in
//! `conn`), one task per request that does not finish at once. Bounded
//! connections (a semaphore; at the limit the oldest idle connection is shed),
//! bounded in-flight requests, bounded memory per connection and server-wide.
//! Graceful shutdown: goaway to every client, idle connections close at once,
//! in-flight calls finish within a grace period, new calls are refused with
//! `Unavailable` (not executed).

mod admission;
mod connection;
#[cfg(feature = "http")]
pub(crate) use connection::result_of;
mod into_status;
pub mod middleware;
mod router;

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::util::BoxCloneService;
use tower::Layer;

pub use admission::ServerStats;
pub use router::{Methods, Request, Response, Router, ServiceDef};

use crate::conn::ReadBudget;
use crate::observe::MethodLabels;
use crate::protocol::{goaway_frame, FrameCodec, Limits};
use crate::transport::Listener;

/// The type-erased middleware stack every connection clones.
pub type BoxService = BoxCloneService<Request, Response, Infallible>;

/// Server limits and timings. Every field has a bound; defaults are in [`Default`].
///
/// Memory per connection is bounded whatever the peer does: what it has sent
/// in part (at most one frame, and all connections together at most
/// `partial_frames_budget_max`), plus what is queued for it (reading stops at
/// `write_backlog_max`; past that only replies to calls already running are
/// queued, at most `max_in_flight_per_connection` times the frame limit), plus
/// the requests running.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Most simultaneous connections. At the limit, the oldest connection with
    /// no call in flight is shed (goaway, then closed) to make room; if every
    /// connection is busy, the new one is sent a goaway saying nothing ran and
    /// closed at once.
    pub max_connections: usize,
    /// Most requests running at once on one connection; more are refused with
    /// `ResourceExhausted` (not executed, so safe to retry).
    pub max_in_flight_per_connection: usize,
    /// Frame limits, enforced on both encode and decode.
    pub limits: Limits,
    /// The byte budget of a connection's outgoing queue; every frame counts
    /// against it (replies, refusals, pongs, goaways). Over it, the server stops
    /// reading from that peer (TCP then pushes back on the sender) and refuses
    /// new requests; replies to calls already running are still queued.
    pub write_backlog_max: usize,
    /// A peer whose queue stays over `write_backlog_max` this long is not
    /// reading: the connection is cut (logged), freeing what was queued for it.
    pub write_stall_timeout: Duration,
    /// Bytes of partly received frames the server buffers over all its
    /// connections; a connection that would go past it is cut (logged). At
    /// least one frame limit, or the largest frames could never arrive.
    pub partial_frames_budget_max: usize,
    /// A connection holding part of a frame that receives no byte for this long
    /// is cut: a header whose body never completes pins nothing for long.
    pub frame_timeout: Duration,
    /// A new connection must deliver a whole first frame within this long, or it
    /// is cut (a socket that never speaks would hold a connection slot).
    pub first_frame_timeout: Duration,
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
            write_backlog_max: 4 * 1024 * 1024,
            write_stall_timeout: Duration::from_secs(30),
            partial_frames_budget_max: 256 * 1024 * 1024,
            frame_timeout: Duration::from_secs(30),
            first_frame_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
        }
    }
}

impl ServerConfig {
    /// How often a connection checks its timers (idle, frame progress, first
    /// frame, write stall): a quarter of the shortest, so each fires at most a
    /// quarter late, without a clock read per frame.
    pub(crate) fn check_interval(&self) -> Duration {
        let shortest = [
            self.idle_timeout / 2,
            self.write_stall_timeout,
            self.frame_timeout,
            self.first_frame_timeout,
        ]
        .into_iter()
        .min()
        .unwrap_or(self.idle_timeout);
        (shortest / 4).max(Duration::from_millis(1))
    }
}

/// A server: middleware stack plus configuration.
#[derive(Clone)]
pub struct Server {
    /// The stack: layers around the router.
    service: BoxService,
    /// The router at the bottom of the stack, for endpoints that must tell its
    /// own unknown-method refusal from a handler's `NotFound` (JSON-RPC).
    router: Router,
    /// Limits and timings.
    config: ServerConfig,
    /// Live figures, shared with the running server.
    stats: ServerStats,
    /// The router's methods, the only method labels metrics use.
    labels: Arc<MethodLabels>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("config", &self.config)
            .finish()
    }
}

impl Server {
    /// A server dispatching to `router` (a [`Router`], or anything that
    /// converts into one, such as a `#[squall::service]` trait's
    /// `{Trait}Server`), with default limits.
    pub fn new(router: impl Into<Router>) -> Server {
        let router = router.into();
        Server {
            labels: Arc::new(MethodLabels::new(&router)),
            service: BoxCloneService::new(router.clone()),
            router,
            config: ServerConfig::default(),
            stats: ServerStats::default(),
        }
    }

    /// The middleware stack, for other front ends (HTTP) to serve the same calls.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn stack(&self) -> BoxService {
        self.service.clone()
    }

    /// The router under the stack.
    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn router(&self) -> &Router {
        &self.router
    }

    /// Live figures of this server (memory held by its connections, what its
    /// limits did). Take it before `serve`; it stays valid while serving.
    pub fn stats(&self) -> ServerStats {
        self.stats.clone()
    }

    /// Replaces the configuration.
    pub fn with_config(mut self, config: ServerConfig) -> Server {
        self.config = config;
        self
    }

    /// Wraps the current stack in `layer`. The last layer added runs first.
    ///
    /// Any tower layer fits whose error converts into [`Status`](crate::Status):
    /// our own layers (`Infallible`), tower's (`BoxError`) and a user's own
    /// (`Status`). An error becomes the call's reply; the mapping is exact and
    /// documented on the `From` impls of `Status`:
    ///
    /// | error | status |
    /// |---|---|
    /// | `tower::timeout::error::Elapsed` | `DeadlineExceeded`, may have executed |
    /// | `tower::load_shed::error::Overloaded` | `ResourceExhausted`, not executed |
    /// | a boxed `Status` | that status |
    /// | any other error | `Internal`, may have executed |
    ///
    /// An error from `poll_ready` is answered to the next call as the same
    /// status marked *not executed* (that call never reached the layer).
    ///
    /// A layer whose `poll_ready` waits (`ConcurrencyLimitLayer` at its bound)
    /// stops the connection's reader until it is ready: every call on that
    /// connection waits behind it. Put `LoadShedLayer` above it to refuse
    /// (`ResourceExhausted`, not executed) instead.
    ///
    /// ```
    /// use std::time::Duration;
    /// use squall::{Router, Server};
    /// use tower::limit::ConcurrencyLimitLayer;
    /// use tower::load_shed::LoadShedLayer;
    /// use tower::timeout::TimeoutLayer;
    ///
    /// let server = Server::new(Router::new())
    ///     .layer(TimeoutLayer::new(Duration::from_secs(2)))
    ///     .layer(ConcurrencyLimitLayer::new(64))
    ///     .layer(LoadShedLayer::new());
    /// # drop(server);
    /// ```
    pub fn layer<L>(mut self, layer: L) -> Server
    where
        L: Layer<BoxService>,
        L::Service: tower::Service<Request, Response = Response> + Clone + Send + 'static,
        <L::Service as tower::Service<Request>>::Error: Into<crate::Status>,
        <L::Service as tower::Service<Request>>::Future: Send + 'static,
    {
        let stack = into_status::IntoStatus::new(layer.layer(self.service));
        self.service = BoxCloneService::new(stack);
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
        let stats = self.stats;
        let permits = Arc::new(Semaphore::new(config.max_connections));
        let refusals = Arc::new(Semaphore::new(REFUSALS_MAX));
        let read_budget = Arc::new(ReadBudget::new(
            config.partial_frames_budget_max,
            Arc::clone(&stats.inner.partial_frame_bytes),
        ));
        // Cancelled to begin graceful shutdown; each connection's drain token is
        // a child of it, so one token per connection serves shutdown and shedding.
        let stop = CancellationToken::new();
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
                    let admitted = match Arc::clone(&permits).try_acquire_owned() {
                        Ok(permit) => connection::Admitted::Now(permit),
                        // At the limit: make room by shedding the oldest idle
                        // connection; the new one takes its slot once it closes.
                        Err(_) if stats.inner.open.shed_oldest_idle() => {
                            stats.inner.connections_shed.fetch_add(1, Ordering::Relaxed);
                            tracing::info!(peer = %conn.peer, limit = config.max_connections, "at the connection limit: shedding the oldest idle connection");
                            connection::Admitted::After(Arc::clone(&permits))
                        }
                        Err(_) => {
                            stats.inner.connections_refused.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(peer = %conn.peer, limit = config.max_connections, "refusing connection: at the connection limit, none idle");
                            refuse(conn, &config, &refusals);
                            continue;
                        }
                    };
                    let (id, handle) = stats.inner.open.open(&stop);
                    let stats_inner = Arc::clone(&stats.inner);
                    let serve = connection::serve_connection(
                        conn,
                        self.service.clone(),
                        connection::Shared {
                            config: Arc::clone(&config),
                            stats: Arc::clone(&stats.inner),
                            read_budget: Arc::clone(&read_budget),
                            handle,
                            labels: Arc::clone(&self.labels),
                        },
                        admitted,
                    );
                    connections.spawn(async move {
                        serve.await;
                        stats_inner.open.close(id);
                    });
                }
            }
        }
        drop(listener);
        stop.cancel();
        while connections.join_next().await.is_some() {}
        Ok(())
    }
}

impl Server {
    /// Binds TCP on `addr` and serves until `shutdown` completes: the whole
    /// server in one call, no trait to import. To learn the bound port first
    /// (binding port 0), bind with [`Tcp::bind`](crate::Tcp::bind) and call
    /// [`Server::serve`].
    pub async fn serve_on(
        self,
        addr: &str,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let listener = crate::transport::Tcp.bind(addr).await?;
        self.serve(listener, shutdown).await
    }
}

/// Most refusals being written at once; past it, a refused connection is
/// closed without one (a connect flood must not buy a task per socket).
const REFUSALS_MAX: usize = 64;
/// How long a refusal may take to write.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(1);

/// Refuses a connection at the limit: a goaway saying no request on it ran
/// (last read id 0), so its client knows the calls it already wrote are safe
/// to re-send, then close. Written on a task of its own, bounded in number and
/// time: the accept loop never waits on a peer.
fn refuse<R, W>(
    conn: crate::transport::Connection<R, W>,
    config: &ServerConfig,
    refusals: &Arc<Semaphore>,
) where
    R: Send + 'static,
    W: tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    use tokio::io::AsyncWriteExt;
    let Ok(permit) = Arc::clone(refusals).try_acquire_owned() else {
        return;
    };
    let mut bytes = bytes::BytesMut::new();
    if FrameCodec::new(config.limits)
        .encode_frame(&goaway_frame(0), &mut bytes)
        .is_err()
    {
        return;
    }
    tokio::spawn(async move {
        let _permit = permit;
        let mut conn = conn;
        let write = async {
            conn.writer.write_all(&bytes).await?;
            conn.writer.shutdown().await
        };
        let _ = tokio::time::timeout(REFUSAL_TIMEOUT, write).await;
    });
}
