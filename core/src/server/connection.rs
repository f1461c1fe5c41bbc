//! One server connection: read frames, dispatch requests onto their own tasks,
//! answer pings and cancels, drain on shutdown. The same task writes the
//! replies: those of handlers that finish inline are written right after the
//! batch of frames that asked for them, without waking another task.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll, Waker};

use futures_util::{FutureExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit};
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tokio_util::codec::FramedRead;
use tower::{Service as _, ServiceExt as _};

use super::{BoxService, ServerConfig};
use crate::conn::{Outbox, QueueError, WriteQueue};
use crate::context::{poll_with_deadline, with_deadline, Context};
use crate::protocol::{Codec, Flags, Frame, FrameCodec, FrameKind};
use crate::server::router::{Request, Response};
use crate::status::Status;
use crate::transport::Connection;

/// Handlers running for one connection, by request id, so a cancel can stop one
/// and shutdown can wait for all.
#[derive(Default)]
struct InFlight {
    /// Abort handles by request id.
    tasks: Mutex<BTreeMap<u64, AbortHandle>>,
    /// Signalled whenever a handler finishes, so a draining connection can re-check.
    finished: Notify,
}

impl InFlight {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, AbortHandle>> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn remove(&self, id: u64) -> Option<AbortHandle> {
        let removed = self.lock().remove(&id);
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
    }
}

/// Most frames dispatched per wake-up of the reader before it checks shutdown
/// and its timers again (a bound, so a flood cannot starve them).
const FRAMES_PER_BATCH_MAX: u64 = 256;

/// The response frame for `result` to request `id`.
pub(crate) fn response_frame(id: u64, codec: Codec, result: Result<bytes::Bytes, Status>) -> Frame {
    match result {
        Ok(body) => Frame {
            kind: FrameKind::Response,
            codec: codec.id(),
            flags: Flags::default(),
            request_id: id,
            meta: Default::default(),
            body,
        },
        Err(status) => {
            let mut frame = Frame::control(FrameKind::Response, id);
            frame.meta.status = Some(status.code());
            frame.meta.message = Some(status.message().to_owned());
            if !status.may_have_executed() {
                frame.flags = Flags(Flags::NOT_EXECUTED);
            }
            frame
        }
    }
}

/// Queues a response. A reply that breaks a frame limit is replaced by an
/// `Internal` error, so the caller always gets an answer.
fn send_response(queue: &WriteQueue, id: u64, codec: Codec, result: Result<bytes::Bytes, Status>) {
    if let Err(QueueError::Protocol(error)) = queue.send_always(&response_frame(id, codec, result))
    {
        let status = Status::internal(format!("reply not sent: {error}"));
        let _ = queue.send_always(&response_frame(id, codec, Err(status)));
    }
}

