//! The outgoing queue and the write half. Any task may queue a frame: it is
//! encoded at once into a shared buffer (on the caller's task, so the
//! connection's task only does I/O) and counted against the queue's byte
//! budget, whatever its kind — a reply, a refusal, a pong, a goaway.
//!
//! The task that reads the connection also writes it, through an [`Outbox`]: it
//! swaps the whole buffer out and writes it in as few calls as the stream
//! takes, so a burst of N frames costs one syscall, not N, and replies queued by
//! handlers that ran inline on that task are written with no hand-off to
//! another task (on a multi-threaded runtime, often a wake-up on another core).
//! Bytes count against the budget until they are written to the stream, not
//! merely taken from the queue.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::futures::Notified;
use tokio::sync::Notify;

use crate::protocol::{Frame, FrameCodec, FrameKind, ProtocolError, HEADER_LEN};
use crate::status::Status;

/// Why a frame could not be queued.
#[derive(Debug)]
pub(crate) enum QueueError {
    /// The connection is closed (or closing); nothing more will be written.
    Closed,
    /// The unwritten backlog is over its limit: the peer is not reading.
    Full,
    /// The frame breaks a protocol limit; it was not queued.
    Protocol(ProtocolError),
}

impl QueueError {
    /// The status a caller sees. Nothing was written, so nothing executed.
    pub(crate) fn into_status(self, peer: &str) -> Status {
        match self {
            QueueError::Closed => {
                Status::unavailable(format!("connection to {peer} is closed")).not_executed()
            }
            QueueError::Full => Status::resource_exhausted(format!(
                "write backlog to {peer} is full: the peer is not reading"
            ))
            .not_executed(),
            QueueError::Protocol(error) => {
                Status::invalid_argument(format!("request not sent: {error}"))
                    .not_executed()
                    .with_retryable(false)
            }
        }
    }
}

#[derive(Debug)]
struct State {
    /// Encoded frames not yet handed to the writer task.
    buf: BytesMut,
    /// Set once the connection is closing: the writer flushes `buf` and stops.
    closed: bool,
    /// The writer found `buf` empty and waits for a wake-up. Only then does a
    /// sender notify: a writer that is busy takes the buffer again by itself,
    /// and a wake-up it does not need would cost it an extra turn.
    writer_parked: bool,
}

/// The queue of encoded frames waiting for the writer task.
#[derive(Debug)]
pub(crate) struct WriteQueue {
    /// Encodes frames under the connection's limits.
    codec: FrameCodec,
    /// Buffered bytes and the closed flag.
    state: Mutex<State>,
    /// Wakes the writer when it is parked and a frame is queued, or on close.
    wake: Notify,
    /// Backlog bound in bytes: past it, new requests are refused and a server
    /// stops reading from the peer (limits on everything).
    backlog_max: usize,
    /// Bytes encoded and not yet written to the stream. Shared (not copied)
    /// with whoever reports it, so counting costs no extra atomic operation.
    unwritten: Arc<Unwritten>,
}

/// Bytes encoded and not yet written to the stream: those still queued and
/// those the writer holds. Every frame counts, whatever its kind; lock-free so
/// [`WriteQueue::is_full`] is cheap on the hot path.
///
/// Two halves, each stored by one party at a time — `queued` under the queue's
/// lock, `writing` by the writer alone — so counting needs plain stores, not
/// an atomic read-modify-write per frame (a locked instruction on a line that
/// the callers' cores and the writer's core pass between them).
#[derive(Debug, Default)]
pub(crate) struct Unwritten {
    /// Bytes in the queue's buffer (stored with the lock held).
    queued: AtomicUsize,
    /// Bytes the writer has taken and not yet written (stored by the writer).
    writing: AtomicUsize,
}

impl Unwritten {
    /// Bytes not yet written. The halves are read one after the other: while
    /// the writer takes the buffer, the sum can count a chunk twice for an
    /// instant, never miss it.
    pub(crate) fn get(&self) -> usize {
        self.queued.load(Ordering::Relaxed) + self.writing.load(Ordering::Relaxed)
    }
}

impl WriteQueue {
    pub(crate) fn new(codec: FrameCodec, backlog_max: usize) -> WriteQueue {
        WriteQueue::with_counter(codec, backlog_max, Arc::default())
    }

    /// A queue that counts its unwritten bytes in `unwritten` (which the
    /// server's stats read).
    pub(crate) fn with_counter(
        codec: FrameCodec,
        backlog_max: usize,
        unwritten: Arc<Unwritten>,
    ) -> WriteQueue {
        WriteQueue {
            codec,
            state: Mutex::new(State {
                buf: BytesMut::with_capacity(16 * 1024),
                closed: false,
                writer_parked: false,
            }),
            wake: Notify::new(),
            backlog_max,
            unwritten,
        }
    }

