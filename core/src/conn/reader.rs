//! The read half of a connection: frames out of a byte stream, with inbound
//! memory bounded whatever the peer sends.
//!
//! - The buffer grows only as bytes arrive (never by a header's announced
//!   length): a header announcing 16 MiB costs its 22 bytes until the rest comes.
//! - Bytes of a frame not yet complete can be charged to a [`ReadBudget`] shared
//!   by every connection of a server, so many half-sent frames cannot add up to
//!   more than the server allows.
//! - Every byte read is counted: liveness and a frame's progress are measured by
//!   bytes arriving, so a slow large frame is not mistaken for a dead peer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::codec::Decoder;

use crate::protocol::{Frame, FrameCodec, ProtocolError};

/// The read buffer's first allocation, and the most it grows by at once.
const READ_CAPACITY_INITIAL: usize = 8 * 1024;
/// The least room a read is given: fewer, larger reads.
const READ_SPARE_MIN: usize = 4 * 1024;

/// A budget, in bytes, for frames received in part (the memory of the read
/// buffers holding them), shared by the connections of one server. Without it, each connection's bound multiplies by the number of
/// connections (1,024 × 16 MiB).
#[derive(Debug)]
pub(crate) struct ReadBudget {
    /// Bytes of incomplete frames buffered right now, over all connections
    /// (shared with the server's stats).
    used: Arc<AtomicUsize>,
    /// The most `used` may reach.
    max: usize,
}

impl ReadBudget {
    pub(crate) fn new(max: usize, used: Arc<AtomicUsize>) -> ReadBudget {
        ReadBudget { used, max }
    }

    /// Bytes of incomplete frames buffered now.
    #[cfg(test)]
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Moves this connection's charge from `from` to `to` bytes; false (and no
    /// change) if growing it would break the budget.
    fn recharge(&self, from: usize, to: usize) -> bool {
        if to == from {
            return true;
        }
        if to < from {
            self.used.fetch_sub(from - to, Ordering::Relaxed);
            return true;
        }
        let grow = to - from;
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(grow).filter(|&total| total <= self.max)
            })
            .is_ok()
    }
}

/// Why reading stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    /// The bytes are not a valid squall stream.
    #[error("{0}")]
    Protocol(#[from] ProtocolError),
    /// Buffering more of an incomplete frame would break the server-wide budget.
    #[error("server-wide budget of {0} bytes for partly received frames is exhausted")]
    BudgetExhausted(usize),
}

/// Reads frames from `reader`.
#[derive(Debug)]
pub(crate) struct FrameReader<R> {
    /// The stream.
    reader: R,
    /// Decodes frames under the connection's limits.
    codec: FrameCodec,
    /// Bytes read and not yet decoded into frames.
    buf: BytesMut,
    /// Every byte ever read: liveness, and a frame's progress.
    bytes_read: u64,
    /// Whole frames decoded: the first frame's arrival ends a new connection's trial.
    frames_read: u64,
    /// The server-wide budget this connection's buffered bytes are charged to.
    budget: Option<Arc<ReadBudget>>,
    /// What this connection holds of the budget now.
    charged: usize,
    /// The stream ended.
    eof: bool,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub(crate) fn new(reader: R, codec: FrameCodec, budget: Option<Arc<ReadBudget>>) -> Self {
        FrameReader {
            reader,
            codec,
            buf: BytesMut::with_capacity(READ_CAPACITY_INITIAL),
            bytes_read: 0,
            frames_read: 0,
            budget,
            charged: 0,
            eof: false,
        }
    }

    /// Bytes read so far.
    pub(crate) fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// Whole frames read so far.
    pub(crate) fn frames_read(&self) -> u64 {
        self.frames_read
    }

    /// Whether part of a frame is buffered (its rest has not arrived).
    pub(crate) fn has_partial_frame(&self) -> bool {
        !self.buf.is_empty() || self.codec.is_mid_frame()
    }

    /// The next frame, `None` at a clean end of stream. Cancel-safe: it awaits
    /// only reads, and bytes read are kept in the buffer.
    pub(crate) async fn next(&mut self) -> Option<Result<Frame, ReadError>> {
        loop {
            match self.decode() {
                Ok(Some(frame)) => return Some(Ok(frame)),
                Ok(None) if self.eof => {
                    return match self.codec.decode_eof(&mut self.buf) {
                        Ok(Some(frame)) => Some(Ok(frame)),
                        Ok(None) => None,
                        Err(error) => Some(Err(error.into())),
                    };
                }
                Ok(None) => {}
                Err(error) => return Some(Err(error)),
            }
            // Room for a worthwhile read (and at least one byte, so a read of 0
            // means the end of stream). The buffer grows in proportion to what
            // it holds, never by a declared length.
            if self.buf.capacity() - self.buf.len() < READ_SPARE_MIN {
                let additional = self.buf.len().clamp(READ_SPARE_MIN, READ_CAPACITY_INITIAL);
                self.buf.reserve(additional);
            }
            match self.reader.read_buf(&mut self.buf).await {
                Ok(0) => self.eof = true,
                Ok(count) => {
                    self.bytes_read += count as u64;
                    if let Err(error) = self.charge() {
                        return Some(Err(error));
                    }
                }
                Err(error) => return Some(Err(ProtocolError::Io(error).into())),
            }
        }
    }

