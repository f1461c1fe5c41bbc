//! Protocol v1, proven from the outside: only `squall::protocol`'s public API is used.
//!
//! The properties are the ones `docs/PROTOCOL.md` promises a peer: every valid frame
//! round-trips exactly however the bytes are chunked; arbitrary bytes never panic the
//! decoder; every limit is enforced on encode and on decode; every malformed input is
//! a clear error. The hand-written headers below follow the documented layout byte by
//! byte, so they also check the document against the code.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use serde::Serialize;
use squall::protocol::{
    encode_to_bytes, Codec, CodecId, Flags, Frame, FrameCodec, FrameKind, Limits, Metadata,
    ProtocolError, HEADER_LEN, MAGIC, VERSION,
};
use squall::Code;
use tokio_util::codec::Decoder;

// ---------------------------------------------------------------------------
// Strategies.

/// Any frame kind this version defines.
fn frame_kind() -> impl Strategy<Value = FrameKind> {
    prop_oneof![
        Just(FrameKind::Request),
        Just(FrameKind::Response),
        Just(FrameKind::Ping),
        Just(FrameKind::Pong),
        Just(FrameKind::Cancel),
        Just(FrameKind::GoAway),
    ]
}

/// Any codec id this version defines.
fn codec_id() -> impl Strategy<Value = CodecId> {
    prop_oneof![
        Just(CodecId::None),
        Just(CodecId::Json),
        Just(CodecId::MessagePack),
    ]
}

/// Any combination of the defined flag bits.
fn flags() -> impl Strategy<Value = Flags> {
    any::<u8>().prop_map(|bits| Flags(bits & Flags::KNOWN))
}

/// A UTF-8 string of at most `len_max` bytes, cut at a character boundary.
fn utf8_at_most(text: String, len_max: usize) -> String {
    let mut end = text.len().min(len_max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// A user key: 1..=255 bytes of UTF-8, sometimes exactly 255 ASCII bytes.
fn entry_key() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9-]{1,255}",
        // Multi-byte characters, cut to 255 bytes; the first character keeps it non-empty.
        "\\PC{1,255}".prop_map(|key| utf8_at_most(key, 255)),
    ]
}

/// Valid metadata under the default limits (entries_max = 64, metadata under 64 KiB).
fn metadata() -> impl Strategy<Value = Metadata> {
    let entries_max = usize::from(Limits::default().entries_max);
    (
        proptest::option::of("\\PC{0,40}"),
        // Microsecond precision: the wire carries whole microseconds.
        proptest::option::of(any::<u64>().prop_map(Duration::from_micros)),
        proptest::option::of(proptest::sample::select(Code::ALL.to_vec())),
        proptest::option::of("\\PC{0,120}"),
        vec((entry_key(), "\\PC{0,100}"), 0..=entries_max),
    )
        .prop_map(|(method, deadline, status, message, entries)| Metadata {
            method,
            deadline,
            status,
            message,
            entries,
        })
}

/// Any valid frame: every kind, codec and known flag, bodies up to 4 KiB.
fn frame() -> impl Strategy<Value = Frame> {
    (
        frame_kind(),
        codec_id(),
        flags(),
        any::<u64>(),
        metadata(),
        vec(any::<u8>(), 0..4096),
    )
        .prop_map(|(kind, codec, flags, request_id, meta, body)| Frame {
            kind,
            codec,
            flags,
            request_id,
            meta,
            body: Bytes::from(body),
        })
}

/// Chunk lengths for feeding a decoder: often tiny (splitting the header and the
/// metadata entries), sometimes large (several frames in one read).
fn chunk_lens() -> impl Strategy<Value = Vec<usize>> {
    vec(prop_oneof![1usize..=4, 1usize..=64, 1usize..=8192], 1..16)
}

