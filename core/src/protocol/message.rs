//! The one place requests and replies become frames and frames become requests
//! and replies, both directions side by side (client and server once each kept
//! their own copy, and the two disagreed about which status properties travel).
//!
//! Every property of a [`Status`] crosses the wire: the code and message in
//! metadata, "not executed" and "retryable" (when it differs from the code's
//! default) as flags. The round-trip tests below check all of them.

use std::time::Duration;

use bytes::Bytes;

use super::frame::{Flags, Frame, FrameKind, Metadata};
use super::payload::Codec;
use crate::status::{Code, Status};

/// A request as the server reads it from its frame.
#[derive(Debug)]
pub(crate) struct RequestParts {
    /// `Service.Method`.
    pub(crate) method: String,
    /// How the arguments are encoded (and the reply will be).
    pub(crate) codec: Codec,
    /// The caller's remaining budget when it sent the frame.
    pub(crate) deadline: Option<Duration>,
    /// The caller declared the method idempotent.
    pub(crate) idempotent: bool,
    /// User key/values (the method and deadline taken out).
    pub(crate) meta: Metadata,
    /// The encoded arguments.
    pub(crate) body: Bytes,
}

/// The request frame for call `id`.
#[inline]
pub(crate) fn request_frame(
    id: u64,
    codec: Codec,
    idempotent: bool,
    method: String,
    deadline: Option<Duration>,
    entries: Vec<(String, String)>,
    body: Bytes,
) -> Frame {
    Frame {
        kind: FrameKind::Request,
        codec: codec.id(),
        flags: Flags(if idempotent { Flags::IDEMPOTENT } else { 0 }),
        request_id: id,
        meta: Metadata {
            method: Some(method),
            deadline,
            status: None,
            message: None,
            entries,
        },
        body,
    }
}

/// Reads a request frame. A request the server cannot run (no payload codec, no
/// method) is an error reply, not executed and not worth retrying.
#[inline]
pub(crate) fn request_from_frame(mut frame: Frame) -> Result<RequestParts, Status> {
    let Some(codec) = Codec::from_id(frame.codec) else {
        let status = Status::invalid_argument("request has no payload codec");
        return Err(status.not_executed().with_retryable(false));
    };
    let Some(method) = frame.meta.method.take() else {
        let status = Status::invalid_argument("request has no method");
        return Err(status.not_executed().with_retryable(false));
    };
    Ok(RequestParts {
        method,
        codec,
        deadline: frame.meta.deadline.take(),
        idempotent: frame.flags.contains(Flags::IDEMPOTENT),
        meta: frame.meta,
        body: frame.body,
    })
}

/// The response frame for `result` to request `id`: a body in `codec`, or a
/// status with every property that matters to the caller's retry logic.
#[inline]
pub(crate) fn response_frame(id: u64, codec: Codec, result: Result<Bytes, Status>) -> Frame {
    match result {
        Ok(body) => Frame {
            kind: FrameKind::Response,
            codec: codec.id(),
            flags: Flags::default(),
            request_id: id,
            meta: Metadata::default(),
            body,
        },
        Err(status) => {
            let mut frame = Frame::control(FrameKind::Response, id);
            frame.meta.status = Some(status.code());
            frame.meta.message = Some(status.message().to_owned());
            let mut flags = 0;
            if !status.may_have_executed() {
                flags |= Flags::NOT_EXECUTED;
            }
            // Only a retryable property that differs from the code's default is
            // sent, so the common case stays readable by 1.0 peers.
            match (
                status.is_retryable(),
                status.code().is_retryable_by_default(),
            ) {
                (false, true) => flags |= Flags::NOT_RETRYABLE,
                (true, false) => flags |= Flags::RETRYABLE,
                _ => {}
            }
            frame.flags = Flags(flags);
            frame
        }
    }
}

/// Reads a response frame: the reply's codec and body, or the status it carries.
#[inline]
pub(crate) fn response_from_frame(frame: Frame) -> Result<(Codec, Bytes), Status> {
    let code = match frame.meta.status {
        None | Some(Code::Ok) => {
            let codec = Codec::from_id(frame.codec).unwrap_or_default();
            return Ok((codec, frame.body));
        }
        Some(code) => code,
    };
    let mut status = Status::new(code, frame.meta.message.unwrap_or_default());
    if frame.flags.contains(Flags::NOT_EXECUTED) {
        status = status.not_executed();
    }
    // A sender sets at most one; should both arrive, not retrying is the safe reading.
    if frame.flags.contains(Flags::NOT_RETRYABLE) {
        status = status.with_retryable(false);
    } else if frame.flags.contains(Flags::RETRYABLE) {
        status = status.with_retryable(true);
    }
    Err(status)
}

