//! One server connection on the shared engine (`conn`): read frames, dispatch
//! requests onto their own tasks, answer pings and cancels, drain on shutdown.
//! The same task writes the replies: those of handlers that finish inline are
//! written right after the batch of frames that asked for them, without waking
//! another task.
//!
//! Every bound the server promises is enforced here: reading stops while the
//! outgoing queue is over its byte budget (and a peer that stays over it is
//! cut), a partly received frame must keep making progress, a new connection
//! must send a whole frame soon, and an idle connection closes.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll, Waker};

use futures_util::FutureExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tower::{Service as _, ServiceExt as _};

use super::admission::{ConnHandle, StatsInner};
use super::{BoxService, ServerConfig};
use crate::conn::{FrameReader, Outbox, QueueError, ReadBudget, ReadError, WriteQueue};
use crate::context::{poll_with_deadline, with_deadline, Context};
use crate::observe::{code_of, MethodLabels, Scoped, ServerCall, TRACEPARENT};
use crate::protocol::{
    goaway_frame, request_from_frame, response_frame, Codec, Frame, FrameCodec, FrameKind,
};
use crate::server::router::{Request, Response};
use crate::status::Status;
use crate::transport::Connection;

/// What a connection shares with its server.
pub(crate) struct Shared {
    /// Limits and timings.
    pub(crate) config: Arc<ServerConfig>,
    /// Server-wide figures this connection adds to.
    pub(crate) stats: Arc<StatsInner>,
    /// The server-wide budget for partly received frames.
    pub(crate) read_budget: Arc<ReadBudget>,
    /// How the server sees this connection (to shed it when idle).
    pub(crate) handle: Arc<ConnHandle>,
    /// The method labels metrics may use.
    pub(crate) labels: Arc<MethodLabels>,
}

/// A connection's slot under the connection limit.
pub(crate) enum Admitted {
    /// A slot was free.
    Now(OwnedSemaphorePermit),
    /// An idle connection is being shed for this one: wait for its slot.
    After(Arc<Semaphore>),
}

/// Handlers running for one connection, by request id, so a cancel can stop one
/// and shutdown can wait for all.
struct InFlight {
    /// Abort handles by request id.
    tasks: Mutex<BTreeMap<u64, AbortHandle>>,
    /// Signalled whenever a handler finishes, so a draining connection can re-check.
    finished: Notify,
    /// Mirrors the number of tasks for the server, which sheds idle connections.
    handle: Arc<ConnHandle>,
}

impl InFlight {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, AbortHandle>> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn insert(&self, tasks: &mut BTreeMap<u64, AbortHandle>, id: u64, task: AbortHandle) {
        tasks.insert(id, task);
        self.handle.calls.store(tasks.len(), Ordering::Relaxed);
    }

    fn remove(&self, id: u64) -> Option<AbortHandle> {
        let removed = {
            let mut tasks = self.lock();
            let removed = tasks.remove(&id);
            self.handle.calls.store(tasks.len(), Ordering::Relaxed);
            removed
        };
        self.finished.notify_one();
        removed
    }

    fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn abort_all(&self) {
        for (_, task) in std::mem::take(&mut *self.lock()) {
            task.abort();
        }
        self.handle.calls.store(0, Ordering::Relaxed);
    }
}

/// Most frames dispatched per wake-up of the reader before it checks shutdown
/// and its timers again (a bound, so a flood cannot starve them).
const FRAMES_PER_BATCH_MAX: u64 = 256;

/// Queues a response. A reply that breaks a frame limit is replaced by an
/// `Internal` error, so the caller always gets an answer.
fn send_response(queue: &WriteQueue, id: u64, codec: Codec, result: Result<bytes::Bytes, Status>) {
    if let Err(QueueError::Protocol(error)) = queue.send_always(&response_frame(id, codec, result))
    {
        let status = Status::internal(format!("reply not sent: {error}"));
        let _ = queue.send_always(&response_frame(id, codec, Err(status)));
    }
}

