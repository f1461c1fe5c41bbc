//! [`Channel`]: one multiplexed connection. Many calls share it; each request
//! carries an id, and the connection task hands each response to the caller
//! waiting on that id, whatever order responses arrive in. The same task writes
//! the requests callers queue, so one task (on one worker) runs the connection.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use futures_util::FutureExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::table::CallTable;
use super::{Caller, OutgoingRequest, Reply};
use crate::conn::{FrameReader, Outbox, WriteQueue};
use crate::context::call_deadline;
use crate::protocol::{
    goaway_last_read, request_frame, response_from_frame, Frame, FrameCodec, FrameKind, Limits,
};
use crate::status::Status;
use crate::transport::Transport;

/// Connection settings. Every timing is bounded so nothing ever hangs.
#[derive(Clone, Debug)]
pub struct ChannelConfig {
    /// How long `connect` may take before failing with `Unavailable`.
    pub connect_timeout: Duration,
    /// Send a ping after this long without receiving any byte. Bytes, not
    /// frames: a large reply arriving slowly is progress, and a pong cannot
    /// overtake it.
    pub keepalive_interval: Duration,
    /// Declare the peer dead if no byte arrives this long after a ping. A dead
    /// peer is detected at most `2 × interval + timeout` after its last byte.
    pub keepalive_timeout: Duration,
    /// Most calls waiting for a reply on this connection; more are refused with
    /// `ResourceExhausted` (not executed).
    pub max_in_flight: usize,
    /// Frame limits, enforced on encode and decode.
    pub limits: Limits,
    /// Most unwritten bytes before new calls are refused.
    pub write_backlog_max: usize,
    /// A peer that leaves the unwritten bytes over `write_backlog_max` this
    /// long (it is not reading) is cut, failing the calls waiting on it, so a
    /// pool reconnects rather than refusing every new call. Checked at each
    /// keepalive tick, so a cut comes up to one keepalive interval later.
    pub write_stall_timeout: Duration,
    /// A [`Pool`](super::Pool) waits this long after a failed connect before the
    /// next attempt, doubling per failure; calls in between fail at once.
    pub reconnect_backoff_initial: Duration,
    /// The cap on that wait.
    pub reconnect_backoff_max: Duration,
}

impl Default for ChannelConfig {
    /// Connect 5 s; keepalive ping after 10 s idle, dead 10 s later (gRPC's A8
    /// allows 10 s as the shortest interval; 20 s without an ack is its timeout).
    fn default() -> ChannelConfig {
        ChannelConfig {
            connect_timeout: Duration::from_secs(5),
            keepalive_interval: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(10),
            max_in_flight: 10_000,
            limits: Limits::default(),
            write_backlog_max: 32 * 1024 * 1024,
            write_stall_timeout: Duration::from_secs(30),
            reconnect_backoff_initial: Duration::from_millis(100),
            reconnect_backoff_max: Duration::from_secs(2),
        }
    }
}

const OPEN: u8 = 0;
const DRAINING: u8 = 1;
const CLOSED: u8 = 2;

/// Where a reply goes: already turned into the caller's result by the reader
/// (a `Reply` is a fraction of a `Frame`'s size, so less is copied per call).
type Waiter = oneshot::Sender<Result<Reply, Status>>;

/// A call waiting for its reply.
struct Entry {
    /// Where the reply goes.
    waiter: Waiter,
    /// When the caller stops waiting.
    deadline: Option<Instant>,
}

/// Calls waiting for replies, and why the connection closed (once it has).
///
/// Deadlines: one timer per connection (in the reader task) expires calls,
/// instead of a timer per call. It is set for `armed`, which is never later than
/// the earliest deadline of a waiting call: a new call moves it earlier, a
/// finished call leaves it alone (keeping deadlines sorted would cost two ordered
/// inserts and removes per call). When it fires, one pass over the table expires
/// what is due and finds the true earliest deadline left, so a call expires on
/// the first firing at or after its deadline, exactly as with a sorted set. The
/// price is a pass over the calls in flight per firing, and it fires at most
/// once per timer tick (1 ms) with work to do.
#[derive(Default)]
struct Pending {
    /// Waiting calls by request id.
    calls: CallTable<Entry>,
    /// The instant the reader's deadline timer is set for, if any: at or before
    /// every waiting call's deadline.
    armed: Option<Instant>,
    /// Set on close; later calls fail with it.
    closed: Option<Status>,
}

