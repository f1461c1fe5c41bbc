//! [`Pool`]: up to N channels to one endpoint, for when one connection is not
//! enough (a single TCP stream is one core's worth of parsing). Each call goes to
//! the least-loaded usable channel; dead channels are replaced on demand.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt, Shared};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{Caller, Channel, ChannelConfig, OutgoingRequest, PendingCall, Reply};
use crate::status::Status;
use crate::transport::Transport;

type Connecting = Shared<BoxFuture<'static, Result<Channel, Status>>>;

/// Counters describing how the pool has been used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Calls sent on an already-open channel.
    pub reused: u64,
    /// Calls that had to wait for a new connection.
    pub waited_for_connect: u64,
    /// Connections opened.
    pub connects: u64,
    /// Connection attempts that failed.
    pub connect_failures: u64,
    /// Calls failed at once because the endpoint was in reconnect backoff.
    pub fast_failures: u64,
}

struct State {
    /// Open channels (some may have died since; pruned on each call).
    channels: Vec<Channel>,
    /// A connection attempt in progress, shared by every call that needs it.
    connecting: Option<Connecting>,
    /// Connect attempts failed in a row (drives the backoff).
    failures: u32,
    /// After a failed connect, no new attempt before this instant: calls that
    /// find no open channel fail at once instead of each waiting out a connect
    /// timeout (gRPC's TRANSIENT_FAILURE).
    backoff_until: Option<Instant>,
    /// Why the last connect failed (quoted by fail-fast errors).
    last_error: Option<Status>,
    /// Whether a channel was ever open: a pool that lost its connection is
    /// degraded until it reconnects; a pool never used is merely idle.
    ever_connected: bool,
}

/// What a pool can do for a call right now (gRPC's subchannel states, simplified).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolHealth {
    /// A channel is open.
    Ready,
    /// Never connected: the first call will connect (and wait for it).
    Idle,
    /// It had a connection and lost it, or connects have failed: reconnecting
    /// in the background. A balancer should prefer other endpoints.
    Degraded,
}

/// The delay before reconnect attempt `failures + 1`: doubling from
/// `initial`, capped at `max`. No jitter: the seeded balancers and breakers
/// above the pool already spread load, and a pool has one endpoint.
fn reconnect_delay(config: &ChannelConfig, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(20);
    config
        .reconnect_backoff_initial
        .saturating_mul(1 << doublings)
        .min(config.reconnect_backoff_max)
}

struct Inner<T> {
    transport: T,
    addr: String,
    config: ChannelConfig,
    size: usize,
    state: Mutex<State>,
    reused: AtomicU64,
    waited: AtomicU64,
    connects: AtomicU64,
    connect_failures: AtomicU64,
    fast_failures: AtomicU64,
}

/// A pool of up to `size` channels to one endpoint.
pub struct Pool<T: Transport> {
    /// Shared with in-progress connects.
    inner: Arc<Inner<T>>,
}

impl<T: Transport> Clone for Pool<T> {
    fn clone(&self) -> Pool<T> {
        Pool {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T: Transport> std::fmt::Debug for Pool<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("addr", &self.inner.addr)
            .field("size", &self.inner.size)
            .field("stats", &self.stats())
            .finish()
    }
}

impl<T: Transport> Pool<T> {
    /// A pool of at most `size` (≥ 1) channels to `addr`. Connects lazily.
    pub fn new(transport: T, addr: &str, config: ChannelConfig, size: usize) -> Pool<T> {
        Pool {
            inner: Arc::new(Inner {
                transport,
                addr: addr.to_owned(),
                config,
                size: size.max(1),
                state: Mutex::new(State {
                    channels: Vec::new(),
                    connecting: None,
                    failures: 0,
                    backoff_until: None,
                    last_error: None,
                    ever_connected: false,
                }),
                reused: AtomicU64::new(0),
                waited: AtomicU64::new(0),
                connects: AtomicU64::new(0),
                connect_failures: AtomicU64::new(0),
                fast_failures: AtomicU64::new(0),
            }),
        }
    }

    /// Opens every channel now, so the first calls do not wait.
    pub async fn warm_up(&self) -> Result<(), Status> {
        while self.open_channels() < self.inner.size {
            self.connect_shared().await?;
        }
        Ok(())
    }

    /// The endpoint.
    pub fn addr(&self) -> &str {
        &self.inner.addr
    }

    /// Usable channels right now.
    pub fn open_channels(&self) -> usize {
        self.lock()
            .channels
            .iter()
            .filter(|c| c.is_usable())
            .count()
    }

    /// Calls waiting for replies across all channels.
    pub fn in_flight(&self) -> usize {
        self.lock().channels.iter().map(Channel::in_flight).sum()
    }

    /// Usage counters.
    pub fn stats(&self) -> PoolStats {
        PoolStats {
            reused: self.inner.reused.load(Ordering::Relaxed),
            waited_for_connect: self.inner.waited.load(Ordering::Relaxed),
            connects: self.inner.connects.load(Ordering::Relaxed),
            connect_failures: self.inner.connect_failures.load(Ordering::Relaxed),
            fast_failures: self.inner.fast_failures.load(Ordering::Relaxed),
        }
    }

