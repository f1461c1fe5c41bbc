//! The wire protocol: frames, their binary codec, and payload codecs.
//!
//! Framing is in two steps, as in mini-redis: check that a whole frame is
//! buffered, then parse it; a partial frame never allocates.

mod codec;
mod frame;
mod payload;

pub use codec::{encode_to_bytes, FrameCodec, ProtocolError};
pub use frame::{CodecId, Flags, Frame, FrameKind, Limits, Metadata, HEADER_LEN, MAGIC, VERSION};
pub use payload::{Codec, DepthLimited, DECODE_DEPTH_MAX_DEFAULT};
