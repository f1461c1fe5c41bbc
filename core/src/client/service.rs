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
//! [`ServiceClient`]: crate::discovery::ServiceClient

use std::task::{Context as TaskContext, Poll};

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
