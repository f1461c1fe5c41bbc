//! The frame codec: `tokio_util::codec::{Decoder, Encoder}` for [`Frame`].
//!
//! Decoding is a two-state machine (`Head`, then `Data` once the header is known)
//! so the header is parsed once however the bytes arrive. Every length is checked
//! against [`Limits`] with checked arithmetic, on encode as on decode.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::frame::{
    CodecId, Flags, Frame, FrameKind, Limits, Metadata, HEADER_LEN, MAGIC, VERSION,
};
use crate::status::Code;

/// Metadata entry tags (type-length-value; see `docs/PROTOCOL.md`).
mod tag {
    pub(super) const METHOD: u8 = 0x01;
    pub(super) const DEADLINE: u8 = 0x02;
    pub(super) const STATUS: u8 = 0x03;
    pub(super) const MESSAGE: u8 = 0x04;
    pub(super) const ENTRY: u8 = 0x05;
}

/// Bytes before an entry's value: tag (1) and length (2).
const ENTRY_HEAD_LEN: usize = 3;
/// Largest value of one metadata entry (its length is a u16).
const ENTRY_VALUE_LEN_MAX: usize = u16::MAX as usize;

/// Why a byte stream is not a valid squall stream. Any of these closes the connection.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The first two bytes were not `SQ`: the peer does not speak squall.
    #[error("bad magic {0:02x?}: the peer does not speak the squall protocol")]
    BadMagic([u8; 2]),
    /// A version this crate does not speak.
    #[error("unsupported protocol version {0} (this build speaks version {VERSION})")]
    UnsupportedVersion(u8),
    /// An unknown frame kind.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// An unknown codec id.
    #[error("unknown codec id {0}")]
    UnknownCodec(u8),
    /// Flag bits this version does not define.
    #[error("unknown flag bits {0:#04x}")]
    UnknownFlags(u8),
    /// Metadata + body over [`Limits::frame_len_max`].
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// The frame's length (metadata + body).
        len: u64,
        /// The limit.
        max: u32,
    },
    /// Metadata over [`Limits::metadata_len_max`].
    #[error("metadata of {len} bytes exceeds the limit of {max} bytes")]
    MetadataTooLarge {
        /// The metadata length.
        len: u64,
        /// The limit.
        max: u32,
    },
    /// More user entries than [`Limits::entries_max`].
    #[error("{count} metadata entries exceed the limit of {max}")]
    TooManyEntries {
        /// Entries seen so far.
        count: usize,
        /// The limit.
        max: u16,
    },
    /// The metadata section does not parse.
    #[error("malformed metadata: {0}")]
    MalformedMetadata(&'static str),
    /// The stream failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Encodes and decodes [`Frame`]s under [`Limits`].
#[derive(Debug, Clone, Default)]
pub struct FrameCodec {
    /// The limits checked on both sides.
    limits: Limits,
    /// Where the decoder is within the current frame.
    state: DecodeState,
}

#[derive(Debug, Clone, Copy, Default)]
enum DecodeState {
    /// Waiting for a whole header.
    #[default]
    Head,
    /// Header parsed; waiting for `meta_len + body_len` bytes.
    Data(Header),
}

#[derive(Debug, Clone, Copy)]
struct Header {
    kind: FrameKind,
    codec: CodecId,
    flags: Flags,
    request_id: u64,
    meta_len: usize,
    body_len: usize,
}

impl FrameCodec {
    /// A codec enforcing `limits`.
    pub fn new(limits: Limits) -> FrameCodec {
        FrameCodec {
            limits,
            state: DecodeState::Head,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Whether a header was decoded and its frame's metadata and body have not
    /// all arrived yet.
    pub fn is_mid_frame(&self) -> bool {
        matches!(self.state, DecodeState::Data(_))
    }

    fn decode_head(&self, src: &mut BytesMut) -> Result<Option<Header>, ProtocolError> {
        // Magic and version are checked on the first bytes that arrive, not once
        // a whole header is in: a peer that does not speak squall (a stray
        // `GET /`) is told so at once instead of holding the connection open.
        // (Both magic bytes are awaited, so the error names the same two bytes
        // however the stream was split.)
        if let Some(magic) = src.get(..2) {
            if magic != MAGIC {
                return Err(ProtocolError::BadMagic([magic[0], magic[1]]));
            }
        }
        if let Some(&version) = src.get(2) {
            if version != VERSION {
                return Err(ProtocolError::UnsupportedVersion(version));
            }
        }
        if src.len() < HEADER_LEN {
            return Ok(None);
        }
        let kind = FrameKind::from_u8(src[3]).ok_or(ProtocolError::UnknownKind(src[3]))?;
        let codec = CodecId::from_u8(src[4]).ok_or(ProtocolError::UnknownCodec(src[4]))?;
        let flags = src[5];
        if flags & !Flags::KNOWN != 0 {
            return Err(ProtocolError::UnknownFlags(flags & !Flags::KNOWN));
        }
        let mut rest = &src[6..HEADER_LEN];
        let request_id = rest.get_u64();
        let meta_len = rest.get_u32();
        let body_len = rest.get_u32();
        check_lengths(&self.limits, u64::from(meta_len), u64::from(body_len))?;
        src.advance(HEADER_LEN);
        Ok(Some(Header {
            kind,
            codec,
            flags: Flags(flags),
            request_id,
            // Both fit: they are bounded by u32 limits checked above.
            meta_len: meta_len as usize,
            body_len: body_len as usize,
        }))
    }
}

fn check_lengths(limits: &Limits, meta_len: u64, body_len: u64) -> Result<(), ProtocolError> {
    if meta_len > u64::from(limits.metadata_len_max) {
        return Err(ProtocolError::MetadataTooLarge {
            len: meta_len,
            max: limits.metadata_len_max,
        });
    }
    let len = meta_len
        .checked_add(body_len)
        .ok_or(ProtocolError::FrameTooLarge {
            len: u64::MAX,
            max: limits.frame_len_max,
        })?;
    if len > u64::from(limits.frame_len_max) {
        return Err(ProtocolError::FrameTooLarge {
            len,
            max: limits.frame_len_max,
        });
    }
    Ok(())
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        let header = match self.state {
            DecodeState::Head => match self.decode_head(src)? {
                Some(header) => {
                    self.state = DecodeState::Data(header);
                    header
                }
                None => return Ok(None),
            },
            DecodeState::Data(header) => header,
        };
        let total = header.meta_len + header.body_len;
        // Nothing is reserved for the announced length: the buffer grows only
        // as bytes arrive, so a header announcing 16 MiB costs 22 bytes until
        // the peer actually sends the rest (and the reader bounds how long it may take).
        if src.len() < total {
            return Ok(None);
        }
        self.state = DecodeState::Head;
        let meta_bytes = src.split_to(header.meta_len);
        let body = src.split_to(header.body_len).freeze();
        let meta = decode_metadata(&meta_bytes, &self.limits)?;
        Ok(Some(Frame {
            kind: header.kind,
            codec: header.codec,
            flags: header.flags,
            request_id: header.request_id,
            meta,
            body,
        }))
    }

    /// Like the default, but a stream that ends after a header and before that
    /// frame's metadata and body is an error too. (The default only checks for
    /// leftover bytes, and a fully parsed header leaves none behind.)
    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() && matches!(self.state, DecodeState::Head) => Ok(None),
            None => Err(ProtocolError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "stream ended in the middle of a frame",
            ))),
        }
    }
}