/// What a handler's future, run under `catch_unwind`, means for the caller.
fn result_of(
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

/// Serves one connection until the peer leaves, the stream breaks, or shutdown
/// finishes draining it.
pub(crate) async fn serve_connection<R, W>(
    conn: Connection<R, W>,
    service: BoxService,
    config: Arc<ServerConfig>,
    mut shutdown: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) where
    R: AsyncRead + Send + Unpin + 'static,
    W: AsyncWrite + Send + Unpin + 'static,
{
    let peer = conn.peer;
    let queue = Arc::new(WriteQueue::new(
        FrameCodec::new(config.limits),
        config.write_backlog_max,
    ));
    let mut outbox = Outbox::new(conn.writer);
    let in_flight = Arc::new(InFlight::default());
    // However this function ends (even by a panic), stop the handlers and close
    // the queue, so handlers still running queue nothing more.
    let _cleanup = Cleanup {
        in_flight: Arc::clone(&in_flight),
        queue: Arc::clone(&queue),
    };
    let mut frames = FramedRead::new(conn.reader, FrameCodec::new(config.limits));
    let mut dispatcher = Dispatcher {
        service,
        queue: Arc::clone(&queue),
        in_flight: Arc::clone(&in_flight),
        config: Arc::clone(&config),
        peer,
        draining: *shutdown.borrow(),
    };
    let grace = tokio::time::sleep(config.shutdown_grace);
    tokio::pin!(grace);
    // Idleness is checked every eighth of the idle timeout rather than by reading
    // the clock per frame: a connection closes between `idle_timeout` and
    // `idle_timeout × 9/8` after its last frame (once no handler runs).
    let idle_check_interval = config.idle_timeout / 8;
    let idle = tokio::time::sleep(idle_check_interval);
    tokio::pin!(idle);
    let mut idle_deadline = Instant::now() + config.idle_timeout;
    // Frames read since the last idle check.
    let mut frames_read: u64 = 0;
    // Polled in place across loop turns: `changed()` made afresh each turn would
    // register with (and unregister from) the channel's notifier every frame.
    let shutdown_signal = async move {
        loop {
            if shutdown.changed().await.is_err() || *shutdown.borrow() {
                return;
            }
        }
    };
    tokio::pin!(shutdown_signal);
    // Fires when a spawned handler queues a reply while the outbox is idle.
    let replies_queued = queue.notified();
    tokio::pin!(replies_queued);
    let mut write_error = None;
    loop {
        // Draining does not end when the last handler does: requests that
        // crossed the goaway are still on their way and must be read and
        // refused (Unavailable, not executed) rather than reset with the
        // connection, which would leave their callers unsure whether they ran.
        // A squall client closes its side once its calls are done; the grace
        // period bounds any other.
        // Take what is queued; with nothing queued, the queue is told to wake
        // `replies_queued` for the next reply.
        outbox.refill(&queue);
        tokio::select! {
            biased;
            // Writes first: a chunk the stream is not ready for is driven to
            // completion before anything else, then the outbox refills.
            written = outbox.write_chunk(), if outbox.has_chunk() => {
                if let Err(error) = written {
                    write_error = Some(error);
                    break;
                }
            }
            () = &mut replies_queued, if !outbox.has_chunk() => {
                replies_queued.set(queue.notified());
            }
            () = &mut shutdown_signal, if !dispatcher.draining => {
                dispatcher.start_draining();
                grace.as_mut().reset(Instant::now() + config.shutdown_grace);
            }
            frame = frames.next() => {
                // Dispatch this frame and every one already readable, then go back
                // to the other branches: one loop turn (and one clock read, the
                // frames' arrival time) per read rather than per frame. Replies
                // queued meanwhile are taken at the top of the loop: no wake-up.
                queue.writer_busy();
                let arrived = Instant::now();
                let mut item = frame;
                let mut handled: u64 = 0;
                let end = loop {
                    match item {
                        Some(Ok(frame)) => dispatcher.on_frame(frame, arrived).await,
                        Some(Err(error)) => {
                            tracing::warn!(%peer, %error, "closing connection: malformed frame");
                            break true;
                        }
                        None => break true,
                    }
                    handled += 1;
                    if handled >= FRAMES_PER_BATCH_MAX {
                        break false;
                    }
                    match frames.next().now_or_never() {
                        Some(next) => item = next,
                        None => break false,
                    }
                };
                frames_read += handled;
                if end {
                    break;
                }
            }
            () = in_flight.finished.notified(), if dispatcher.draining => {}
            () = &mut grace, if dispatcher.draining => {
                tracing::warn!(%peer, "shutdown grace period over: abandoning in-flight calls");
                break;
            }
            () = &mut idle => {
                let now = Instant::now();
                if frames_read > 0 {
                    frames_read = 0;
                    idle_deadline = now + config.idle_timeout;
                } else if now >= idle_deadline && in_flight.is_empty() {
                    tracing::debug!(%peer, "closing idle connection");
                    break;
                }
                idle.as_mut().reset(now + idle_check_interval);
            }
        }
    }
    drop(_cleanup);
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
}

impl Dispatcher {
    fn start_draining(&mut self) {
        self.draining = true;
        let _ = self
            .queue
            .send_always(&Frame::control(FrameKind::GoAway, 0));
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

    async fn on_request(&mut self, mut frame: Frame, arrived: Instant) {
        let id = frame.request_id;
        if self.draining {
            return self.reply(
                id,
                Status::unavailable("server is shutting down").not_executed(),
            );
        }
        if self.queue.is_full() {
            // The peer is not reading our replies fast enough: admit no new
            // work until it does (replies to admitted work are never dropped).
            let status = Status::resource_exhausted(
                "reply backlog to this client is full: it is not reading fast enough",
            );
            return self.reply(id, status.not_executed());
        }
        let Some(codec) = Codec::from_id(frame.codec) else {
            let status = Status::invalid_argument("request has no payload codec").not_executed();
            return self.reply(id, status.with_retryable(false));
        };
        let Some(method) = frame.meta.method.take() else {
            let status = Status::invalid_argument("request has no method").not_executed();
            return self.reply(id, status.with_retryable(false));
        };
        let deadline = match frame.meta.deadline {
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
        let idempotent = frame.flags.contains(Flags::IDEMPOTENT);
        let ctx = Context::new(
            method, id, self.peer, deadline, frame.meta, codec, idempotent,
        );
        let request = Request {
            ctx,
            body: frame.body,
        };
        // Our services are always ready or apply backpressure here, which stops
        // this connection's reader: that is the intended bound.
        let ready: Result<_, Infallible> = self.service.ready().await;
        let Ok(service) = ready;
        // Middleware runs user code synchronously in `call` (an auth check, a
        // custom layer): a panic there is a handler panic too, not the end of
        // the connection.
        let call = match std::panic::catch_unwind(AssertUnwindSafe(|| service.call(request))) {
            Ok(call) => call,
            Err(panic) => {
                let status =
                    Status::internal(format!("middleware panicked: {}", panic_message(&*panic)));
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
        match first_poll {
            Ok(Poll::Pending) => {}
            Ok(Poll::Ready(result)) => {
                return send_response(&self.queue, id, codec, result_of(Ok(result)))
            }
            Err(panic) => return send_response(&self.queue, id, codec, result_of(Err(panic))),
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
            send_response(&queue, id, codec, result);
            in_flight.remove(id);
        });
        tasks.insert(id, task.abort_handle());
    }
}