/// Bytes worth feeding a decoder: pure noise, noise behind a valid magic and version,
/// and valid frames with a few bytes overwritten and the end cut off.
fn hostile_bytes() -> impl Strategy<Value = Vec<u8>> {
    let noise = vec(any::<u8>(), 0..2048);
    let behind_magic = vec(any::<u8>(), 0..512).prop_map(|rest| {
        let mut bytes = vec![MAGIC[0], MAGIC[1], VERSION];
        bytes.extend(rest);
        bytes
    });
    let mutated = (
        vec(frame(), 1..3),
        vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(frames, writes, cut)| {
            let mut bytes = concat_encoded(&frames);
            for (index, byte) in writes {
                let at = index.index(bytes.len());
                bytes[at] = byte;
            }
            let keep = cut.index(bytes.len() + 1);
            bytes.truncate(keep.max(bytes.len() / 2));
            bytes
        });
    prop_oneof![noise, behind_magic, mutated]
}

// ---------------------------------------------------------------------------
// Helpers.

/// Encodes each frame under the default limits and concatenates the bytes.
fn concat_encoded(frames: &[Frame]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for frame in frames {
        let encoded = encode_to_bytes(frame, Limits::default()).expect("a valid frame encodes");
        bytes.extend_from_slice(&encoded);
    }
    bytes
}

/// What a decoder made of a byte stream.
#[derive(Debug)]
struct Decoded {
    /// The frames, in order.
    frames: Vec<Frame>,
    /// The first error; decoding stopped there.
    error: Option<ProtocolError>,
    /// Whether the stream ended cleanly (`decode_eof` said `Ok(None)`); only
    /// meaningful without an error.
    clean_eof: bool,
}

/// Feeds `bytes` to `codec` in chunks of `chunk_lens` (cycled). After each chunk it
/// calls `decode` until the decoder asks for more; then `decode_eof` at the end, as
/// `FramedRead` does. It stops at the first error, as a connection would.
fn decode_in_chunks(mut codec: FrameCodec, bytes: &[u8], chunk_lens: &[usize]) -> Decoded {
    let mut buffer = BytesMut::new();
    let mut frames = Vec::new();
    let mut fed = 0;
    let mut chunks = chunk_lens.iter().cycle();
    while fed < bytes.len() {
        let chunk_len = (*chunks.next().expect("at least one chunk length")).max(1);
        let end = bytes.len().min(fed + chunk_len);
        buffer.extend_from_slice(&bytes[fed..end]);
        fed = end;
        loop {
            let buffered = buffer.len();
            match codec.decode(&mut buffer) {
                Ok(Some(frame)) => {
                    assert!(buffer.len() <= buffered, "decode grew the buffer");
                    frames.push(frame);
                    // Every frame consumes at least its header, so this loop ends.
                    assert!(frames.len() <= fed / HEADER_LEN, "frames from nothing");
                }
                Ok(None) => break,
                Err(error) => {
                    return Decoded {
                        frames,
                        error: Some(error),
                        clean_eof: false,
                    }
                }
            }
        }
    }
    loop {
        match codec.decode_eof(&mut buffer) {
            Ok(Some(frame)) => frames.push(frame),
            Ok(None) => {
                return Decoded {
                    frames,
                    error: None,
                    clean_eof: true,
                }
            }
            Err(error) => {
                return Decoded {
                    frames,
                    error: Some(error),
                    clean_eof: false,
                }
            }
        }
    }
}

/// A header written by hand from the layout in `docs/PROTOCOL.md`.
struct RawHeader {
    magic: [u8; 2],
    version: u8,
    kind: u8,
    codec: u8,
    flags: u8,
    request_id: u64,
    meta_len: u32,
    body_len: u32,
}

impl Default for RawHeader {
    /// A request in MessagePack with id 7 and no metadata or body.
    fn default() -> RawHeader {
        RawHeader {
            magic: MAGIC,
            version: VERSION,
            kind: 1,
            codec: 2,
            flags: 0,
            request_id: 7,
            meta_len: 0,
            body_len: 0,
        }
    }
}

