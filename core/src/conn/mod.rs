//! Connection machinery shared by client and server: the coalescing writer and
//! the frame reader.

mod writer;

pub(crate) use writer::{Outbox, QueueError, WriteQueue};