fn read_utf8(value: &[u8], what: &'static str) -> Result<String, ProtocolError> {
    std::str::from_utf8(value)
        .map(str::to_owned)
        .map_err(|_| ProtocolError::MalformedMetadata(what))
}

fn decode_metadata(mut src: &[u8], limits: &Limits) -> Result<Metadata, ProtocolError> {
    let mut meta = Metadata::default();
    while !src.is_empty() {
        if src.len() < ENTRY_HEAD_LEN {
            return Err(ProtocolError::MalformedMetadata("truncated entry header"));
        }
        let entry_tag = src[0];
        let len = usize::from(u16::from_be_bytes([src[1], src[2]]));
        src = &src[ENTRY_HEAD_LEN..];
        if src.len() < len {
            return Err(ProtocolError::MalformedMetadata(
                "entry longer than metadata",
            ));
        }
        let (value, rest) = src.split_at(len);
        src = rest;
        match entry_tag {
            tag::METHOD => {
                if meta.method.is_some() {
                    return Err(ProtocolError::MalformedMetadata("duplicate method"));
                }
                meta.method = Some(read_utf8(value, "method is not UTF-8")?);
            }
            tag::DEADLINE => {
                if meta.deadline.is_some() {
                    return Err(ProtocolError::MalformedMetadata("duplicate deadline"));
                }
                let micros: [u8; 8] = value
                    .try_into()
                    .map_err(|_| ProtocolError::MalformedMetadata("deadline is not 8 bytes"))?;
                meta.deadline = Some(Duration::from_micros(u64::from_be_bytes(micros)));
            }
            tag::STATUS => {
                if meta.status.is_some() {
                    return Err(ProtocolError::MalformedMetadata("duplicate status"));
                }
                let [code] = value else {
                    return Err(ProtocolError::MalformedMetadata("status is not 1 byte"));
                };
                meta.status = Some(Code::from_u8(*code));
            }
            tag::MESSAGE => {
                if meta.message.is_some() {
                    return Err(ProtocolError::MalformedMetadata("duplicate message"));
                }
                meta.message = Some(read_utf8(value, "message is not UTF-8")?);
            }
            tag::ENTRY => {
                if meta.entries.len() >= usize::from(limits.entries_max) {
                    return Err(ProtocolError::TooManyEntries {
                        count: meta.entries.len() + 1,
                        max: limits.entries_max,
                    });
                }
                let Some((&key_len, kv)) = value.split_first() else {
                    return Err(ProtocolError::MalformedMetadata("empty user entry"));
                };
                let key_len = usize::from(key_len);
                if key_len == 0 || kv.len() < key_len {
                    return Err(ProtocolError::MalformedMetadata(
                        "bad user entry key length",
                    ));
                }
                let key = read_utf8(&kv[..key_len], "entry key is not UTF-8")?;
                let val = read_utf8(&kv[key_len..], "entry value is not UTF-8")?;
                meta.entries.push((key, val));
            }
            // Unknown tags are skipped: a newer peer may add informational entries.
            _ => {}
        }
    }
    Ok(meta)
}