impl RawHeader {
    fn bytes(&self) -> BytesMut {
        let mut bytes = BytesMut::new();
        bytes.put_slice(&self.magic);
        bytes.put_u8(self.version);
        bytes.put_u8(self.kind);
        bytes.put_u8(self.codec);
        bytes.put_u8(self.flags);
        bytes.put_u64(self.request_id);
        bytes.put_u32(self.meta_len);
        bytes.put_u32(self.body_len);
        assert_eq!(bytes.len(), HEADER_LEN);
        bytes
    }
}

/// A whole request frame with hand-written metadata bytes and no body.
fn raw_request(meta: &[u8]) -> BytesMut {
    let mut bytes = RawHeader {
        meta_len: u32::try_from(meta.len()).expect("test metadata is small"),
        ..RawHeader::default()
    }
    .bytes();
    bytes.put_slice(meta);
    bytes
}

/// Decodes one frame from `bytes` with the default limits.
fn decode_one(bytes: &[u8]) -> Result<Option<Frame>, ProtocolError> {
    FrameCodec::default().decode(&mut BytesMut::from(bytes))
}

/// The message of a `MalformedMetadata` error, or a panic naming what came instead.
fn malformed_reason(result: Result<Option<Frame>, ProtocolError>) -> &'static str {
    match result {
        Err(ProtocolError::MalformedMetadata(reason)) => reason,
        other => panic!("expected MalformedMetadata, got {other:?}"),
    }
}

fn proptest_config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------
// Properties.