/// What a handler's future, run under `catch_unwind`, means for the caller
/// (the binary protocol's and the HTTP endpoint's).
pub(crate) fn result_of(
    outcome: Result<Result<Response, Infallible>, Box<dyn std::any::Any + Send>>,
) -> Result<bytes::Bytes, Status> {
    match outcome {
        Ok(Ok(Response { result })) => result,
        Ok(Err(never)) => match never {},
        Err(panic) => Err(Status::internal(format!(
            "handler panicked: {}",
            panic_message(&*panic)
        ))),
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("non-string panic payload")
}

/// Why a connection's timers end it.
enum Verdict {
    /// A bound was broken: cut, and say why.
    Cut(String),
    /// No frames and no calls for the idle timeout: close quietly.
    Idle,
}

/// A connection's timers, checked every [`ServerConfig::check_interval`]
/// against counters (bytes and frames read) rather than by a clock read per frame.
struct Watchdog {
    /// When the connection was admitted (the first frame's deadline runs from here).
    started: Instant,
    /// Bytes read at the last check.
    bytes_seen: u64,
    /// When bytes last arrived, as of the checks.
    progress_at: Instant,
    /// Frames read at the last check.
    frames_seen: u64,
    /// When the connection counts as idle, unless a frame arrives first.
    idle_deadline: Instant,
    /// Since when the outgoing queue has been over its budget, if it is.
    over_budget_since: Option<Instant>,
}

impl Watchdog {
    fn new(now: Instant, config: &ServerConfig) -> Watchdog {
        Watchdog {
            started: now,
            bytes_seen: 0,
            progress_at: now,
            frames_seen: 0,
            idle_deadline: now + config.idle_timeout,
            over_budget_since: None,
        }
    }

    fn check<R: AsyncRead + Unpin>(
        &mut self,
        now: Instant,
        reader: &FrameReader<R>,
        queue: &WriteQueue,
        calls_running: bool,
        config: &ServerConfig,
    ) -> Option<Verdict> {
        if reader.bytes_read() != self.bytes_seen {
            self.bytes_seen = reader.bytes_read();
            self.progress_at = now;
        }
        if reader.frames_read() != self.frames_seen {
            self.frames_seen = reader.frames_read();
            self.idle_deadline = now + config.idle_timeout;
        }
        if queue.is_full() {
            let since = *self.over_budget_since.get_or_insert(now);
            if now.duration_since(since) >= config.write_stall_timeout {
                return Some(Verdict::Cut(format!(
                    "peer is not reading: {} bytes queued for it, over the budget of {} for {:?}",
                    queue.unwritten(),
                    config.write_backlog_max,
                    config.write_stall_timeout
                )));
            }
        } else {
            self.over_budget_since = None;
        }
        if self.frames_seen == 0 && now.duration_since(self.started) >= config.first_frame_timeout {
            return Some(Verdict::Cut(format!(
                "no whole frame within {:?} of connecting",
                config.first_frame_timeout
            )));
        }
        if reader.has_partial_frame()
            && now.duration_since(self.progress_at) >= config.frame_timeout
        {
            return Some(Verdict::Cut(format!(
                "a frame partly received made no progress for {:?}",
                config.frame_timeout
            )));
        }
        if now >= self.idle_deadline && !calls_running && !reader.has_partial_frame() {
            return Some(Verdict::Idle);
        }
        None
    }
}

/// Counts the connection in the server's figures while it lives.
struct Counted(Arc<StatsInner>);

impl Counted {
    fn new(stats: Arc<StatsInner>) -> Counted {
        stats.connections.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        crate::observe::metrics::server_connections(1.0);
        Counted(stats)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        crate::observe::metrics::server_connections(-1.0);
    }
}

/// Serves one connection until the peer leaves, the stream breaks, a bound is
/// broken, or shutdown (or shedding) finishes draining it.
pub(crate) async fn serve_connection<R, W>(
    conn: Connection<R, W>,
    service: BoxService,
    shared: Shared,
    admitted: Admitted,
) where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
{
    let peer = conn.peer;
    let config = Arc::clone(&shared.config);
    let _permit = match admitted {
        Admitted::Now(permit) => permit,
        // The shed connection has nothing in flight and closes at once; the wait
        // is bounded all the same.
        Admitted::After(permits) => {
            let acquire = permits.acquire_owned();
            match tokio::time::timeout(config.first_frame_timeout, acquire).await {
                Ok(Ok(permit)) => permit,
                _ => {
                    tracing::warn!(%peer, "no connection slot freed in time: closing");
                    return;
                }
            }
        }
    };
    let _counted = Counted::new(Arc::clone(&shared.stats));
    let queue = Arc::new(WriteQueue::with_counter(
        FrameCodec::new(config.limits),
        config.write_backlog_max,
        Arc::clone(&shared.handle.unwritten),
    ));
    let mut outbox = Outbox::new(conn.writer);
    let in_flight = Arc::new(InFlight {
        tasks: Mutex::default(),
        finished: Notify::new(),
        handle: Arc::clone(&shared.handle),
    });
    // However this function ends (even by a panic), stop the handlers and close
    // the queue, so handlers still running queue nothing more.
    let _cleanup = Cleanup {
        in_flight: Arc::clone(&in_flight),
        queue: Arc::clone(&queue),
    };
    let mut reader = FrameReader::new(
        conn.reader,
        FrameCodec::new(config.limits),
        Some(Arc::clone(&shared.read_budget)),
    );
    let mut dispatcher = Dispatcher {
        service,
        queue: Arc::clone(&queue),
        in_flight: Arc::clone(&in_flight),
        config: Arc::clone(&config),
        peer,
        draining: false,
        last_read: 0,
        labels: Arc::clone(&shared.labels),
    };
    let grace = tokio::time::sleep(config.shutdown_grace);
    tokio::pin!(grace);
    let check_interval = config.check_interval();
    let checks = tokio::time::sleep(check_interval);
    tokio::pin!(checks);
    let mut watchdog = Watchdog::new(Instant::now(), &config);
    // Shutdown or shedding. Polled in place across loop turns: a future made
    // afresh each turn would register with (and unregister from) the token's
    // notifier every read.
    let drain = shared.handle.drain.clone();
    let drain_signal = drain.cancelled();
    tokio::pin!(drain_signal);
    // Fires when a spawned handler queues a reply while the outbox is idle.
    let replies_queued = queue.notified();
    tokio::pin!(replies_queued);
    let mut write_error = None;
    loop {
        // A draining connection closes once its calls are done: requests that
        // crossed the goaway need no answer, the goaway told the client they
        // did not run (their ids are above its last-read id).
        if dispatcher.draining && in_flight.is_empty() {
            break;
        }
        // Take what is queued; with nothing queued, the queue is told to wake
        // `replies_queued` for the next reply.
        outbox.refill(&queue);
        // Backpressure: over the budget, read nothing more from this peer until
        // what is queued for it is written (TCP then pushes back on it).
        let reading = !queue.is_full();
        tokio::select! {
            biased;
            // Writes first: a chunk the stream is not ready for is driven to
            // completion before anything else, then the outbox refills.
            written = outbox.write_chunk(&queue), if outbox.has_chunk() => {
                if let Err(error) = written {
                    write_error = Some(error);
                    break;
                }
            }
            () = &mut replies_queued, if !outbox.has_chunk() => {
                replies_queued.set(queue.notified());
            }
            () = &mut drain_signal, if !dispatcher.draining => {
                tracing::debug!(%peer, "draining connection (shutdown, or shed to make room)");
                dispatcher.start_draining();
                grace.as_mut().reset(Instant::now() + config.shutdown_grace);
            }
            frame = reader.next(), if reading => {
                if read_batch(&mut dispatcher, &mut reader, frame, &shared.stats).await {
                    break;
                }
            }
            () = in_flight.finished.notified(), if dispatcher.draining => {}
            () = &mut grace, if dispatcher.draining => {
                tracing::warn!(%peer, "shutdown grace period over: abandoning in-flight calls");
                break;
            }
            () = &mut checks => {
                let now = Instant::now();
                match watchdog.check(now, &reader, &queue, !in_flight.is_empty(), &config) {
                    Some(Verdict::Cut(reason)) => {
                        shared.stats.connections_cut.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%peer, %reason, "cutting connection");
                        // What is queued for a peer that does not read is dropped
                        // with the connection rather than flushed.
                        return;
                    }
                    Some(Verdict::Idle) => {
                        tracing::debug!(%peer, "closing idle connection");
                        break;
                    }
                    None => checks.as_mut().reset(now + check_interval),
                }
            }
        }
    }
    drop(_cleanup);
    drop(reader);
    let result = match write_error {
        Some(error) => Err(error),
        // Flush what is queued (a goaway, the last replies) and close — within
        // the grace period: a peer that stops reading must not hold the
        // connection (and its permit, and shutdown) forever.
        None => match tokio::time::timeout(config.shutdown_grace, outbox.finish(&queue)).await {
            Ok(result) => result,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "peer did not read the final frames within the grace period",
            )),
        },
    };
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "connection write failed");
    }
}