/// The encoded length of `meta`, or an error if one entry cannot be represented.
fn metadata_len(meta: &Metadata) -> Result<usize, ProtocolError> {
    let mut len = 0usize;
    let mut add =
        |value_len: usize| -> Result<(), ProtocolError> {
            if value_len > ENTRY_VALUE_LEN_MAX {
                return Err(ProtocolError::MalformedMetadata(
                    "entry value longer than 65535 bytes",
                ));
            }
            len = len.checked_add(ENTRY_HEAD_LEN + value_len).ok_or(
                ProtocolError::MalformedMetadata("metadata length overflows"),
            )?;
            Ok(())
        };
    if let Some(method) = &meta.method {
        add(method.len())?;
    }
    if meta.deadline.is_some() {
        add(8)?;
    }
    if meta.status.is_some() {
        add(1)?;
    }
    if let Some(message) = &meta.message {
        add(message.len())?;
    }
    for (key, value) in &meta.entries {
        if key.is_empty() || key.len() > usize::from(u8::MAX) {
            return Err(ProtocolError::MalformedMetadata(
                "entry key must be 1..=255 bytes",
            ));
        }
        add(1 + key.len() + value.len())?;
    }
    Ok(len)
}

fn put_entry(dst: &mut BytesMut, entry_tag: u8, value: &[u8]) {
    dst.put_u8(entry_tag);
    // Lengths were checked by `metadata_len`.
    dst.put_u16(value.len() as u16);
    dst.put_slice(value);
}

impl FrameCodec {
    /// Appends `frame` to `dst`, or returns an error (and leaves `dst` unchanged)
    /// if the frame breaks a limit.
    pub fn encode_frame(&self, frame: &Frame, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        let meta = &frame.meta;
        if meta.entries.len() > usize::from(self.limits.entries_max) {
            return Err(ProtocolError::TooManyEntries {
                count: meta.entries.len(),
                max: self.limits.entries_max,
            });
        }
        if frame.flags.0 & !Flags::KNOWN != 0 {
            return Err(ProtocolError::UnknownFlags(frame.flags.0 & !Flags::KNOWN));
        }
        let meta_len = metadata_len(meta)?;
        check_lengths(&self.limits, meta_len as u64, frame.body.len() as u64)?;
        dst.reserve(HEADER_LEN + meta_len + frame.body.len());
        dst.put_slice(&MAGIC);
        dst.put_u8(VERSION);
        dst.put_u8(frame.kind as u8);
        dst.put_u8(frame.codec as u8);
        dst.put_u8(frame.flags.0);
        dst.put_u64(frame.request_id);
        // Both fit in u32: checked against u32 limits above.
        dst.put_u32(meta_len as u32);
        dst.put_u32(frame.body.len() as u32);
        if let Some(method) = &meta.method {
            put_entry(dst, tag::METHOD, method.as_bytes());
        }
        if let Some(deadline) = meta.deadline {
            let micros = u64::try_from(deadline.as_micros()).unwrap_or(u64::MAX);
            put_entry(dst, tag::DEADLINE, &micros.to_be_bytes());
        }
        if let Some(code) = meta.status {
            put_entry(dst, tag::STATUS, &[code.as_u8()]);
        }
        if let Some(message) = &meta.message {
            put_entry(dst, tag::MESSAGE, message.as_bytes());
        }
        for (key, value) in &meta.entries {
            dst.put_u8(tag::ENTRY);
            dst.put_u16((1 + key.len() + value.len()) as u16);
            dst.put_u8(key.len() as u8);
            dst.put_slice(key.as_bytes());
            dst.put_slice(value.as_bytes());
        }
        dst.put_slice(&frame.body);
        Ok(())
    }
}

