//! `tower::Service<OutgoingRequest>` for every caller ([`Channel`], [`Pool`],
//! [`ServiceClient`]), so tower's middleware — `Retry`, `Timeout`,
//! `ConcurrencyLimit`, `Buffer` — can wrap a squall client as it wraps any
//! other service.
//!
//! Every caller is always ready: its own bounds (a channel's in-flight limit,
//! a closed connection, an open breaker) answer the call at once with a status
//! saying whether it may have executed, rather than making `poll_ready` wait.
//! The error is [`Status`], so a tower `Retry` policy can read
//! [`Status::is_retryable`] and [`Status::may_have_executed`].
//!
//! ```no_run
//! # async fn example() -> Result<(), squall::Status> {
//! use squall::client::{Channel, ChannelConfig, OutgoingRequest};
//! use squall::Codec;
//! use tower::ServiceExt;
//!
//! let channel = Channel::connect(&squall::Tcp, "127.0.0.1:7000", ChannelConfig::default()).await?;
//! let body = Codec::Json.encode(&(7, 8))?;
//! let reply = channel
//!     .oneshot(OutgoingRequest::new("Arith.Multiply", Codec::Json, body))
//!     .await?;
//! let product: i64 = reply.codec.decode(&reply.body)?;
//! # let _ = product; Ok(()) }
//! ```
//!
//! The other way round, [`TowerCaller`] makes a tower stack built over a
//! caller a [`Caller`] again, so the typed [`Client`](super::Client) runs on it.
//!
//! [`ServiceClient`]: crate::discovery::ServiceClient

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};

use tokio::task::JoinHandle;
use tower::ServiceExt as _;

use super::{Caller, Channel, OutgoingRequest, PendingCall, Pool, PoolCall, Reply};
use crate::discovery::{ServiceCall, ServiceClient};
use crate::status::Status;
use crate::transport::Transport;

/// One impl per caller: a blanket impl over `Caller` is not allowed for a
/// foreign trait, and each is a one-line delegation.
macro_rules! tower_service_for_caller {
    ($caller:ty, $future:ty $(, $generic:ident: $bound:path)?) => {
        impl$(<$generic: $bound>)? tower::Service<OutgoingRequest> for $caller {
            type Response = Reply;
            type Error = Status;
            type Future = $future;

            /// Always ready: refusals come back from the call itself, each
            /// saying whether the request may have executed.
            fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), Status>> {
                Poll::Ready(Ok(()))
            }

            fn call(&mut self, request: OutgoingRequest) -> $future {
                Caller::call(self, request)
            }
        }
    };
}

tower_service_for_caller!(Channel, PendingCall);
tower_service_for_caller!(Pool<T>, PoolCall, T: Transport);
tower_service_for_caller!(ServiceClient<T>, ServiceCall, T: Transport);

/// A tower service of [`OutgoingRequest`]s — typically tower middleware over a
/// [`Channel`], [`Pool`] or [`ServiceClient`] — as a [`Caller`], so
/// [`Client`](super::Client) can call through it:
///
/// ```no_run
/// # async fn example() -> Result<(), squall::Status> {
/// use std::time::Duration;
/// use squall::client::{Channel, ChannelConfig, Client, TowerCaller};
///
/// let channel = Channel::connect(&squall::Tcp, "127.0.0.1:7000", ChannelConfig::default()).await?;
/// let limited = tower::limit::ConcurrencyLimit::new(channel, 16);
/// let client = Client::new(TowerCaller::new(limited));
/// let product: i64 = client.call("Arith.Multiply", &(7, 8)).await?;
/// # let _ = product; Ok(()) }
/// ```
///
/// A [`Caller`]'s call must make progress once started, even before it is
/// awaited, and tower futures only progress when polled: each call therefore
/// runs on a task of its own (spawned on the current tokio runtime), aborted
/// when its future is dropped, which cancels the call as dropping a
/// [`PendingCall`] does. The error converts into [`Status`] by the same
/// mapping as server layers' (tower's `Elapsed` is `DeadlineExceeded`).
pub struct TowerCaller<S> {
    /// The stack; cloned for each call. The lock makes the caller `Sync`
    /// whatever the stack is, and is held only for the clone.
    service: Arc<Mutex<S>>,
}

impl<S> Clone for TowerCaller<S> {
    fn clone(&self) -> TowerCaller<S> {
        TowerCaller {
            service: Arc::clone(&self.service),
        }
    }
}

impl<S> std::fmt::Debug for TowerCaller<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TowerCaller").finish_non_exhaustive()
    }
}

impl<S> TowerCaller<S> {
    /// Calls go through `service`.
    pub fn new(service: S) -> TowerCaller<S> {
        TowerCaller {
            service: Arc::new(Mutex::new(service)),
        }
    }
}

impl<S> Caller for TowerCaller<S>
where
    S: tower::Service<OutgoingRequest, Response = Reply> + Clone + Send + 'static,
    S::Error: Into<Status>,
    S::Future: Send + 'static,
{
    type Future = TowerCall;

    /// Starts the call on a task of its own. Must be called inside a tokio runtime.
    fn call(&self, request: OutgoingRequest) -> TowerCall {
        let service = self
            .service
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        let task = tokio::spawn(async move { service.oneshot(request).await.map_err(Into::into) });
        TowerCall { task }
    }
}

/// A call started by a [`TowerCaller`]; dropping it aborts the call.
#[derive(Debug)]
pub struct TowerCall {
    /// The task running the call.
    task: JoinHandle<Result<Reply, Status>>,
}

impl Future for TowerCall {
    type Output = Result<Reply, Status>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.task)
            .poll(cx)
            .map(|joined| match joined {
                Ok(result) => result,
                Err(error) if error.is_panic() => {
                    Err(Status::internal("a tower layer panicked during the call"))
                }
                Err(_) => Err(Status::cancelled("the call's task was cancelled")),
            })
    }
}

impl Drop for TowerCall {
    fn drop(&mut self) {
        self.task.abort();
    }
}
