//! Built-in middleware, as `tower` layers (the convention tonic, axum and hyper
//! users know). Add them with [`Server::layer`](crate::Server::layer); the last
//! layer added runs first.
//!
//! - [`LoggingLayer`]: a tracing span per call and one line per outcome.
//! - [`MetricsLayer`]: per-method counts by status, rejection reason, panics,
//!   cancellations and deadline drops, and a latency histogram, readable from
//!   code through [`Metrics`]; one entry per registered method plus one
//!   [`UNKNOWN_METHOD`] entry, whatever names callers send.
//! - [`RateLimitLayer`]: a token bucket; over the rate → `ResourceExhausted`.
//! - [`LoadShedLayer`]: a bound on calls running at once; over it → `ResourceExhausted`.
//! - [`AuthLayer`]: checks the `authorization` metadata value.
//!
//! Panic recovery is not optional: the connection runs every handler under
//! `catch_unwind`, so a panic always becomes an `Internal` reply and the server
//! lives on; [`MetricsLayer`] counts those as `Internal` and as panics.
//!
//! Rejections by rate limit, load shed and auth are marked *not executed*: the
//! handler never ran, so the caller may safely retry elsewhere.
//!
//! tower's own layers stack too (`TimeoutLayer`, `ConcurrencyLimitLayer`,
//! `LoadShedLayer`, …): [`Server::layer`](crate::Server::layer) turns their
//! errors into a `Status` by a documented mapping. Rate limit and load shed
//! are ours because tower's do not behave the same on a multiplexed
//! connection (`limit.rs` says how). A tower layer whose `poll_ready` waits
//! (`ConcurrencyLimitLayer` at its bound) stops that connection's reader until
//! it is ready: bounded backpressure, but every call on the connection waits
//! behind it — put `LoadShedLayer` above it to refuse instead.

mod auth;
mod limit;
mod logging;
mod metrics;

use std::convert::Infallible;

use futures_util::future::BoxFuture;

pub use auth::{Auth, AuthLayer, AUTHORIZATION};
pub use limit::{LoadShed, LoadShedLayer, RateLimit, RateLimitLayer};
pub use logging::{Logging, LoggingLayer};
pub use metrics::{
    MethodSnapshot, Metrics, MetricsLayer, MetricsService, Rejection, UNKNOWN_METHOD,
};

use super::{Request, Response};

/// The future every built-in middleware returns.
pub type ResponseFuture = BoxFuture<'static, Result<Response, Infallible>>;

/// The bound every built-in middleware puts on the service it wraps.
pub trait Inner:
    tower::Service<Request, Response = Response, Error = Infallible, Future = Self::Fut>
    + Send
    + 'static
{
    /// The inner future.
    type Fut: std::future::Future<Output = Result<Response, Infallible>> + Send + 'static;
}

impl<S> Inner for S
where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    type Fut = S::Future;
}