impl Encoder<&Frame> for FrameCodec {
    type Error = ProtocolError;

    fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        self.encode_frame(frame, dst)
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = ProtocolError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        self.encode_frame(&frame, dst)
    }
}

/// Encodes `frame` into a fresh buffer (tests and tools).
pub fn encode_to_bytes(frame: &Frame, limits: Limits) -> Result<Bytes, ProtocolError> {
    let mut dst = BytesMut::new();
    FrameCodec::new(limits).encode_frame(frame, &mut dst)?;
    Ok(dst.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Frame {
        let mut meta = Metadata {
            method: Some("Arith.Multiply".into()),
            deadline: Some(Duration::from_millis(250)),
            ..Metadata::default()
        };
        meta.insert("authorization", "token-1");
        Frame {
            kind: FrameKind::Request,
            codec: CodecId::MessagePack,
            flags: Flags(Flags::IDEMPOTENT),
            request_id: 42,
            meta,
            body: Bytes::from_static(b"\x82\xa1a\x07\xa1b\x08"),
        }
    }

    #[test]
    fn read_frame_round_trips() {
        let bytes = encode_to_bytes(&request(), Limits::default()).unwrap();
        let mut src = BytesMut::from(&bytes[..]);
        let frame = FrameCodec::default().decode(&mut src).unwrap().unwrap();
        assert_eq!(frame, request());
        assert!(src.is_empty());
    }

    #[test]
    fn read_incomplete_head_then_data() {
        let bytes = encode_to_bytes(&request(), Limits::default()).unwrap();
        let mut codec = FrameCodec::default();
        let mut src = BytesMut::new();
        for (i, byte) in bytes.iter().enumerate() {
            src.put_u8(*byte);
            let out = codec.decode(&mut src).unwrap();
            assert_eq!(out.is_some(), i == bytes.len() - 1, "byte {i}");
        }
    }

    #[test]
    fn read_bad_magic_is_a_clear_error() {
        let mut src = BytesMut::from(&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..]);
        let error = FrameCodec::default().decode(&mut src).unwrap_err();
        assert!(error
            .to_string()
            .contains("does not speak the squall protocol"));
    }

    #[test]
    fn read_bad_magic_on_the_first_two_bytes() {
        let mut src = BytesMut::from(&b"GE"[..]);
        let error = FrameCodec::default().decode(&mut src).unwrap_err();
        assert!(matches!(error, ProtocolError::BadMagic([b'G', b'E'])));
        let mut src = BytesMut::from(&b"SQ"[..]);
        assert!(FrameCodec::default().decode(&mut src).unwrap().is_none());
        let mut src = BytesMut::from(&b"SQ\x07"[..]);
        let error = FrameCodec::default().decode(&mut src).unwrap_err();
        assert!(matches!(error, ProtocolError::UnsupportedVersion(7)));
    }

    #[test]
    fn read_incomplete_data_reserves_nothing_for_the_announced_length() {
        let bytes = encode_to_bytes(&request(), Limits::default()).unwrap();
        let mut src = BytesMut::with_capacity(HEADER_LEN + 1);
        src.extend_from_slice(&bytes[..HEADER_LEN + 1]);
        let capacity = src.capacity();
        assert!(FrameCodec::default().decode(&mut src).unwrap().is_none());
        assert!(src.capacity() <= capacity);
    }

    #[test]
    fn read_max_frame_len_rejects_before_buffering() {
        let limits = Limits {
            frame_len_max: 16,
            ..Limits::default()
        };
        let bytes = encode_to_bytes(&request(), Limits::default()).unwrap();
        let mut src = BytesMut::from(&bytes[..HEADER_LEN]);
        let error = FrameCodec::new(limits).decode(&mut src).unwrap_err();
        assert!(matches!(
            error,
            ProtocolError::FrameTooLarge { max: 16, .. }
        ));
    }

    #[test]
    fn write_max_frame_len_leaves_buffer_unchanged() {
        let limits = Limits {
            frame_len_max: 16,
            ..Limits::default()
        };
        let mut dst = BytesMut::new();
        let error = FrameCodec::new(limits).encode_frame(&request(), &mut dst);
        assert!(matches!(error, Err(ProtocolError::FrameTooLarge { .. })));
        assert!(dst.is_empty());
    }
}
