//! The connection engine shared by client and server: the frame reader (inbound
//! memory bounded, progress counted in bytes), the coalescing writer with one
//! byte budget every frame counts against, and the final flush.

mod reader;
mod writer;

pub(crate) use reader::{FrameReader, ReadBudget, ReadError};
pub(crate) use writer::{Outbox, QueueError, Unwritten, WriteQueue};
