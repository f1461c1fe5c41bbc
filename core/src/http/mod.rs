//! JSON-RPC 2.0 over HTTP/1.1 (feature `http`): any [`Router`] served at
//! `POST /jsonrpc`, through the same middleware stack as the binary protocol,
//! so a client in any language with an HTTP library can call it (Go net/rpc's
//! HTTP + JSON mode). docs/PROTOCOL.md, "HTTP + JSON-RPC mapping", is the
//! exact contract: envelope, `params` rule, error codes, headers, limits.
//!
//! ```no_run
//! # async fn example() -> std::io::Result<()> {
//! use squall::http::JsonRpcServer;
//! use squall::{Context, Router, Server, Status};
//!
//! let router = Router::new().route("Arith.Add", |_ctx: Context, (a, b): (i64, i64)| async move {
//!     Ok::<_, Status>(a + b)
//! });
//! let server = Server::new(router);
//! let listener = squall::Tcp.bind("127.0.0.1:8080").await?;
//! JsonRpcServer::new(&server)
//!     .serve(listener, std::future::pending())
//!     .await
//! # }
//! ```
//!
//! - `jsonrpc`: the envelope, apart from HTTP (parse, `params`, error objects).
//! - `endpoint`: one HTTP request: checks, dispatch through the stack, answer.
//!
//! hyper writes a `Date` header from the wall clock; that is hyper's, outside
//! what a simulated run's trace records.

mod endpoint;
mod jsonrpc;

use std::future::Future;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use endpoint::{METADATA_HEADER_PREFIX, TIMEOUT_HEADER};
pub use jsonrpc::{
    INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, PARSE_ERROR, SERVER_ERROR,
};

use crate::server::{Router, Server};
use crate::transport::Listener;

/// Limits and timings of the HTTP endpoint. Every field has a bound; defaults
/// are in [`Default`].
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// The path JSON-RPC is served at; any other path is 404.
    pub path: String,
    /// Most bytes in a request body; a longer one is refused with 413 before
    /// (`Content-Length`) or while (chunked) it is read.
    pub body_bytes_max: usize,
    /// Most requests in one batch; a longer batch is answered with one
    /// -32600 error and nothing runs.
    pub batch_len_max: usize,
    /// Most levels a body may nest: the top value is level 0, and a value
    /// inside an array or object is one level deeper than it (so in a single
    /// request, `params` is level 1 and its elements level 2). Deeper is a
    /// -32700 parse error, before any handler runs. serde_json itself refuses
    /// more than 128 levels, whatever this says.
    pub json_depth_max: usize,
    /// Most bytes of a request's head (request line and headers); hyper
    /// answers a larger head with 431.
    pub header_bytes_max: usize,
    /// Most headers in a request; hyper answers more with 431.
    pub headers_max: usize,
    /// A client must send a request's whole head within this long, counted
    /// from when the connection starts waiting for it — so it is also how long
    /// an idle keep-alive connection is kept.
    pub header_read_timeout: Duration,
    /// A request's whole body must arrive within this long (408 otherwise).
    pub body_read_timeout: Duration,
    /// Most simultaneous connections; past it a new connection is closed at
    /// once (logged).
    pub connections_max: usize,
    /// How long requests in progress may finish after shutdown begins.
    pub shutdown_grace: Duration,
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            path: "/jsonrpc".to_owned(),
            body_bytes_max: 1024 * 1024,
            batch_len_max: 100,
            json_depth_max: 64,
            header_bytes_max: 16 * 1024,
            headers_max: 64,
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(30),
            connections_max: 1024,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// A JSON-RPC 2.0 endpoint over HTTP/1.1 for a [`Server`]'s router and
/// middleware (its layers run for every call, as for binary-protocol calls).
#[derive(Debug)]
pub struct JsonRpcServer {
    /// The server's stack and router, shared by every connection.
    endpoint: endpoint::Endpoint,
}

impl JsonRpcServer {
    /// An endpoint for `server`'s router behind the layers added so far.
    pub fn new(server: &Server) -> JsonRpcServer {
        JsonRpcServer::with_stack(server.stack(), server.router().clone())
    }

    fn with_stack(service: crate::server::BoxService, router: Router) -> JsonRpcServer {
        JsonRpcServer {
            endpoint: endpoint::Endpoint {
                service: std::sync::Mutex::new(service),
                router,
                config: HttpConfig::default(),
                next_call_id: AtomicU64::new(1),
            },
        }
    }

    /// Replaces the limits.
    pub fn with_config(mut self, config: HttpConfig) -> JsonRpcServer {
        self.endpoint.config = config;
        self
    }

    /// Serves HTTP connections from `listener` until `shutdown` completes, then
    /// lets requests in progress finish within the grace period.
    pub async fn serve<L: Listener>(
        self,
        mut listener: L,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let endpoint = Arc::new(self.endpoint);
        let permits = Arc::new(Semaphore::new(endpoint.config.connections_max));
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
                            tracing::warn!(%error, "http: accept failed");
                            // Back off so a persistent error (no file descriptors) does not spin.
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    };
                    let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                        tracing::warn!(peer = %conn.peer, limit = endpoint.config.connections_max, "http: refusing connection: at the connection limit");
                        continue;
                    };
                    let serve = serve_connection(conn, Arc::clone(&endpoint), stop.child_token());
                    connections.spawn(async move {
                        let _permit = permit;
                        serve.await;
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

/// Serves one connection until the peer leaves, an error, or `stop` (then
/// hyper finishes the request in progress, within the grace period).
async fn serve_connection<R, W>(
    conn: crate::transport::Connection<R, W>,
    endpoint: Arc<endpoint::Endpoint>,
    stop: CancellationToken,
) where
    R: tokio::io::AsyncRead + Send + Unpin + 'static,
    W: tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let peer = conn.peer;
    let config = &endpoint.config;
    let io = TokioIo::new(tokio::io::join(conn.reader, conn.writer));
    let grace = config.shutdown_grace;
    let handler = Arc::clone(&endpoint);
    let service =
        hyper::service::service_fn(move |request| Arc::clone(&handler).handle(peer, request));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_headers(config.headers_max)
        .max_header_size(config.header_bytes_max)
        .keep_alive(true);
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            match tokio::time::timeout(grace, connection.as_mut()).await {
                Ok(result) => result,
                Err(_) => {
                    tracing::warn!(%peer, "http: shutdown grace period over: closing");
                    Ok(())
                }
            }
        }
    };
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "http: connection ended with an error");
    }
}
