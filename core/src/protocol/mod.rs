//! The wire protocol: frames, their binary codec, and payload codecs.
//!
//! Framing is in two steps, as in mini-redis: check that a whole frame is
//! buffered, then parse it; a partial frame never allocates.

mod codec;
mod frame;
mod message;
mod payload;

pub use codec::{encode_to_bytes, FrameCodec, ProtocolError};
pub use frame::{
    CodecId, Flags, Frame, FrameKind, Limits, Metadata, HEADER_LEN, MAGIC, VERSION, VERSION_MINOR,
};
pub(crate) use message::{
    goaway_frame, goaway_last_read, request_frame, request_from_frame, response_frame,
    response_from_frame,
};
pub use payload::{Codec, DepthLimited, DECODE_DEPTH_MAX_DEFAULT};