    /// Encodes `frame` into the backlog, refusing it if the backlog is over its
    /// limit (new work: requests).
    pub(crate) fn send(&self, frame: &Frame) -> Result<(), QueueError> {
        self.push(frame, true)
    }

    /// Encodes `frame` whatever the backlog: for answers to work already
    /// admitted (responses), which must never be dropped — a dropped response
    /// leaves its caller waiting for a reply that will not come. They still
    /// count against the budget: a server stops reading from a peer whose queue
    /// is over it, so what is queued past the budget is bounded by the calls
    /// already in flight × the frame limit, plus one batch of control replies.
    pub(crate) fn send_always(&self, frame: &Frame) -> Result<(), QueueError> {
        self.push(frame, false)
    }

    /// Whether the backlog is over its limit (the server stops reading; new
    /// requests are refused). Lock-free: read once per request on the hot path.
    pub(crate) fn is_full(&self) -> bool {
        self.unwritten() > self.backlog_max
    }

    /// Bytes queued or being written, not yet written.
    pub(crate) fn unwritten(&self) -> usize {
        self.unwritten.get()
    }

    /// Records that the writer holds `count` bytes not yet written (called by
    /// the writer only).
    fn writing(&self, count: usize) {
        self.unwritten.writing.store(count, Ordering::Relaxed);
    }

    fn push(&self, frame: &Frame, bounded: bool) -> Result<(), QueueError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.closed {
            return Err(QueueError::Closed);
        }
        if bounded && self.is_full() {
            return Err(QueueError::Full);
        }
        self.codec
            .encode_frame(frame, &mut state.buf)
            .map_err(QueueError::Protocol)?;
        self.unwritten
            .queued
            .store(state.buf.len(), Ordering::Relaxed);
        let parked = std::mem::replace(&mut state.writer_parked, false);
        drop(state);
        if parked {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Stops accepting frames; the writer flushes what is queued and ends.
    pub(crate) fn close(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.closed = true;
        drop(state);
        self.wake.notify_one();
    }

    /// Tells senders the writer will take the buffer again before it waits, so
    /// they need not wake it (the reader calls this before dispatching a batch:
    /// the replies of handlers that run inline then cost no wake-up).
    pub(crate) fn writer_busy(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.writer_parked = false;
    }

    /// Resolves once a frame is queued after the writer parked (or on close).
    pub(crate) fn notified(&self) -> Notified<'_> {
        self.wake.notified()
    }

    /// Appends the ids of the requests still queued (none of their bytes written).
    pub(crate) fn queued_request_ids(&self, ids: &mut Vec<u64>) {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        request_ids_after(&state.buf, 0, ids);
    }

    /// Takes everything queued, leaving `spare`'s allocation in its place.
    /// Returns `None` when closed and drained; `Some(false)` when there is
    /// nothing to write, and the writer is then parked: the next frame queued
    /// wakes it.
    fn take(&self, spare: &mut BytesMut) -> Option<bool> {
        debug_assert!(spare.is_empty(), "unwritten bytes would be lost");
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.buf.is_empty() {
            if state.closed {
                return None;
            }
            state.writer_parked = true;
            return Some(false);
        }
        std::mem::swap(&mut state.buf, spare);
        // The writer's half first: for an instant the chunk counts twice, never
        // not at all.
        self.writing(spare.len());
        self.unwritten.queued.store(0, Ordering::Relaxed);
        Some(true)
    }
}

/// The write half of a connection, written by the task that owns it (rather
/// than by a writer task of its own): it takes what is queued, in one piece,
/// and keeps the unwritten rest across calls, so a write the stream is not
/// ready for can wait in a `select!` beside the reads.
#[derive(Debug)]
pub(crate) struct Outbox<W> {
    /// The stream.
    writer: W,
    /// Bytes taken from the queue and not yet completely written.
    chunk: BytesMut,
    /// How many bytes of `chunk` are written.
    written: usize,
}

impl<W: AsyncWrite + Unpin> Outbox<W> {
    pub(crate) fn new(writer: W) -> Outbox<W> {
        Outbox {
            writer,
            chunk: BytesMut::with_capacity(16 * 1024),
            written: 0,
        }
    }

    /// Appends the ids of the requests in the chunk not completely written: the
    /// peer cannot have read them whole, so they did not run.
    pub(crate) fn unwritten_request_ids(&self, ids: &mut Vec<u64>) {
        request_ids_after(&self.chunk, self.written, ids);
    }

    /// Whether bytes are waiting to be written.
    pub(crate) fn has_chunk(&self) -> bool {
        !self.chunk.is_empty()
    }