    /// Whether a call would find an open channel. A degraded pool with no
    /// connect in progress starts one in the background when its backoff allows,
    /// so an endpoint that balancers avoid still recovers by itself.
    pub fn health(&self) -> PoolHealth {
        let mut state = self.lock();
        state.channels.retain(Channel::is_usable);
        if !state.channels.is_empty() {
            return PoolHealth::Ready;
        }
        if !state.ever_connected && state.failures == 0 {
            return PoolHealth::Idle;
        }
        let backing_off = state.backoff_until.is_some_and(|t| Instant::now() < t);
        let start = state.connecting.is_none() && !backing_off;
        drop(state);
        if start {
            drop(self.connect_shared()); // runs on its own task
        }
        PoolHealth::Degraded
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The connect in progress, or a new one. At most one connect runs at a time.
    fn connect_shared(&self) -> Connecting {
        let mut state = self.lock();
        if let Some(connecting) = &state.connecting {
            return connecting.clone();
        }
        let pool = self.clone();
        let connecting = async move {
            let inner = &pool.inner;
            let result =
                Channel::connect(&inner.transport, &inner.addr, inner.config.clone()).await;
            let mut state = pool.lock();
            state.connecting = None;
            match &result {
                Ok(channel) => {
                    inner.connects.fetch_add(1, Ordering::Relaxed);
                    state.channels.push(channel.clone());
                    state.ever_connected = true;
                    state.failures = 0;
                    state.backoff_until = None;
                    state.last_error = None;
                }
                Err(status) => {
                    inner.connect_failures.fetch_add(1, Ordering::Relaxed);
                    state.failures = state.failures.saturating_add(1);
                    let delay = reconnect_delay(&inner.config, state.failures);
                    state.backoff_until = Some(Instant::now() + delay);
                    state.last_error = Some(status.clone());
                }
            }
            result
        }
        .boxed()
        .shared();
        state.connecting = Some(connecting.clone());
        // Drive the connect on a task of its own: a `Shared` future only runs
        // while polled, and the calls awaiting it may be dropped (deadline, hedge
        // loser), which would leave it stalled in `connecting` for good.
        tokio::spawn(connecting.clone().map(|_| ()));
        connecting
    }
}

impl<T: Transport> Caller for Pool<T> {
    type Future = PoolCall;

    fn call(&self, request: OutgoingRequest) -> PoolCall {
        let (best, room) = {
            let mut state = self.lock();
            state.channels.retain(Channel::is_usable);
            let best = state.channels.iter().min_by_key(|c| c.in_flight()).cloned();
            let room = state.channels.len() < self.inner.size;
            // Once a connect has failed, calls that find no open channel fail at
            // once rather than queue behind the next attempt, which runs in the
            // background when the backoff allows.
            if best.is_none() && state.failures > 0 {
                let now = Instant::now();
                let waiting = state.backoff_until.is_some_and(|t| now < t);
                let reason = state
                    .last_error
                    .as_ref()
                    .map_or("", Status::message)
                    .to_owned();
                let failures = state.failures;
                drop(state);
                if !waiting {
                    drop(self.connect_shared()); // runs on its own task
                }
                let status = Status::unavailable(format!(
                    "{} unreachable after {failures} failed connects (last: {reason}); reconnecting in the background",
                    self.inner.addr
                ));
                self.inner.fast_failures.fetch_add(1, Ordering::Relaxed);
                return PoolCall::Failed(Some(status.not_executed()));
            }
            (best, room)
        };
        match best {
            // Reuse unless the best channel is busy and the pool may grow.
            Some(channel) if !room || channel.in_flight() == 0 => {
                self.inner.reused.fetch_add(1, Ordering::Relaxed);
                PoolCall::Ready(channel.start(request))
            }
            best => {
                let connecting = self.connect_shared();
                if let Some(channel) = best {
                    // Grow in the background (the connect drives itself); this
                    // call uses what exists.
                    drop(connecting);
                    self.inner.reused.fetch_add(1, Ordering::Relaxed);
                    return PoolCall::Ready(channel.start(request));
                }
                self.inner.waited.fetch_add(1, Ordering::Relaxed);
                // The task-local inherited deadline does not cross into the task:
                // fix the call's deadline now and send what remains of it later.
                let deadline = crate::context::call_deadline(request.timeout, Instant::now());
                // Neither do the trace scope and the caller's span: carry both.
                let scope = crate::observe::Scope::current();
                let span = tracing::Span::current();
                PoolCall::Connecting(tokio::spawn(async move {
                    let channel = connecting.await?;
                    let mut request = request;
                    if let Some(deadline) = deadline {
                        let now = Instant::now();
                        if deadline <= now {
                            return Err(Status::deadline_exceeded(format!(
                                "{}: the deadline passed while connecting",
                                request.method
                            ))
                            .not_executed());
                        }
                        request.timeout = Some(deadline - now);
                    }
                    span.in_scope(|| scope.enter(|| channel.start(request)))
                        .await
                }))
            }
        }
    }
}

/// A call through a [`Pool`].
#[derive(Debug)]
pub enum PoolCall {
    /// Sent on an open channel.
    Ready(PendingCall),
    /// Waiting for a connection, on a task of its own so it progresses unawaited.
    Connecting(JoinHandle<Result<Reply, Status>>),
    /// Failed before sending (the endpoint is in reconnect backoff).
    Failed(Option<Status>),
}

impl Future for PoolCall {
    type Output = Result<Reply, Status>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            PoolCall::Ready(call) => Pin::new(call).poll(cx),
            PoolCall::Failed(status) => Poll::Ready(Err(status
                .take()
                .unwrap_or_else(|| Status::internal("call polled after completion")))),
            PoolCall::Connecting(task) => Pin::new(task).poll(cx).map(|joined| {
                joined.unwrap_or_else(|error| {
                    Err(Status::internal(format!("pool call task failed: {error}")))
                })
            }),
        }
    }
}

impl Drop for PoolCall {
    fn drop(&mut self) {
        if let PoolCall::Connecting(task) = self {
            task.abort();
        }
    }
}