    /// The next frame if it is already buffered, without reading: the cheap
    /// first try for each frame after the first of a batch (no future to build
    /// and poll). `None` means "not buffered", not the end of the stream.
    #[inline]
    pub(crate) fn buffered(&mut self) -> Option<Result<Frame, ReadError>> {
        self.decode().transpose()
    }

    /// A frame already buffered, without reading.
    #[inline]
    fn decode(&mut self) -> Result<Option<Frame>, ReadError> {
        let frame = self.codec.decode(&mut self.buf)?;
        if frame.is_some() {
            self.frames_read += 1;
            // The charge shrinks only once the buffer is empty: one update of
            // the shared counter per read rather than per frame (it is shared by
            // every connection). Until then the connection is charged a little
            // more than it holds, never less.
            if self.buf.is_empty() {
                self.charge()?;
            }
        }
        Ok(frame)
    }

    /// Charges the buffered bytes to the server-wide budget.
    fn charge(&mut self) -> Result<(), ReadError> {
        let Some(budget) = &self.budget else {
            return Ok(());
        };
        // The memory held, not only the bytes: a buffer grows by doubling, so
        // its capacity can be up to twice what arrived. An empty buffer
        // (between frames) holds nothing worth charging.
        let held = if self.buf.is_empty() {
            0
        } else {
            self.buf.capacity().max(self.buf.len())
        };
        if !budget.recharge(self.charged, held) {
            return Err(ReadError::BudgetExhausted(budget.max));
        }
        self.charged = held;
        Ok(())
    }
}

impl<R> Drop for FrameReader<R> {
    fn drop(&mut self) {
        if let Some(budget) = &self.budget {
            budget.used.fetch_sub(self.charged, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{encode_to_bytes, FrameKind, Limits};
    use tokio::io::AsyncWriteExt;

    fn header_announcing(body_len: u32) -> Vec<u8> {
        let mut frame = Frame::control(FrameKind::Request, 1);
        frame.body = bytes::Bytes::from(vec![0u8; 8]);
        let mut bytes = encode_to_bytes(&frame, Limits::default()).unwrap().to_vec();
        bytes.truncate(crate::protocol::HEADER_LEN);
        bytes[18..22].copy_from_slice(&body_len.to_be_bytes());
        bytes
    }

    #[tokio::test]
    async fn read_buffer_grows_only_as_bytes_arrive() {
        let (mut tx, rx) = tokio::io::duplex(64 * 1024);
        let mut reader = FrameReader::new(rx, FrameCodec::default(), None);
        tx.write_all(&header_announcing(16 * 1024 * 1024))
            .await
            .unwrap();
        tx.write_all(&[0u8; 100]).await.unwrap();
        drop(tx);
        let result = reader.next().await;
        assert!(matches!(result, Some(Err(ReadError::Protocol(_)))));
        assert!(
            reader.buf.capacity() < 64 * 1024,
            "{}",
            reader.buf.capacity()
        );
    }

    #[tokio::test]
    async fn partial_frames_past_the_shared_budget_are_refused() {
        let budget = Arc::new(ReadBudget::new(1000, Arc::default()));
        let (mut tx, rx) = tokio::io::duplex(64 * 1024);
        let mut reader = FrameReader::new(rx, FrameCodec::default(), Some(Arc::clone(&budget)));
        tx.write_all(&header_announcing(4096)).await.unwrap();
        tx.write_all(&[0u8; 2000]).await.unwrap();
        let result = reader.next().await;
        assert!(matches!(
            result,
            Some(Err(ReadError::BudgetExhausted(1000)))
        ));
        drop(reader);
        assert_eq!(budget.used(), 0, "a closed connection returns its charge");
    }

    #[tokio::test]
    async fn whole_frames_release_their_charge() {
        let budget = Arc::new(ReadBudget::new(64 * 1024, Arc::default()));
        let (mut tx, rx) = tokio::io::duplex(64 * 1024);
        let mut reader = FrameReader::new(rx, FrameCodec::default(), Some(Arc::clone(&budget)));
        let ping = encode_to_bytes(&Frame::control(FrameKind::Ping, 1), Limits::default()).unwrap();
        tx.write_all(&ping).await.unwrap();
        assert!(reader.next().await.unwrap().is_ok());
        assert_eq!(budget.used(), 0);
        assert_eq!(reader.frames_read(), 1);
        assert_eq!(reader.bytes_read(), ping.len() as u64);
    }
}
