//! The coalescing writer. Any task may queue a frame: it is encoded at once into a
//! shared buffer (on the caller's task, so the writer task only does I/O). The
//! writer task swaps the whole buffer out and writes it with one `write_all`, so
//! a burst of N frames costs one syscall, not N.

use std::sync::Mutex;

use bytes::BytesMut;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

use crate::protocol::{Frame, FrameCodec, ProtocolError};
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
}

/// The queue of encoded frames waiting for the writer task.
#[derive(Debug)]
pub(crate) struct WriteQueue {
    /// Encodes frames under the connection's limits.
    codec: FrameCodec,
    /// Buffered bytes and the closed flag.
    state: Mutex<State>,
    /// Wakes the writer task when the buffer goes from empty to non-empty, or on close.
    wake: Notify,
    /// Backlog bound in bytes: past it, new frames are refused (limits on everything).
    backlog_max: usize,
}

impl WriteQueue {
    pub(crate) fn new(codec: FrameCodec, backlog_max: usize) -> WriteQueue {
        WriteQueue {
            codec,
            state: Mutex::new(State {
                buf: BytesMut::with_capacity(16 * 1024),
                closed: false,
            }),
            wake: Notify::new(),
            backlog_max,
        }
    }

    /// Encodes `frame` into the backlog.
    pub(crate) fn send(&self, frame: &Frame) -> Result<(), QueueError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.closed {
            return Err(QueueError::Closed);
        }
        if state.buf.len() > self.backlog_max {
            return Err(QueueError::Full);
        }
        let was_empty = state.buf.is_empty();
        self.codec
            .encode_frame(frame, &mut state.buf)
            .map_err(QueueError::Protocol)?;
        drop(state);
        if was_empty {
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

    /// Takes everything queued, leaving `spare`'s allocation in its place.
    /// Returns `None` when closed and drained.
    fn take(&self, spare: &mut BytesMut) -> Option<bool> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.buf.is_empty() {
            return if state.closed { None } else { Some(false) };
        }
        std::mem::swap(&mut state.buf, spare);
        Some(true)
    }
}

/// Writes queued frames until the queue is closed and drained or the stream fails.
/// Returns the I/O error, if any; the caller closes the connection either way.
pub(crate) async fn run_writer<W: AsyncWrite + Unpin>(
    queue: &WriteQueue,
    mut writer: W,
) -> std::io::Result<()> {
    let mut chunk = BytesMut::with_capacity(16 * 1024);
    loop {
        match queue.take(&mut chunk) {
            None => break,
            Some(false) => {
                queue.wake.notified().await;
                // Let the tasks that are ready now (handlers finishing, callers
                // starting) queue their frames too, so one write carries them all.
                tokio::task::yield_now().await;
            }
            Some(true) => {
                let result = writer.write_all(&chunk).await;
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