/// Dispatches `first` and every frame already readable (at most a batch, and
/// none once the outgoing queue is over its budget), then goes back to the
/// other branches: one loop turn (and one clock read, the frames' arrival time)
/// per read rather than per frame. Replies queued meanwhile are taken at the top
/// of the loop: no wake-up. Returns true when the connection must end.
async fn read_batch<R: AsyncRead + Unpin>(
    dispatcher: &mut Dispatcher,
    reader: &mut FrameReader<R>,
    first: Option<Result<Frame, ReadError>>,
    stats: &StatsInner,
) -> bool {
    dispatcher.queue.writer_busy();
    let arrived = Instant::now();
    let peer = dispatcher.peer;
    let mut item = first;
    let mut handled: u64 = 0;
    loop {
        match item {
            Some(Ok(frame)) => dispatcher.on_frame(frame, arrived).await,
            Some(Err(error)) => {
                stats.connections_cut.fetch_add(1, Ordering::Relaxed);
                match error {
                    ReadError::Protocol(error) => {
                        tracing::warn!(%peer, %error, "closing connection: malformed frame");
                    }
                    ReadError::BudgetExhausted(_) => {
                        tracing::warn!(%peer, reason = %error, "cutting connection");
                    }
                }
                return true;
            }
            None => return true,
        }
        handled += 1;
        if handled >= FRAMES_PER_BATCH_MAX || dispatcher.queue.is_full() {
            return false;
        }
        // What is buffered first (no future to build), then one read that
        // does not wait.
        match reader.buffered() {
            Some(next) => item = Some(next),
            None => match reader.next().now_or_never() {
                Some(next) => item = next,
                None => return false,
            },
        }
    }
}

