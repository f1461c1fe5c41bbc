//! The frame: one message on a squall connection. See `docs/PROTOCOL.md`.

use std::time::Duration;

use bytes::Bytes;

use crate::status::Code;

/// The two magic bytes that open every frame: `SQ`.
pub const MAGIC: [u8; 2] = *b"SQ";
/// The protocol version this crate speaks: the major version, carried in every
/// header. Frames of every 1.x minor version have the same layout, so it stays 1.
pub const VERSION: u8 = 1;
/// The minor version this crate implements (documented in `docs/PROTOCOL.md`):
/// 1.1 added the `NOT_RETRYABLE`/`RETRYABLE` response flags and the goaway's
/// last-read request id. It is not on the wire; it names what a peer may send.
pub const VERSION_MINOR: u8 = 1;
/// Bytes in the fixed header: magic(2) version(1) kind(1) codec(1) flags(1)
/// request id(8) metadata length(4) body length(4).
pub const HEADER_LEN: usize = 22;

/// What a frame is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// A call: metadata carries the method and deadline; body the encoded arguments.
    Request = 1,
    /// The answer to a request with the same id: metadata carries the status.
    Response = 2,
    /// A keepalive probe; the peer answers with a pong carrying the same id.
    Ping = 3,
    /// The answer to a ping.
    Pong = 4,
    /// The caller gave up on the request with this id; the server may stop its handler.
    Cancel = 5,
    /// The sender is shutting down: no new requests on this connection.
    GoAway = 6,
}

impl FrameKind {
    /// The kind for a wire value, or `None` for an unknown kind.
    pub fn from_u8(value: u8) -> Option<FrameKind> {
        Some(match value {
            1 => FrameKind::Request,
            2 => FrameKind::Response,
            3 => FrameKind::Ping,
            4 => FrameKind::Pong,
            5 => FrameKind::Cancel,
            6 => FrameKind::GoAway,
            _ => return None,
        })
    }
}

/// How the body is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(u8)]
pub enum CodecId {
    /// No body (pings, pongs, cancels, goaways, error responses).
    None = 0,
    /// JSON (serde_json).
    Json = 1,
    /// MessagePack (rmp-serde, structs as maps).
    #[default]
    MessagePack = 2,
}

impl CodecId {
    /// The codec for a wire value, or `None` for an unknown codec.
    pub fn from_u8(value: u8) -> Option<CodecId> {
        Some(match value {
            0 => CodecId::None,
            1 => CodecId::Json,
            2 => CodecId::MessagePack,
            _ => return None,
        })
    }
}

/// Frame flags: a bit set. Unknown bits are rejected so that a future meaning is
/// never silently ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub struct Flags(pub u8);

impl Flags {
    /// Request: the method is declared idempotent (informational for the server).
    pub const IDEMPOTENT: u8 = 0x01;
    /// Response: the handler did not run (shed, refused, unknown method); safe to re-send.
    /// GoAway (1.1): every request with an id above the goaway's is not executed.
    pub const NOT_EXECUTED: u8 = 0x02;
    /// Response (1.1): the server says do not retry, though the code is retryable
    /// by default (without it the client would retry a failure the server knows
    /// is permanent).
    pub const NOT_RETRYABLE: u8 = 0x04;
    /// Response (1.1): the server says this failure is worth retrying, though the
    /// code is not retryable by default.
    pub const RETRYABLE: u8 = 0x08;
    /// Every bit this version defines.
    pub const KNOWN: u8 =
        Flags::IDEMPOTENT | Flags::NOT_EXECUTED | Flags::NOT_RETRYABLE | Flags::RETRYABLE;

    /// Whether `bit` is set.
    pub fn contains(self, bit: u8) -> bool {
        self.0 & bit == bit
    }
}

/// The frame's metadata: the well-known fields plus user key/values.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Metadata {
    /// Requests: the method, `Service.Method`.
    pub method: Option<String>,
    /// Requests: the remaining budget when the frame was sent (relative, so clock
    /// skew between hosts does not matter). Microsecond precision on the wire.
    pub deadline: Option<Duration>,
    /// Responses: the status code (`None` means `Ok`).
    pub status: Option<Code>,
    /// Responses: the error message.
    pub message: Option<String>,
    /// User key/values (auth token, hash key, trace id), in insertion order.
    pub entries: Vec<(String, String)>,
}

impl Metadata {
    /// The first value for `key`, if any.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Appends a user key/value.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.entries.push((key.into(), value.into()));
    }
}

/// One protocol frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// What the frame is for.
    pub kind: FrameKind,
    /// How the body is encoded.
    pub codec: CodecId,
    /// Flag bits.
    pub flags: Flags,
    /// Pairs a response with its request (and a pong with its ping); chosen by the caller.
    pub request_id: u64,
    /// Method, deadline, status, user key/values.
    pub meta: Metadata,
    /// The encoded arguments or reply.
    pub body: Bytes,
}

impl Frame {
    /// A frame of `kind` with no metadata or body.
    pub fn control(kind: FrameKind, request_id: u64) -> Frame {
        Frame {
            kind,
            codec: CodecId::None,
            flags: Flags::default(),
            request_id,
            meta: Metadata::default(),
            body: Bytes::new(),
        }
    }
}

/// Limits enforced on encode and on decode. A frame over a limit is an error on
/// both sides: the sender never writes it, the receiver closes the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest metadata + body, in bytes (the header is not counted).
    pub frame_len_max: u32,
    /// Largest metadata section, in bytes.
    pub metadata_len_max: u32,
    /// Most user key/values in one frame.
    pub entries_max: u16,
}

impl Default for Limits {
    /// 16 MiB frames (gRPC allows 4 MiB by default; squall leaves room for bulk
    /// replies), 64 KiB of metadata, 64 user entries.
    fn default() -> Limits {
        Limits {
            frame_len_max: 16 * 1024 * 1024,
            metadata_len_max: 64 * 1024,
            entries_max: 64,
        }
    }
}