/// State shared by the handles, the connection task and pending calls.
struct Shared {
    /// The peer, as dialled (for error messages).
    peer: String,
    /// Encoded frames waiting to be written.
    queue: WriteQueue,
    /// Waiting calls.
    pending: Mutex<Pending>,
    /// The next request id.
    next_id: AtomicU64,
    /// `pending.calls.len()`, readable without the lock (pool picks, balancers).
    in_flight: AtomicUsize,
    /// Calls started on this channel, ever (the pool's reuse figure).
    calls_started: AtomicU64,
    /// OPEN, DRAINING (goaway received), or CLOSED.
    state: AtomicU8,
    /// Cancelled on close: stops the reader task.
    stop: CancellationToken,
    /// Tells the reader task a deadline earlier than its timer was added.
    rearm: Notify,
    /// Settings.
    config: ChannelConfig,
}

impl Shared {
    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fails every waiting call with `reason` and stops the connection task
    /// (which then writes what is queued and closes the stream). Idempotent.
    fn close(&self, reason: Status) {
        let calls = {
            let mut pending = self.pending();
            if pending.closed.is_some() {
                return;
            }
            pending.closed = Some(reason.clone());
            pending.armed = None;
            pending.calls.take_all()
        };
        self.state.store(CLOSED, Ordering::Release);
        self.in_flight.store(0, Ordering::Relaxed);
        self.queue.close();
        self.stop.cancel();
        for (_, entry) in calls {
            let _ = entry.waiter.send(Err(reason.clone()));
        }
    }

    fn remove(&self, id: u64) -> Option<Waiter> {
        let mut pending = self.pending();
        let entry = pending.calls.remove(id);
        if entry.is_some() {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
        let drained = pending.calls.is_empty() && self.state.load(Ordering::Acquire) == DRAINING;
        drop(pending);
        if drained {
            self.close(Status::unavailable(format!("{} sent goaway", self.peer)).not_executed());
        }
        entry.map(|entry| entry.waiter)
    }

    /// Fails every call whose deadline has passed, tells the server, and returns
    /// when the timer should fire next.
    fn expire(&self, now: Instant) -> Option<Instant> {
        let drained;
        let (mut expired, next) = {
            let mut pending = self.pending();
            let expired = pending
                .calls
                .extract_if(|entry| entry.deadline.is_some_and(|deadline| deadline <= now));
            self.in_flight.fetch_sub(expired.len(), Ordering::Relaxed);
            let next = pending
                .calls
                .values()
                .filter_map(|entry| entry.deadline)
                .min();
            pending.armed = next;
            drained = pending.calls.is_empty() && self.state.load(Ordering::Acquire) == DRAINING;
            (expired, next)
        };
        // Earliest deadline first, as a sorted set would give them.
        expired.sort_unstable_by_key(|(id, entry)| (entry.deadline, *id));
        for (id, Entry { waiter, .. }) in expired {
            let _ = self.queue.send(&Frame::control(FrameKind::Cancel, id));
            let _ = waiter.send(Err(Status::deadline_exceeded(format!(
                "no reply from {} before the deadline",
                self.peer
            ))));
        }
        if drained {
            self.close(Status::unavailable(format!("{} sent goaway", self.peer)).not_executed());
        }
        next
    }

    /// Fails the calls whose requests were not completely written, as not
    /// executed: the connection is closing and the peer cannot have read them.
    /// (Called just before `close`, which fails the rest as "may have executed".)
    fn fail_unsent<W: AsyncWrite + Unpin>(&self, outbox: &Outbox<W>) {
        let mut ids = Vec::new();
        outbox.unwritten_request_ids(&mut ids);
        self.queue.queued_request_ids(&mut ids);
        let unsent = {
            let mut pending = self.pending();
            let unsent: Vec<Entry> = ids
                .into_iter()
                .filter_map(|id| pending.calls.remove(id))
                .collect();
            self.in_flight.fetch_sub(unsent.len(), Ordering::Relaxed);
            unsent
        };
        for entry in unsent {
            let status = Status::unavailable(format!(
                "connection to {} closed before the request was written",
                self.peer
            ));
            let _ = entry.waiter.send(Err(status.not_executed()));
        }
    }

    /// Fails every waiting call with an id above `last_read` as not executed
    /// (the server's goaway says it never read them).
    fn fail_unread(&self, last_read: u64) {
        let unread = {
            let mut pending = self.pending();
            let unread = pending.calls.extract_by_id_if(|id, _| id > last_read);
            self.in_flight.fetch_sub(unread.len(), Ordering::Relaxed);
            unread
        };
        for (_, entry) in unread {
            let status = Status::unavailable(format!(
                "{} sent goaway before reading this request",
                self.peer
            ));
            let _ = entry.waiter.send(Err(status.not_executed()));
        }
    }

    fn cancel(&self, id: u64) {
        if self.remove(id).is_some() {
            let _ = self.queue.send(&Frame::control(FrameKind::Cancel, id));
        }
    }
}

/// Closes the connection when the last [`Channel`] clone is dropped.
struct Owner {
    /// The connection.
    shared: Arc<Shared>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.shared
            .close(Status::cancelled("channel dropped").not_executed());
    }
}