/// Stops a connection's handlers and closes its write queue when dropped.
struct Cleanup {
    /// The connection's running handlers.
    in_flight: Arc<InFlight>,
    /// Its write queue.
    queue: Arc<WriteQueue>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.in_flight.abort_all();
        self.queue.close();
    }
}

/// Turns frames into handler tasks.
struct Dispatcher {
    /// The middleware stack ending in the router.
    service: BoxService,
    /// Where responses go.
    queue: Arc<WriteQueue>,
    /// Running handlers.
    in_flight: Arc<InFlight>,
    /// Limits.
    config: Arc<ServerConfig>,
    /// The caller, for contexts and logs.
    peer: std::net::SocketAddr,
    /// After goaway: new requests are refused.
    draining: bool,
    /// The highest request id read before the goaway: the goaway tells the
    /// client that every request above it was not executed.
    last_read: u64,
    /// The method labels metrics may use.
    labels: Arc<MethodLabels>,
}

impl Dispatcher {
    fn start_draining(&mut self) {
        self.draining = true;
        let _ = self.queue.send_always(&goaway_frame(self.last_read));
    }

    fn reply(&self, id: u64, status: Status) {
        let _ = self
            .queue
            .send_always(&response_frame(id, Codec::default(), Err(status)));
    }

    /// Handles one frame that arrived at `arrived`.
    async fn on_frame(&mut self, frame: Frame, arrived: Instant) {
        match frame.kind {
            FrameKind::Request => self.on_request(frame, arrived).await,
            FrameKind::Cancel => {
                if let Some(task) = self.in_flight.remove(frame.request_id) {
                    task.abort();
                }
            }
            FrameKind::Ping => {
                let _ = self
                    .queue
                    .send_always(&Frame::control(FrameKind::Pong, frame.request_id));
            }
            // A client's goaway, stray pongs and responses need no answer.
            FrameKind::GoAway | FrameKind::Pong | FrameKind::Response => {}
        }
    }

