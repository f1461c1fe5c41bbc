//! The client side: a multiplexed [`Channel`] per connection, a [`Pool`] of them
//! per endpoint, and the typed [`Client`] that encodes arguments and decodes
//! replies over any [`Caller`]. Every caller is also a
//! `tower::Service<OutgoingRequest>`, so tower middleware can wrap it.

mod channel;
mod pool;
mod service;
mod table;

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use bytes::Bytes;
use serde::{de::DeserializeOwned, Serialize};

pub use channel::{Channel, ChannelConfig, PendingCall};
pub use pool::{Pool, PoolCall, PoolHealth, PoolStats};
pub use service::{TowerCall, TowerCaller};

use crate::protocol::Codec;
use crate::status::Status;

/// A request on its way out: the method, encoded arguments and options.
#[derive(Clone, Debug)]
pub struct OutgoingRequest {
    /// `Service.Method`.
    pub method: String,
    /// The payload codec of `body`; the reply comes back in it.
    pub codec: Codec,
    /// The encoded arguments.
    pub body: Bytes,
    /// User metadata (auth token, hash key, trace id).
    pub metadata: Vec<(String, String)>,
    /// The call's budget. A handler's inherited deadline shortens it further.
    pub timeout: Option<Duration>,
    /// Whether re-sending is safe even if the handler may have run.
    pub idempotent: bool,
}

impl OutgoingRequest {
    /// A request for `method` with `body` encoded in `codec`: no metadata, no
    /// timeout of its own (an inherited deadline still applies), not idempotent.
    pub fn new(method: impl Into<String>, codec: Codec, body: Bytes) -> OutgoingRequest {
        OutgoingRequest {
            method: method.into(),
            codec,
            body,
            metadata: Vec::new(),
            timeout: None,
            idempotent: false,
        }
    }

    /// Bounds the call by `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> OutgoingRequest {
        self.timeout = Some(timeout);
        self
    }

    /// Declares the method idempotent (safe to re-send even if it may have run).
    pub fn idempotent(mut self) -> OutgoingRequest {
        self.idempotent = true;
        self
    }
}

/// An encoded reply.
#[derive(Clone, Debug)]
pub struct Reply {
    /// The codec the server answered in.
    pub codec: Codec,
    /// The encoded reply.
    pub body: Bytes,
}

/// Anything that can carry a call: a [`Channel`], a [`Pool`], or a
/// discovery-aware client. The returned future must make progress by itself
/// once created (the request is already on its way), so it can be awaited later.
pub trait Caller: Clone + Send + Sync + 'static {
    /// The pending reply.
    type Future: Future<Output = Result<Reply, Status>> + Send + Unpin + 'static;

    /// Starts `request`.
    fn call(&self, request: OutgoingRequest) -> Self::Future;
}

/// Per-call options, each overriding the client's default.
#[derive(Clone, Debug, Default)]
pub struct CallOptions {
    /// Payload codec for this call.
    pub codec: Option<Codec>,
    /// Budget for this call.
    pub timeout: Option<Duration>,
    /// User metadata.
    pub metadata: Vec<(String, String)>,
    /// Declare the method idempotent (safe to retry even if it may have run).
    pub idempotent: bool,
}

impl CallOptions {
    /// No overrides.
    pub fn new() -> CallOptions {
        CallOptions::default()
    }
    /// Uses `codec` for this call.
    pub fn codec(mut self, codec: Codec) -> CallOptions {
        self.codec = Some(codec);
        self
    }
    /// Bounds this call by `timeout`.
    pub fn timeout(mut self, timeout: Duration) -> CallOptions {
        self.timeout = Some(timeout);
        self
    }
    /// Adds a metadata key/value.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> CallOptions {
        self.metadata.push((key.into(), value.into()));
        self
    }
    /// Declares the method idempotent.
    pub fn idempotent(mut self) -> CallOptions {
        self.idempotent = true;
        self
    }
}

/// A typed client over any [`Caller`].
///
/// ```no_run
/// # async fn example() -> Result<(), squall::Status> {
/// use squall::client::{Channel, ChannelConfig, Client};
/// let channel = Channel::connect(&squall::Tcp, "127.0.0.1:7000", ChannelConfig::default()).await?;
/// let client = Client::new(channel);
/// let product: i64 = client.call("Arith.Multiply", &(7, 8)).await?;
/// let later = client.go::<_, i64>("Arith.Multiply", &(6, 9)); // sent now…
/// let answer = later.await?;                                    // …awaited later
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Client<C> {
    /// What carries the calls.
    caller: C,
    /// The default payload codec.
    codec: Codec,
    /// The default per-call budget.
    timeout: Option<Duration>,
}