proptest! {
    #![proptest_config(proptest_config())]

    #[test]
    fn any_frame_round_trips_exactly(frame in frame()) {
        // Proves encode then decode is the identity on every valid frame, and that
        // decoding consumes exactly the encoded bytes.
        let bytes = encode_to_bytes(&frame, Limits::default()).expect("a valid frame encodes");
        let mut src = BytesMut::from(&bytes[..]);
        let decoded = FrameCodec::default().decode(&mut src).expect("decodes");
        prop_assert_eq!(decoded, Some(frame));
        prop_assert!(src.is_empty());
    }

    #[test]
    fn concatenated_frames_round_trip_in_arbitrary_chunks(
        frames in vec(frame(), 1..4),
        chunk_lens in chunk_lens(),
    ) {
        // Proves a stream of frames decodes to the same frames however the reads
        // split it (inside the header, inside a metadata entry, across frames), and
        // that the stream then ends cleanly.
        let bytes = concat_encoded(&frames);
        let decoded = decode_in_chunks(FrameCodec::default(), &bytes, &chunk_lens);
        prop_assert!(decoded.error.is_none(), "error: {:?}", decoded.error);
        prop_assert!(decoded.clean_eof);
        prop_assert_eq!(decoded.frames, frames);
    }

    #[test]
    fn a_stream_cut_inside_a_frame_is_an_error_at_eof(
        frames in vec(frame(), 1..3),
        cut_after_header in any::<bool>(),
        cut in any::<prop::sample::Index>(),
        chunk_lens in chunk_lens(),
    ) {
        // Proves a peer that closes in the middle of a frame (anywhere from its first
        // byte to its last) is reported as an error, never as a clean end of stream,
        // and that every frame before the cut is still delivered.
        let bytes = concat_encoded(&frames);
        let last_len = encode_to_bytes(frames.last().expect("one frame"), Limits::default())
            .expect("a valid frame encodes")
            .len();
        let last_start = bytes.len() - last_len;
        // Keep at least one byte of the last frame and drop at least one. Half the
        // cases cut right after the header, the one place no bytes are left over.
        let keep = if cut_after_header && last_len > HEADER_LEN {
            last_start + HEADER_LEN
        } else {
            last_start + 1 + cut.index(last_len - 1)
        };
        let decoded = decode_in_chunks(FrameCodec::default(), &bytes[..keep], &chunk_lens);
        prop_assert!(!decoded.clean_eof);
        prop_assert!(decoded.error.is_some());
        prop_assert_eq!(&decoded.frames[..], &frames[..frames.len() - 1]);
    }

    #[test]
    fn arbitrary_chunks_never_panic(bytes in hostile_bytes(), chunk_lens in chunk_lens()) {
        // Proves arbitrary bytes, in arbitrary reads, only ever yield frames, "need
        // more" or an error (a panic fails the test), and that the outcome does not
        // depend on how the bytes were split.
        let chunked = decode_in_chunks(FrameCodec::default(), &bytes, &chunk_lens);
        let whole = decode_in_chunks(FrameCodec::default(), &bytes, &[usize::MAX]);
        prop_assert_eq!(&chunked.frames, &whole.frames);
        prop_assert_eq!(
            chunked.error.as_ref().map(ToString::to_string),
            whole.error.as_ref().map(ToString::to_string)
        );
        // Whatever the decoder accepts is valid: it re-encodes under the same limits
        // and decodes back to itself.
        for frame in &chunked.frames {
            let encoded = encode_to_bytes(frame, Limits::default());
            prop_assert!(encoded.is_ok(), "accepted frame does not re-encode: {:?}", encoded);
            let encoded = encoded.expect("checked above");
            let again = FrameCodec::default().decode(&mut BytesMut::from(&encoded[..]));
            prop_assert_eq!(again.expect("re-decodes"), Some(frame.clone()));
        }
    }

    #[test]
    fn frames_over_frame_len_max_are_rejected_on_encode_and_decode(
        frame_len_max in 0u32..512,
        excess in 1usize..64,
        mut frame in frame(),
    ) {
        // Proves metadata + body over `frame_len_max` is refused by the sender and, from
        // the header alone, by the receiver; and that exactly `frame_len_max` passes.
        frame.meta = Metadata::default();
        let limits = Limits { frame_len_max, ..Limits::default() };
        let at_limit = frame_len_max as usize;
        frame.body = Bytes::from(vec![0xab; at_limit]);
        let encoded = encode_to_bytes(&frame, limits);
        prop_assert!(encoded.is_ok(), "a frame at the limit is refused: {:?}", encoded);

        frame.body = Bytes::from(vec![0xab; at_limit + excess]);
        let expected_len = (at_limit + excess) as u64;
        let error = encode_to_bytes(&frame, limits).expect_err("over the limit");
        prop_assert!(matches!(
            error,
            ProtocolError::FrameTooLarge { len, max } if len == expected_len && max == frame_len_max
        ), "encode: {:?}", error);

        let bytes = encode_to_bytes(&frame, Limits::default()).expect("under the default limit");
        let mut header_only = BytesMut::from(&bytes[..HEADER_LEN]);
        let error = FrameCodec::new(limits).decode(&mut header_only).expect_err("over the limit");
        prop_assert!(matches!(
            error,
            ProtocolError::FrameTooLarge { len, max } if len == expected_len && max == frame_len_max
        ), "decode: {:?}", error);
    }

    #[test]
    fn metadata_over_metadata_len_max_is_rejected_on_encode_and_decode(
        metadata_len_max in 3u32..512,
        excess in 1usize..64,
    ) {
        // Proves a metadata section over `metadata_len_max` is refused by the sender
        // and, from the header alone, by the receiver; and that exactly the limit passes.
        let limits = Limits { metadata_len_max, ..Limits::default() };
        // A METHOD entry is 3 bytes of tag and length plus the method itself.
        let method_len_at_limit = metadata_len_max as usize - 3;
        let mut frame = Frame::control(FrameKind::Request, 1);
        frame.meta.method = Some("m".repeat(method_len_at_limit));
        let encoded = encode_to_bytes(&frame, limits);
        prop_assert!(encoded.is_ok(), "metadata at the limit is refused: {:?}", encoded);

        frame.meta.method = Some("m".repeat(method_len_at_limit + excess));
        let expected_len = u64::from(metadata_len_max) + excess as u64;
        let error = encode_to_bytes(&frame, limits).expect_err("over the limit");
        prop_assert!(matches!(
            error,
            ProtocolError::MetadataTooLarge { len, max } if len == expected_len && max == metadata_len_max
        ), "encode: {:?}", error);

        let header = RawHeader {
            meta_len: u32::try_from(expected_len).expect("small"),
            ..RawHeader::default()
        };
        let error = FrameCodec::new(limits).decode(&mut header.bytes()).expect_err("over the limit");
        prop_assert!(matches!(
            error,
            ProtocolError::MetadataTooLarge { len, max } if len == expected_len && max == metadata_len_max
        ), "decode: {:?}", error);
    }

    #[test]
    fn entries_over_entries_max_are_rejected_on_encode_and_decode(
        entries_max in 0u16..8,
        excess in 1usize..4,
    ) {
        // Proves more than `entries_max` user entries is refused by the sender and by
        // the receiver (which counts them as it parses); and that exactly the limit passes.
        let limits = Limits { entries_max, ..Limits::default() };
        let mut frame = Frame::control(FrameKind::Request, 1);
        for index in 0..usize::from(entries_max) {
            frame.meta.insert(format!("key-{index}"), "value");
        }
        let encoded = encode_to_bytes(&frame, limits).expect("entries at the limit encode");
        let decoded = FrameCodec::new(limits).decode(&mut BytesMut::from(&encoded[..]));
        prop_assert_eq!(decoded.expect("entries at the limit decode"), Some(frame.clone()));

        for index in 0..excess {
            frame.meta.insert(format!("extra-{index}"), "value");
        }
        let count = usize::from(entries_max) + excess;
        let error = encode_to_bytes(&frame, limits).expect_err("over the limit");
        prop_assert!(matches!(
            error,
            ProtocolError::TooManyEntries { count: c, max } if c == count && max == entries_max
        ), "encode: {:?}", error);

        let bytes = encode_to_bytes(&frame, Limits::default()).expect("under the default limit");
        let error = FrameCodec::new(limits)
            .decode(&mut BytesMut::from(&bytes[..]))
            .expect_err("over the limit");
        // The receiver stops at the first entry over the limit.
        let first_over = usize::from(entries_max) + 1;
        prop_assert!(matches!(
            error,
            ProtocolError::TooManyEntries { count: c, max } if c == first_over && max == entries_max
        ), "decode: {:?}", error);
    }
}