/// One multiplexed connection to one endpoint. Cheap to clone; the connection
/// closes when the last clone is dropped.
#[derive(Clone)]
pub struct Channel {
    /// Shared ownership of the connection.
    owner: Arc<Owner>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("peer", &self.owner.shared.peer)
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

impl Channel {
    /// Connects to `addr` over `transport`, bounded by `config.connect_timeout`.
    /// A failure is `Unavailable` and not executed.
    pub async fn connect<T: Transport>(
        transport: &T,
        addr: &str,
        config: ChannelConfig,
    ) -> Result<Channel, Status> {
        let connect = transport.connect(addr);
        let conn = match tokio::time::timeout(config.connect_timeout, connect).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(error)) => {
                return Err(
                    Status::unavailable(format!("connect to {addr} failed: {error}"))
                        .not_executed(),
                )
            }
            Err(_) => {
                return Err(Status::unavailable(format!(
                    "connect to {addr} timed out after {:?}",
                    config.connect_timeout
                ))
                .not_executed())
            }
        };
        Ok(Channel::from_connection(
            addr,
            conn.reader,
            conn.writer,
            config,
        ))
    }

    /// Runs the protocol over an already-established stream.
    pub fn from_connection<R, W>(peer: &str, reader: R, writer: W, config: ChannelConfig) -> Channel
    where
        R: AsyncRead + Send + Unpin + 'static,
        W: AsyncWrite + Send + Unpin + 'static,
    {
        let shared = Arc::new(Shared {
            peer: peer.to_owned(),
            queue: WriteQueue::new(FrameCodec::new(config.limits), config.write_backlog_max),
            pending: Mutex::new(Pending::default()),
            next_id: AtomicU64::new(1),
            in_flight: AtomicUsize::new(0),
            calls_started: AtomicU64::new(0),
            state: AtomicU8::new(OPEN),
            stop: CancellationToken::new(),
            rearm: Notify::new(),
            config,
        });
        tokio::spawn(run_connection(Arc::clone(&shared), reader, writer));
        Channel {
            owner: Arc::new(Owner { shared }),
        }
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.owner.shared
    }

    /// The peer address as dialled.
    pub fn peer(&self) -> &str {
        &self.shared().peer
    }

    /// Calls waiting for a reply right now.
    pub fn in_flight(&self) -> usize {
        self.shared().in_flight.load(Ordering::Relaxed)
    }

    /// Calls ever started on this channel.
    pub fn calls_started(&self) -> u64 {
        self.shared().calls_started.load(Ordering::Relaxed)
    }

    /// Whether new calls can start (not closed, no goaway received).
    pub fn is_usable(&self) -> bool {
        self.shared().state.load(Ordering::Acquire) == OPEN
    }

    /// Why the channel closed, if it has.
    pub fn close_reason(&self) -> Option<Status> {
        self.shared().pending().closed.clone()
    }

    /// Closes the connection now; waiting calls fail with `Cancelled`.
    pub fn close(&self) {
        self.shared()
            .close(Status::cancelled("channel closed by its owner"));
    }

    /// Sends `request` now and returns the pending reply. The request is on its
    /// way before this returns, so the reply can be awaited later (net/rpc's `Go`).
    pub fn start(&self, request: OutgoingRequest) -> PendingCall {
        let owner = Arc::clone(&self.owner);
        let shared = &owner.shared;
        let now = Instant::now();
        let deadline = call_deadline(request.timeout, now);
        if let Some(deadline) = deadline {
            if deadline <= now {
                let status = Status::deadline_exceeded(format!(
                    "{}: no time left before the deadline",
                    request.method
                ));
                return PendingCall::failed(Arc::clone(&owner), status.not_executed());
            }
        }
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = request_frame(
            id,
            request.codec,
            request.idempotent,
            request.method,
            deadline.map(|d| d - now),
            request.metadata,
            request.body,
        );
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = shared.pending();
            if let Some(reason) = &pending.closed {
                let status = Status::unavailable(format!(
                    "connection to {} is closed ({})",
                    shared.peer,
                    reason.message()
                ));
                drop(pending);
                return PendingCall::failed(Arc::clone(&owner), status.not_executed());
            }
            if shared.state.load(Ordering::Acquire) == DRAINING {
                drop(pending);
                let status = Status::unavailable(format!("{} sent goaway", shared.peer));
                return PendingCall::failed(Arc::clone(&owner), status.not_executed());
            }
            if pending.calls.len() >= shared.config.max_in_flight {
                drop(pending);
                let status = Status::resource_exhausted(format!(
                    "{} calls already in flight to {}",
                    shared.config.max_in_flight, shared.peer
                ));
                return PendingCall::failed(Arc::clone(&owner), status.not_executed());
            }
            pending.calls.insert(
                id,
                Entry {
                    waiter: tx,
                    deadline,
                },
            );
            if let Some(deadline) = deadline {
                if pending.armed.is_none_or(|armed| deadline < armed) {
                    pending.armed = Some(deadline);
                    shared.rearm.notify_one();
                }
            }
            // Under the lock, so close() and the deadline sweep (which reset and
            // decrement it under the same lock) never see the entry without it.
            shared.in_flight.fetch_add(1, Ordering::Relaxed);
        }
        shared.calls_started.fetch_add(1, Ordering::Relaxed);
        if let Err(error) = shared.queue.send(&frame) {
            shared.remove(id);
            let status = error.into_status(&shared.peer);
            return PendingCall::failed(Arc::clone(&owner), status);
        }
        PendingCall {
            owner,
            id,
            state: CallState::Waiting { rx },
        }
    }
}