impl<C: Caller> Client<C> {
    /// A client with MessagePack and a 30 s default timeout.
    pub fn new(caller: C) -> Client<C> {
        Client {
            caller,
            codec: Codec::MessagePack,
            timeout: Some(Duration::from_secs(30)),
        }
    }

    /// Sets the default codec.
    pub fn with_codec(mut self, codec: Codec) -> Client<C> {
        self.codec = codec;
        self
    }

    /// Sets the default per-call timeout (`None`: only inherited deadlines apply).
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Client<C> {
        self.timeout = timeout;
        self
    }

    /// The underlying caller.
    pub fn caller(&self) -> &C {
        &self.caller
    }

    /// Calls `method` and waits for the reply.
    pub async fn call<A: Serialize, R: DeserializeOwned>(
        &self,
        method: &str,
        args: &A,
    ) -> Result<R, Status> {
        self.go_with(method, args, CallOptions::default()).await
    }

    /// Calls `method` with per-call options.
    pub async fn call_with<A: Serialize, R: DeserializeOwned>(
        &self,
        method: &str,
        args: &A,
        options: CallOptions,
    ) -> Result<R, Status> {
        self.go_with(method, args, options).await
    }

    /// Starts `method` now and returns a handle to await later (net/rpc's `Go`).
    /// Dropping the handle cancels the call.
    pub fn go<A: Serialize, R: DeserializeOwned>(
        &self,
        method: &str,
        args: &A,
    ) -> CallHandle<C::Future, R> {
        self.go_with(method, args, CallOptions::default())
    }

    /// [`Client::go`] with per-call options.
    pub fn go_with<A: Serialize, R: DeserializeOwned>(
        &self,
        method: &str,
        args: &A,
        options: CallOptions,
    ) -> CallHandle<C::Future, R> {
        let codec = options.codec.unwrap_or(self.codec);
        let body = match codec.encode(args) {
            Ok(body) => body,
            Err(status) => return CallHandle::failed(status.not_executed()),
        };
        let request = OutgoingRequest {
            method: method.to_owned(),
            codec,
            body,
            metadata: options.metadata,
            timeout: options.timeout.or(self.timeout),
            idempotent: options.idempotent,
        };
        CallHandle {
            state: HandleState::Running(self.caller.call(request)),
            _reply: PhantomData,
        }
    }
}

impl Client<Channel> {
    /// Connects one multiplexed TCP [`Channel`] to `addr` with
    /// [`ChannelConfig::default`], and wraps it with [`Client::new`]'s defaults.
    /// For other settings, a pool or another transport: [`Channel::connect`],
    /// [`Pool::new`], then [`Client::new`].
    pub async fn connect(addr: &str) -> Result<Client<Channel>, Status> {
        let channel =
            Channel::connect(&crate::transport::Tcp, addr, ChannelConfig::default()).await?;
        Ok(Client::new(channel))
    }
}

enum HandleState<F> {
    Running(F),
    Failed(Option<Status>),
}

/// A call in flight whose reply decodes to `R`.
pub struct CallHandle<F, R> {
    /// The pending call, or why it never started.
    state: HandleState<F>,
    /// The reply type.
    _reply: PhantomData<fn() -> R>,
}

impl<F, R> std::fmt::Debug for CallHandle<F, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallHandle").finish_non_exhaustive()
    }
}

impl<F, R> CallHandle<F, R> {
    fn failed(status: Status) -> CallHandle<F, R> {
        CallHandle {
            state: HandleState::Failed(Some(status)),
            _reply: PhantomData,
        }
    }
}

impl<F, R> Future for CallHandle<F, R>
where
    F: Future<Output = Result<Reply, Status>> + Unpin,
    R: DeserializeOwned,
{
    type Output = Result<R, Status>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        match &mut self.state {
            HandleState::Failed(status) => Poll::Ready(Err(status
                .take()
                .unwrap_or_else(|| Status::internal("call polled after completion")))),
            HandleState::Running(future) => match Pin::new(future).poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Err(status)) => Poll::Ready(Err(status)),
                Poll::Ready(Ok(reply)) => {
                    Poll::Ready(reply.codec.decode(&reply.body).map_err(|status| {
                        Status::internal(format!("reply does not decode: {}", status.message()))
                    }))
                }
            },
        }
    }
}