/// The goaway a server sends: no new requests on this connection, and (1.1)
/// every request with an id above `last_read` — the highest it has read — will
/// not be executed, so the client can fail those at once as safe to re-send.
pub(crate) fn goaway_frame(last_read: u64) -> Frame {
    let mut frame = Frame::control(FrameKind::GoAway, last_read);
    frame.flags = Flags(Flags::NOT_EXECUTED);
    frame
}

/// The highest request id a goaway says the server read, if it says (a 1.0
/// server sends id 0 without the flag: nothing is known).
pub(crate) fn goaway_last_read(frame: &Frame) -> Option<u64> {
    frame
        .flags
        .contains(Flags::NOT_EXECUTED)
        .then_some(frame.request_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{encode_to_bytes, FrameCodec, Limits};
    use bytes::BytesMut;
    use tokio_util::codec::Decoder;

    /// Encodes and decodes `frame` through the real codec, as the peer sees it.
    fn over_the_wire(frame: &Frame) -> Frame {
        let bytes = encode_to_bytes(frame, Limits::default()).expect("frame within limits");
        let mut src = BytesMut::from(&bytes[..]);
        FrameCodec::default()
            .decode(&mut src)
            .expect("valid frame")
            .expect("whole frame")
    }

    fn statuses() -> Vec<Status> {
        let mut all = Vec::new();
        for code in (1..=16).map(Code::from_u8) {
            for executed in [true, false] {
                for retryable in [true, false] {
                    let status = Status::new(code, format!("{code} failed"));
                    let status = if executed {
                        status
                    } else {
                        status.not_executed()
                    };
                    all.push(status.with_retryable(retryable));
                }
            }
        }
        all
    }

    #[test]
    fn every_status_property_survives_the_wire() {
        for status in statuses() {
            let frame = over_the_wire(&response_frame(7, Codec::Json, Err(status.clone())));
            assert_eq!(frame.request_id, 7);
            let back = response_from_frame(frame).expect_err("an error reply");
            assert_eq!(back.code(), status.code(), "{status}");
            assert_eq!(back.message(), status.message(), "{status}");
            assert_eq!(back.is_retryable(), status.is_retryable(), "{status}");
            assert_eq!(
                back.may_have_executed(),
                status.may_have_executed(),
                "{status}"
            );
        }
    }

    #[test]
    fn default_retryability_sends_no_retry_flag() {
        let frame = response_frame(1, Codec::Json, Err(Status::unavailable("down")));
        assert_eq!(frame.flags.0 & (Flags::RETRYABLE | Flags::NOT_RETRYABLE), 0);
    }

    #[test]
    fn success_reply_round_trips_codec_and_body() {
        let body = Bytes::from_static(b"{\"sum\":3}");
        let frame = over_the_wire(&response_frame(9, Codec::Json, Ok(body.clone())));
        let (codec, back) = response_from_frame(frame).expect("a success reply");
        assert_eq!(codec, Codec::Json);
        assert_eq!(back, body);
    }

    #[test]
    fn request_round_trips_every_field() {
        let entries = vec![("authorization".to_owned(), "token".to_owned())];
        let frame = request_frame(
            3,
            Codec::MessagePack,
            true,
            "Arith.Add".into(),
            Some(Duration::from_millis(250)),
            entries.clone(),
            Bytes::from_static(b"\x92\x01\x02"),
        );
        let parts = request_from_frame(over_the_wire(&frame)).expect("a valid request");
        assert_eq!(parts.method, "Arith.Add");
        assert_eq!(parts.codec, Codec::MessagePack);
        assert_eq!(parts.deadline, Some(Duration::from_millis(250)));
        assert!(parts.idempotent);
        assert_eq!(parts.meta.entries, entries);
        assert_eq!(&parts.body[..], b"\x92\x01\x02");
    }

    #[test]
    fn request_without_method_is_refused_not_executed_not_retryable() {
        let mut frame = request_frame(
            3,
            Codec::Json,
            false,
            "X.Y".into(),
            None,
            Vec::new(),
            Bytes::new(),
        );
        frame.meta.method = None;
        let status = request_from_frame(frame).expect_err("no method");
        assert!(!status.may_have_executed());
        assert!(!status.is_retryable());
    }

    #[test]
    fn goaway_carries_the_last_read_id() {
        let frame = over_the_wire(&goaway_frame(41));
        assert_eq!(frame.kind, FrameKind::GoAway);
        assert_eq!(goaway_last_read(&frame), Some(41));
        assert_eq!(
            goaway_last_read(&Frame::control(FrameKind::GoAway, 0)),
            None
        );
    }
}