impl Caller for Channel {
    type Future = PendingCall;

    fn call(&self, request: OutgoingRequest) -> PendingCall {
        self.start(request)
    }
}

enum CallState {
    /// Sent; waiting for the reply or the deadline.
    Waiting {
        rx: oneshot::Receiver<Result<Reply, Status>>,
    },
    /// Failed before it was sent.
    Failed(Option<Status>),
    /// Resolved; polling again is a programmer error.
    Done,
}

/// A call in flight. Resolves to the reply or a [`Status`]; dropping it cancels
/// the call (the server is told, so it can stop the handler).
pub struct PendingCall {
    /// The connection (a handle that keeps it open while this call waits), to
    /// cancel on drop.
    owner: Arc<Owner>,
    /// The request id.
    id: u64,
    /// Where the call is.
    state: CallState,
}

impl std::fmt::Debug for PendingCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingCall").field("id", &self.id).finish()
    }
}

impl PendingCall {
    fn failed(owner: Arc<Owner>, status: Status) -> PendingCall {
        PendingCall {
            owner,
            id: 0,
            state: CallState::Failed(Some(status)),
        }
    }
}

fn reply_from_frame(frame: Frame) -> Result<Reply, Status> {
    response_from_frame(frame).map(|(codec, body)| Reply { codec, body })
}