    /// Takes what is queued, unless a chunk is still being written. Returns
    /// false once the queue is closed and drained.
    pub(crate) fn refill(&mut self, queue: &WriteQueue) -> bool {
        self.has_chunk() || queue.take(&mut self.chunk).is_some()
    }

    /// Writes the chunk; resolves when all of it is written. Cancel-safe: what
    /// is written stays written, and the next call goes on from there.
    pub(crate) async fn write_chunk(&mut self, queue: &WriteQueue) -> std::io::Result<()> {
        poll_fn(|cx| self.poll_write_chunk(queue, cx)).await
    }

    fn poll_write_chunk(
        &mut self,
        queue: &WriteQueue,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        while self.written < self.chunk.len() {
            let unwritten = &self.chunk[self.written..];
            let count = ready!(Pin::new(&mut self.writer).poll_write(cx, unwritten))?;
            if count == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.written += count;
            queue.writing(self.chunk.len() - self.written);
        }
        self.chunk.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }

    /// Writes the rest and everything still queued, then shuts the stream down.
    /// The caller has closed the queue (or will), so this ends.
    pub(crate) async fn finish(mut self, queue: &WriteQueue) -> std::io::Result<()> {
        if let Err(error) = self.write_chunk(queue).await {
            queue.close();
            return Err(error);
        }
        run_writer(queue, self.writer).await
    }
}

/// Appends the ids of the request frames in `encoded` (whole frames, as the
/// queue encoded them) that end after byte `written`.
fn request_ids_after(encoded: &[u8], written: usize, ids: &mut Vec<u64>) {
    let mut at = 0usize;
    while let Some(header) = encoded.get(at..at + HEADER_LEN) {
        let field = |range: std::ops::Range<usize>| -> usize {
            header[range]
                .iter()
                .fold(0usize, |value, &byte| value << 8 | usize::from(byte))
        };
        let end = at + HEADER_LEN + field(14..18) + field(18..22);
        if header[3] == FrameKind::Request as u8 && end > written {
            ids.push(field(6..14) as u64);
        }
        at = end;
    }
}

/// Writes queued frames until the queue is closed and drained or the stream fails.
/// Returns the I/O error, if any; the caller closes the connection either way.
async fn run_writer<W: AsyncWrite + Unpin>(
    queue: &WriteQueue,
    mut writer: W,
) -> std::io::Result<()> {
    let mut chunk = BytesMut::with_capacity(16 * 1024);
    loop {
        match queue.take(&mut chunk) {
            None => break,
            Some(false) => {
                queue.notified().await;
                // Let the tasks that are ready now (handlers finishing, callers
                // starting) queue their frames too, so one write carries them all.
                tokio::task::yield_now().await;
            }
            Some(true) => {
                let result = writer.write_all(&chunk).await;
                if result.is_ok() {
                    queue.writing(0);
                }
                chunk.clear();
                if let Err(error) = result {
                    queue.close();
                    return Err(error);
                }
            }
        }
    }
    writer.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Limits;

    fn request(id: u64) -> Frame {
        let mut frame = Frame::control(FrameKind::Request, id);
        frame.meta.method = Some("Echo.Echo".into());
        frame.body = bytes::Bytes::from_static(b"\x07");
        frame
    }

    #[test]
    fn requests_not_completely_written_are_found_in_the_encoded_bytes() {
        let codec = FrameCodec::new(Limits::default());
        let mut encoded = BytesMut::new();
        codec.encode_frame(&request(1), &mut encoded).unwrap();
        let first_end = encoded.len();
        codec
            .encode_frame(&Frame::control(FrameKind::Ping, 9), &mut encoded)
            .unwrap();
        codec.encode_frame(&request(2), &mut encoded).unwrap();
        let mut ids = Vec::new();
        request_ids_after(&encoded, first_end - 1, &mut ids);
        assert_eq!(
            ids,
            [1, 2],
            "a request written but for its last byte did not run"
        );
        ids.clear();
        request_ids_after(&encoded, first_end, &mut ids);
        assert_eq!(
            ids,
            [2],
            "pings are not calls; a written request may have run"
        );
    }

    #[test]
    fn every_frame_counts_against_the_budget() {
        let queue = WriteQueue::new(FrameCodec::new(Limits::default()), 30);
        queue
            .send_always(&Frame::control(FrameKind::Pong, 1))
            .unwrap();
        assert!(!queue.is_full(), "22 bytes are within 30");
        queue
            .send_always(&Frame::control(FrameKind::GoAway, 0))
            .unwrap();
        assert!(queue.is_full(), "pongs and goaways count too");
        assert!(matches!(queue.send(&request(3)), Err(QueueError::Full)));
        assert_eq!(queue.unwritten(), 44);
    }
}