    async fn on_request(&mut self, frame: Frame, arrived: Instant) {
        let id = frame.request_id;
        if self.draining {
            return self.reply(
                id,
                Status::unavailable("server is shutting down").not_executed(),
            );
        }
        self.last_read = self.last_read.max(id);
        if self.queue.is_full() {
            // The peer is not reading our replies fast enough: admit no new
            // work until it does (replies to admitted work are never dropped).
            let status = Status::resource_exhausted(
                "reply backlog to this client is full: it is not reading fast enough",
            );
            return self.reply(id, status.not_executed());
        }
        let parts = match request_from_frame(frame) {
            Ok(parts) => parts,
            Err(status) => return self.reply(id, status),
        };
        let method = parts.method;
        let codec = parts.codec;
        let deadline = match parts.deadline {
            Some(budget) if budget.is_zero() => {
                let status =
                    Status::deadline_exceeded(format!("{method}: arrived past its deadline"));
                return self.reply(id, status.not_executed());
            }
            Some(budget) => Some(arrived + budget),
            None => None,
        };
        let (in_flight_count, duplicate) = {
            let tasks = self.in_flight.lock();
            (tasks.len(), tasks.contains_key(&id))
        };
        if in_flight_count >= self.config.max_in_flight_per_connection {
            let status = Status::resource_exhausted(format!(
                "{} calls in flight on this connection (limit)",
                self.config.max_in_flight_per_connection
            ));
            return self.reply(id, status.not_executed());
        }
        if duplicate {
            let status = Status::invalid_argument(format!("request id {id} is already in flight"));
            return self.reply(id, status.not_executed().with_retryable(false));
        }
        let mut observed = ServerCall::start(
            &method,
            id,
            self.peer,
            parts.meta.get(TRACEPARENT),
            arrived,
            &self.labels,
        );
        let ctx = Context::new(
            method,
            id,
            self.peer,
            deadline,
            parts.meta,
            codec,
            parts.idempotent,
        );
        let request = Request {
            ctx,
            body: parts.body,
        };
        // Our services are always ready or apply backpressure here, which stops
        // this connection's reader: that is the intended bound.
        let ready: Result<_, Infallible> = self.service.ready().await;
        let Ok(service) = ready;
        // Middleware runs user code synchronously in `call` (an auth check, a
        // custom layer): a panic there is a handler panic too, not the end of
        // the connection.
        let call = std::panic::catch_unwind(AssertUnwindSafe(|| {
            observed.in_scope(|| service.call(request))
        }));
        let call = match call {
            Ok(call) => Scoped::new(call, observed.span.clone(), observed.scope),
            Err(panic) => {
                let status =
                    Status::internal(format!("middleware panicked: {}", panic_message(&*panic)));
                observed.finish(status.code());
                return send_response(&self.queue, id, codec, Err(status));
            }
        };
        // Most handlers finish without waiting: run them here and skip a task
        // spawn, a timer and a cross-thread wake-up. (A future left pending by
        // this poll re-registers its waker when the spawned task polls it.) The
        // call future is already boxed, so it moves into the task as it is.
        let mut call = call;
        let first_poll = std::panic::catch_unwind(AssertUnwindSafe(|| {
            poll_with_deadline(
                deadline,
                &mut call,
                &mut TaskContext::from_waker(Waker::noop()),
            )
        }));
        let result = match first_poll {
            Ok(Poll::Pending) => None,
            Ok(Poll::Ready(result)) => Some(result_of(Ok(result))),
            Err(panic) => Some(result_of(Err(panic))),
        };
        if let Some(result) = result {
            observed.finish(code_of(&result));
            return send_response(&self.queue, id, codec, result);
        }
        let handler = async move {
            result_of(
                AssertUnwindSafe(with_deadline(deadline, call))
                    .catch_unwind()
                    .await,
            )
        };
        let queue = Arc::clone(&self.queue);
        let in_flight = Arc::clone(&self.in_flight);
        // The lock is held across spawn and insert so that a handler finishing at
        // once (multi-threaded runtime) cannot remove its entry before it exists.
        let mut tasks = self.in_flight.lock();
        let task = tokio::spawn(async move {
            let result = match deadline {
                Some(deadline) => tokio::time::timeout_at(deadline, handler)
                    .await
                    .unwrap_or_else(|_| {
                        Err(Status::deadline_exceeded(
                            "handler ran past the call's deadline",
                        ))
                    }),
                None => handler.await,
            };
            observed.finish(code_of(&result));
            send_response(&queue, id, codec, result);
            in_flight.remove(id);
        });
        self.in_flight.insert(&mut tasks, id, task.abort_handle());
    }
}