impl Future for PendingCall {
    type Output = Result<Reply, Status>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let result = match &mut this.state {
            CallState::Failed(status) => {
                let status = status
                    .take()
                    .unwrap_or_else(|| Status::internal("call polled after completion"));
                Err(status)
            }
            CallState::Done => Err(Status::internal("call polled after completion")),
            CallState::Waiting { rx } => match Pin::new(rx).poll(cx) {
                Poll::Ready(Ok(result)) => result,
                Poll::Ready(Err(_)) => Err(Status::unavailable(format!(
                    "connection to {} dropped the call",
                    this.owner.shared.peer
                ))),
                Poll::Pending => return Poll::Pending,
            },
        };
        this.state = CallState::Done;
        Poll::Ready(result)
    }
}

impl Drop for PendingCall {
    fn drop(&mut self) {
        if let CallState::Waiting { .. } = self.state {
            self.owner.shared.cancel(self.id);
        }
    }
}

/// Most frames handled per wake-up of the reader before it checks its timers
/// and the stop signal again (a bound, so a flood cannot starve them).
const FRAMES_PER_BATCH_MAX: u64 = 256;

/// Reads frames and writes queued ones until the stream ends, breaks, the peer
/// stops answering keepalives, or the channel is closed; then fails every
/// waiting call, writes what is still queued and closes the stream.
async fn run_connection<R, W>(shared: Arc<Shared>, reader: R, writer: W)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    if let Some(outbox) = serve(&shared, reader, Outbox::new(writer)).await {
        // Cancels and pings already queued still go out; the queue is closed,
        // so this ends once they are written (or the stream fails).
        // Bounded like a keepalive: a dead peer must not hold the task forever.
        let bound = shared.config.keepalive_timeout;
        let _ = tokio::time::timeout(bound, outbox.finish(&shared.queue)).await;
    }
}