// ---------------------------------------------------------------------------
// Header errors.

#[test]
fn bad_magic_is_a_clear_error() {
    // Proves a peer speaking another protocol (here HTTP) is told so by name.
    let error = decode_one(b"GET / HTTP/1.1\r\nHost: squall\r\n\r\n").unwrap_err();
    assert!(
        matches!(error, ProtocolError::BadMagic([b'G', b'E'])),
        "{error:?}"
    );
    assert!(error
        .to_string()
        .contains("does not speak the squall protocol"));
}

#[test]
fn unsupported_version_is_a_clear_error() {
    // Proves a frame from another protocol version is refused, naming both versions.
    for version in [0, 2, 255] {
        let header = RawHeader {
            version,
            ..RawHeader::default()
        };
        let error = decode_one(&header.bytes()).unwrap_err();
        assert!(
            matches!(error, ProtocolError::UnsupportedVersion(v) if v == version),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(message.contains(&format!("version {version}")), "{message}");
        assert!(
            message.contains(&format!("speaks version {VERSION}")),
            "{message}"
        );
    }
}

#[test]
fn unknown_kinds_are_rejected() {
    // Proves every kind byte outside 1..=6 is an error, and every one inside decodes.
    for kind in 0..=u8::MAX {
        let header = RawHeader {
            kind,
            ..RawHeader::default()
        };
        let result = decode_one(&header.bytes());
        if (1..=6).contains(&kind) {
            let frame = result.unwrap().unwrap();
            assert_eq!(frame.kind as u8, kind);
        } else {
            assert!(
                matches!(result, Err(ProtocolError::UnknownKind(k)) if k == kind),
                "kind {kind}: {result:?}"
            );
        }
    }
}

#[test]
fn unknown_codecs_are_rejected() {
    // Proves every codec byte outside 0..=2 is an error, and every one inside decodes.
    for codec in 0..=u8::MAX {
        let header = RawHeader {
            codec,
            ..RawHeader::default()
        };
        let result = decode_one(&header.bytes());
        if codec <= 2 {
            assert_eq!(result.unwrap().unwrap().codec as u8, codec);
        } else {
            assert!(
                matches!(result, Err(ProtocolError::UnknownCodec(c)) if c == codec),
                "codec {codec}: {result:?}"
            );
        }
    }
}

#[test]
fn unknown_flag_bits_are_rejected_on_decode_and_encode() {
    // Proves a flag bit this version does not define is never silently ignored: the
    // receiver refuses it (naming the unknown bits) and the sender never writes it.
    for flags in 0..=u8::MAX {
        let header = RawHeader {
            flags,
            ..RawHeader::default()
        };
        let result = decode_one(&header.bytes());
        let unknown = flags & !Flags::KNOWN;
        if unknown == 0 {
            assert_eq!(result.unwrap().unwrap().flags, Flags(flags));
        } else {
            assert!(
                matches!(result, Err(ProtocolError::UnknownFlags(bits)) if bits == unknown),
                "flags {flags:#04x}: {result:?}"
            );
            let mut frame = Frame::control(FrameKind::Request, 1);
            frame.flags = Flags(flags);
            let error = encode_to_bytes(&frame, Limits::default()).unwrap_err();
            assert!(matches!(error, ProtocolError::UnknownFlags(bits) if bits == unknown));
        }
    }
}

#[test]
fn a_header_over_the_limits_is_rejected_before_its_data_arrives() {
    // Proves the receiver refuses a huge declared length from the 22 header bytes,
    // without waiting for (or buffering) the body.
    let header = RawHeader {
        meta_len: u32::MAX,
        body_len: u32::MAX,
        ..RawHeader::default()
    };
    let error = decode_one(&header.bytes()).unwrap_err();
    assert!(
        matches!(error, ProtocolError::MetadataTooLarge { .. }),
        "{error:?}"
    );
    let header = RawHeader {
        body_len: u32::MAX,
        ..RawHeader::default()
    };
    let error = decode_one(&header.bytes()).unwrap_err();
    assert!(
        matches!(error, ProtocolError::FrameTooLarge { len, .. } if len == u64::from(u32::MAX)),
        "{error:?}"
    );
}

#[test]
fn a_partial_header_needs_more_bytes() {
    // Proves fewer than 22 bytes are "need more", not an error, even when they are
    // the start of a valid frame.
    let header = RawHeader::default().bytes();
    for len in 0..HEADER_LEN {
        let mut src = BytesMut::from(&header[..len]);
        assert!(FrameCodec::default().decode(&mut src).unwrap().is_none());
        assert_eq!(src.len(), len, "a partial header is not consumed");
    }
}

#[test]
fn a_stream_ending_right_after_a_header_is_an_error_not_a_clean_eof() {
    // Proves the regression where a peer closing exactly after a header (its
    // metadata and body never sent) looked like a clean end of stream.
    let header = RawHeader {
        body_len: 5,
        ..RawHeader::default()
    };
    let mut codec = FrameCodec::default();
    let mut src = header.bytes();
    assert!(codec.decode(&mut src).unwrap().is_none());
    let error = codec.decode_eof(&mut src).unwrap_err();
    assert!(
        error.to_string().contains("in the middle of a frame"),
        "{error}"
    );
}

// ---------------------------------------------------------------------------
// Metadata.

#[test]
fn truncated_metadata_entries_are_rejected() {
    // Proves an entry that does not fit in the metadata section is an error, whether
    // its 3-byte head or its value is cut short.
    assert_eq!(
        malformed_reason(decode_one(&raw_request(&[0x01, 0x00]))),
        "truncated entry header"
    );
    assert_eq!(
        malformed_reason(decode_one(&raw_request(&[0x01, 0x00, 0x05, b'A', b'.']))),
        "entry longer than metadata"
    );
    // A user entry whose key length points past its value.
    assert_eq!(
        malformed_reason(decode_one(&raw_request(&[
            0x05, 0x00, 0x03, 0x05, b'k', b'v'
        ]))),
        "bad user entry key length"
    );
    // A user entry with an empty key, and one with no key length at all.
    assert_eq!(
        malformed_reason(decode_one(&raw_request(&[0x05, 0x00, 0x02, 0x00, b'v']))),
        "bad user entry key length"
    );
    assert_eq!(
        malformed_reason(decode_one(&raw_request(&[0x05, 0x00, 0x00]))),
        "empty user entry"
    );
}

#[test]
fn non_utf8_text_is_rejected() {
    // Proves method, message, entry key and entry value must all be UTF-8.
    let cases: [(&[u8], &str); 4] = [
        (&[0x01, 0x00, 0x02, 0xff, 0xfe], "method is not UTF-8"),
        (&[0x04, 0x00, 0x01, 0xc3], "message is not UTF-8"),
        (
            &[0x05, 0x00, 0x03, 0x01, 0xff, b'v'],
            "entry key is not UTF-8",
        ),
        (
            &[0x05, 0x00, 0x03, 0x01, b'k', 0x80],
            "entry value is not UTF-8",
        ),
    ];
    for (meta, reason) in cases {
        assert_eq!(malformed_reason(decode_one(&raw_request(meta))), reason);
    }
}

#[test]
fn duplicate_well_known_entries_are_rejected() {
    // Proves each of METHOD, DEADLINE, STATUS and MESSAGE may appear at most once, so
    // two readers can never disagree about which one counts.
    let cases: [(&[u8], &str); 4] = [
        (
            &[0x01, 0x00, 0x01, b'a', 0x01, 0x00, 0x01, b'b'],
            "duplicate method",
        ),
        (
            &[
                0x02, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1, 0x02, 0, 8, 0, 0, 0, 0, 0, 0, 0, 2,
            ],
            "duplicate deadline",
        ),
        (&[0x03, 0, 1, 5, 0x03, 0, 1, 0], "duplicate status"),
        (&[0x04, 0, 1, b'a', 0x04, 0, 0], "duplicate message"),
    ];
    for (meta, reason) in cases {
        assert_eq!(malformed_reason(decode_one(&raw_request(meta))), reason);
    }
}

#[test]
fn fixed_size_entries_must_have_their_size() {
    // Proves DEADLINE must be exactly 8 bytes and STATUS exactly 1.
    assert_eq!(
        malformed_reason(decode_one(&raw_request(&[0x02, 0x00, 0x04, 0, 0, 0, 1]))),
        "deadline is not 8 bytes"
    );
    assert_eq!(
        malformed_reason(decode_one(&raw_request(&[0x03, 0x00, 0x02, 0, 5]))),
        "status is not 1 byte"
    );
}

#[test]
fn unknown_metadata_tags_are_skipped() {
    // Proves entries with tags this version does not know (0x00, 0x06..=0xff) are
    // skipped by their length, and the entries around them still decode.
    for unknown_tag in [0x00, 0x06, 0x7f, 0xff] {
        let meta = [
            0x01,
            0x00,
            0x01,
            b'M', // METHOD "M"
            unknown_tag,
            0x00,
            0x03,
            0xff,
            0xfe,
            0xfd, // unknown, 3 opaque bytes
            unknown_tag,
            0x00,
            0x00, // unknown, empty
            0x05,
            0x00,
            0x03,
            0x01,
            b'k',
            b'v', // ENTRY k=v
        ];
        let frame = decode_one(&raw_request(&meta)).unwrap().unwrap();
        assert_eq!(frame.meta.method.as_deref(), Some("M"));
        assert_eq!(frame.meta.entries, vec![("k".to_owned(), "v".to_owned())]);
    }
}

#[test]
fn unknown_status_values_decode_as_unknown() {
    // Proves a status code from a newer peer is not an error: it reads as `Unknown`.
    let frame = decode_one(&raw_request(&[0x03, 0x00, 0x01, 200]))
        .unwrap()
        .unwrap();
    assert_eq!(frame.meta.status, Some(Code::Unknown));
}

#[test]
fn deadlines_travel_as_whole_microseconds() {
    // Proves the deadline is a big-endian u64 count of microseconds, and that a
    // finer duration is rounded down (never up: the budget is never overstated).
    let mut frame = Frame::control(FrameKind::Request, 1);
    frame.meta.deadline = Some(Duration::from_nanos(250_000_999));
    let bytes = encode_to_bytes(&frame, Limits::default()).unwrap();
    assert_eq!(
        &bytes[HEADER_LEN..],
        &[0x02, 0x00, 0x08, 0, 0, 0, 0, 0, 0x03, 0xd0, 0x90]
    );
    let decoded = decode_one(&bytes).unwrap().unwrap();
    assert_eq!(decoded.meta.deadline, Some(Duration::from_micros(250_000)));
}

// ---------------------------------------------------------------------------
// The worked example in docs/PROTOCOL.md, byte for byte.

#[derive(Serialize)]
struct Args {
    a: i64,
    b: i64,
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn worked_example_request_matches_the_document() {
    // Proves the Arith.Multiply request shown in docs/PROTOCOL.md is what squall writes.
    let mut meta = Metadata {
        method: Some("Arith.Multiply".into()),
        deadline: Some(Duration::from_millis(250)),
        ..Metadata::default()
    };
    meta.insert("trace-id", "t1");
    let request = Frame {
        kind: FrameKind::Request,
        codec: CodecId::MessagePack,
        flags: Flags(Flags::IDEMPOTENT),
        request_id: 1,
        meta,
        body: Codec::MessagePack.encode(&Args { a: 7, b: 8 }).unwrap(),
    };
    let bytes = encode_to_bytes(&request, Limits::default()).unwrap();
    let expected = "\
        53 51 01 01 02 01 00 00 00 00 00 00 00 01 00 00 00 2a 00 00 00 07 \
        01 00 0e 41 72 69 74 68 2e 4d 75 6c 74 69 70 6c 79 \
        02 00 08 00 00 00 00 00 03 d0 90 \
        05 00 0b 08 74 72 61 63 65 2d 69 64 74 31 \
        82 a1 61 07 a1 62 08";
    assert_eq!(
        hex(&bytes),
        expected.split_whitespace().collect::<Vec<_>>().join(" ")
    );
}

#[test]
fn worked_example_responses_match_the_document() {
    // Proves the two responses shown in docs/PROTOCOL.md (a success carrying 56, and
    // a NotFound error that did not execute) are what squall writes.
    let ok = Frame {
        kind: FrameKind::Response,
        codec: CodecId::MessagePack,
        flags: Flags::default(),
        request_id: 1,
        meta: Metadata::default(),
        body: Codec::MessagePack.encode(&56_i64).unwrap(),
    };
    let expected = "53 51 01 02 02 00 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 01 38";
    assert_eq!(
        hex(&encode_to_bytes(&ok, Limits::default()).unwrap()),
        expected
    );

    let not_found = Frame {
        kind: FrameKind::Response,
        codec: CodecId::None,
        flags: Flags(Flags::NOT_EXECUTED),
        request_id: 2,
        meta: Metadata {
            status: Some(Code::NotFound),
            message: Some("no method Arith.Pow".into()),
            ..Metadata::default()
        },
        body: Bytes::new(),
    };
    let expected = "\
        53 51 01 02 00 02 00 00 00 00 00 00 00 02 00 00 00 1a 00 00 00 00 \
        03 00 01 05 \
        04 00 13 6e 6f 20 6d 65 74 68 6f 64 20 41 72 69 74 68 2e 50 6f 77";
    assert_eq!(
        hex(&encode_to_bytes(&not_found, Limits::default()).unwrap()),
        expected.split_whitespace().collect::<Vec<_>>().join(" ")
    );
}