/// The connection's loop. Ends with the channel closed; returns the write half
/// unless writing failed.
async fn serve<R, W>(shared: &Shared, reader: R, mut outbox: Outbox<W>) -> Option<Outbox<W>>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut frames = FrameReader::new(reader, FrameCodec::new(shared.config.limits), None);
    let interval = shared.config.keepalive_interval;
    let timeout = shared.config.keepalive_timeout;
    let keepalive = tokio::time::sleep(interval);
    tokio::pin!(keepalive);
    // Expires calls past their deadline; parked far away until a call has one.
    let far_future = || Instant::now() + Duration::from_secs(86_400 * 365);
    let deadlines = tokio::time::sleep_until(far_future());
    tokio::pin!(deadlines);
    // Bytes read as of the last keepalive check: liveness is progress, so a
    // reply still arriving counts, not only whole frames. Cheaper than a clock
    // read per read.
    let mut bytes_seen: u64 = 0;
    let mut ping_out = false;
    // Since when the outgoing queue has been over its budget, as of the
    // keepalive ticks. Reading goes on meanwhile (unlike a server's): replies
    // end calls and free memory, and what reading queues — pongs — is dropped
    // when the queue is full, so the queue stays bounded without it.
    let mut over_budget_since: Option<Instant> = None;
    let peer = shared.peer.clone();
    // Created once, not per loop turn: a fresh `Notified` registers itself in the
    // notifier's waiter list (under its lock) on every poll and unregisters on drop.
    let stop = shared.stop.cancelled();
    tokio::pin!(stop);
    let rearm = shared.rearm.notified();
    tokio::pin!(rearm);
    // Fires when a caller queues a request while the outbox is idle.
    let requests_queued = shared.queue.notified();
    tokio::pin!(requests_queued);
    let reason = loop {
        // Take what is queued; with nothing queued, the queue is told to wake
        // `requests_queued` for the next request.
        if !outbox.refill(&shared.queue) {
            // Closed and drained: only `close` closes the queue.
            return Some(outbox);
        }
        tokio::select! {
            biased;
            // Writes first: a chunk the stream is not ready for is driven to
            // completion before anything else, then the outbox refills.
            written = outbox.write_chunk(&shared.queue), if outbox.has_chunk() => {
                if let Err(error) = written {
                    shared.fail_unsent(&outbox);
                    shared.close(Status::unavailable(format!("write to {peer} failed: {error}")));
                    return None;
                }
            }
            () = &mut stop => return Some(outbox),
            () = &mut requests_queued, if !outbox.has_chunk() => {
                requests_queued.set(shared.queue.notified());
                // Let the callers that are ready now queue their requests too,
                // so one write carries them all.
                tokio::task::yield_now().await;
            }
            () = &mut rearm => {
                rearm.set(shared.rearm.notified());
                let armed = shared.pending().armed;
                deadlines.as_mut().reset(armed.unwrap_or_else(far_future));
            }
            () = &mut deadlines => {
                let next = shared.expire(Instant::now());
                deadlines.as_mut().reset(next.unwrap_or_else(far_future));
            }
            frame = frames.next() => {
                // Handle this frame and every one already readable, then go back
                // to the timers: one turn of the loop per read, not per frame.
                let mut item = frame;
                let mut handled: u64 = 0;
                let end = loop {
                    match item {
                        Some(Ok(frame)) => on_frame(shared, frame),
                        Some(Err(error)) => {
                            tracing::warn!(%peer, %error, "closing connection: malformed frame from server");
                            break Some(Status::unavailable(format!("connection to {peer} broke: {error}")));
                        }
                        None => break Some(Status::unavailable(format!("connection to {peer} closed by the peer"))),
                    }
                    handled += 1;
                    if handled >= FRAMES_PER_BATCH_MAX {
                        break None;
                    }
                    // What is buffered first (no future to build), then one
                    // read that does not wait.
                    match frames.buffered() {
                        Some(next) => item = Some(next),
                        None => match frames.next().now_or_never() {
                            Some(next) => item = next,
                            None => break None,
                        },
                    }
                };
                if let Some(reason) = end {
                    break reason;
                }
            }
            () = &mut keepalive => {
                let now = Instant::now();
                if shared.queue.is_full() {
                    let since = *over_budget_since.get_or_insert(now);
                    let stall = shared.config.write_stall_timeout;
                    if now.duration_since(since) >= stall {
                        let reason = format!(
                            "{peer} is not reading: {} bytes queued for it, over the budget of {} for {stall:?}",
                            shared.queue.unwritten(),
                            shared.config.write_backlog_max,
                        );
                        tracing::warn!(%peer, %reason, "cutting connection");
                        break Status::unavailable(reason);
                    }
                } else {
                    over_budget_since = None;
                }
                if frames.bytes_read() != bytes_seen {
                    bytes_seen = frames.bytes_read();
                    ping_out = false;
                    keepalive.as_mut().reset(now + interval);
                } else if !ping_out {
                    ping_out = true;
                    let _ = shared.queue.send(&Frame::control(FrameKind::Ping, 0));
                    keepalive.as_mut().reset(now + timeout);
                } else {
                    tracing::warn!(%peer, "peer did not answer keepalive: declaring it dead");
                    break Status::unavailable(format!(
                        "{peer} did not answer a keepalive ping within {timeout:?}"
                    ));
                }
            }
        }
    };
    shared.fail_unsent(&outbox);
    shared.close(reason);
    Some(outbox)
}

fn on_frame(shared: &Shared, frame: Frame) {
    match frame.kind {
        FrameKind::Response => {
            if let Some(waiter) = shared.remove(frame.request_id) {
                let _ = waiter.send(reply_from_frame(frame));
            }
        }
        FrameKind::GoAway => {
            let _ =
                shared
                    .state
                    .compare_exchange(OPEN, DRAINING, Ordering::AcqRel, Ordering::Acquire);
            // The server read nothing after `last_read`: later calls did not run,
            // so they fail now, safe to re-send elsewhere.
            if let Some(last_read) = goaway_last_read(&frame) {
                shared.fail_unread(last_read);
            }
            if shared.pending().calls.is_empty() {
                shared.close(
                    Status::unavailable(format!("{} sent goaway", shared.peer)).not_executed(),
                );
            }
        }
        FrameKind::Ping => {
            let _ = shared
                .queue
                .send(&Frame::control(FrameKind::Pong, frame.request_id));
        }
        // Pongs only prove liveness (counted by the reader); requests and cancels
        // from a server are not part of the protocol and are ignored.
        FrameKind::Pong | FrameKind::Request | FrameKind::Cancel => {}
    }
}
