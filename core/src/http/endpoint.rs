//! One HTTP request to `POST /jsonrpc`: check method, path, content type,
//! size and deadline header; parse the envelope; run each call through the
//! server's middleware stack exactly as a binary-protocol request runs (the
//! same `Context`, the inherited deadline, panics caught); write the answer.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue, ALLOW, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Method, StatusCode};
use serde_json::Value;
use tokio::time::Instant;
use tower::ServiceExt as _;

use super::jsonrpc::{self, Body, Call, Entry};
use super::HttpConfig;
use crate::context::{with_deadline, Context};
use crate::protocol::{Codec, Metadata};
use crate::server::{BoxService, Request, Router};
use crate::status::Status;

/// The header carrying a call's budget in whole milliseconds.
pub const TIMEOUT_HEADER: &str = "squall-timeout-ms";
/// Headers with this prefix become user metadata, the prefix removed.
pub const METADATA_HEADER_PREFIX: &str = "squall-meta-";

/// The HTTP response type.
pub(crate) type HttpResponse = hyper::Response<Full<Bytes>>;

/// What every connection's requests share.
#[derive(Debug)]
pub(crate) struct Endpoint {
    /// The server's middleware stack, ending in the router. Each call clones
    /// it; the lock only makes the endpoint shareable across threads (the
    /// boxed stack is `Send` but not `Sync`) and is held for the clone alone.
    pub(crate) service: std::sync::Mutex<BoxService>,
    /// To tell the router's unknown-method refusal from a handler's `NotFound`.
    pub(crate) router: Router,
    /// Limits and the path.
    pub(crate) config: HttpConfig,
    /// Numbers the calls (the `request_id` handlers and logs see).
    pub(crate) next_call_id: AtomicU64,
}

fn plain(status: StatusCode, message: &str) -> HttpResponse {
    let mut response = hyper::Response::new(Full::new(Bytes::from(format!("{message}\n"))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn json(body: Vec<u8>) -> HttpResponse {
    let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Whether the content type is `application/json` (parameters such as
/// `charset=utf-8` allowed, case ignored).
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// The call budget the request's header gives: `Ok(None)` without the header.
fn timeout_of(headers: &HeaderMap) -> Result<Option<Duration>, String> {
    let Some(value) = headers.get(TIMEOUT_HEADER) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .filter(|text| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|text| text.parse::<u64>().ok())
        .map(|ms| Some(Duration::from_millis(ms)))
        .ok_or_else(|| format!("{TIMEOUT_HEADER} must be a whole number of milliseconds"))
}

/// User metadata from the headers: `authorization` as itself (so the auth
/// layer works over HTTP), `squall-meta-<key>` as `<key>`. Values that are not
/// UTF-8 are skipped. hyper bounds their number and size.
fn metadata_of(headers: &HeaderMap) -> Metadata {
    let mut meta = Metadata::default();
    for (name, value) in headers {
        let name = name.as_str();
        let key = if name == crate::server::middleware::AUTHORIZATION {
            name
        } else if let Some(key) = name.strip_prefix(METADATA_HEADER_PREFIX) {
            key
        } else {
            continue;
        };
        if let Ok(value) = value.to_str() {
            meta.insert(key, value);
        }
    }
    meta
}

impl Endpoint {
    /// Answers one HTTP request.
    pub(crate) async fn handle(
        self: Arc<Self>,
        peer: SocketAddr,
        request: hyper::Request<Incoming>,
    ) -> Result<HttpResponse, Infallible> {
        let arrived = Instant::now();
        if request.uri().path() != self.config.path {
            return Ok(plain(
                StatusCode::NOT_FOUND,
                "not found: JSON-RPC is served at POST /jsonrpc",
            ));
        }
        if request.method() != Method::POST {
            let mut response = plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed: JSON-RPC requests are POSTed",
            );
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("POST"));
            return Ok(response);
        }
        if !is_json(request.headers()) {
            return Ok(plain(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported media type: send Content-Type: application/json",
            ));
        }
        let timeout = match timeout_of(request.headers()) {
            Ok(timeout) => timeout,
            Err(message) => return Ok(plain(StatusCode::BAD_REQUEST, &message)),
        };
        let meta = metadata_of(request.headers());
        let bytes = match self.read_body(request).await {
            Ok(bytes) => bytes,
            Err(response) => return Ok(response),
        };
        let deadline = timeout.map(|timeout| arrived + timeout);
        Ok(self.answer(&bytes, peer, deadline, meta).await)
    }

    /// The whole body, at most `body_bytes_max` of it, within `body_read_timeout`.
    async fn read_body(&self, request: hyper::Request<Incoming>) -> Result<Bytes, HttpResponse> {
        let limit = self.config.body_bytes_max;
        let too_large = || {
            plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("payload too large: the limit is {limit} bytes"),
            )
        };
        let declared = request
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|length| length > limit as u64) {
            return Err(too_large());
        }
        let collect = Limited::new(request.into_body(), limit).collect();
        match tokio::time::timeout(self.config.body_read_timeout, collect).await {
            Ok(Ok(collected)) => Ok(collected.to_bytes()),
            Ok(Err(error)) if error.downcast_ref::<LengthLimitError>().is_some() => {
                Err(too_large())
            }
            Ok(Err(error)) => Err(plain(
                StatusCode::BAD_REQUEST,
                &format!("bad request body: {error}"),
            )),
            Err(_) => Err(plain(
                StatusCode::REQUEST_TIMEOUT,
                &format!(
                    "request timeout: the body did not arrive within {:?}",
                    self.config.body_read_timeout
                ),
            )),
        }
    }

    /// Runs the calls of a body and writes their answers: 200 with a response
    /// object or array, or 204 when there is nothing to answer (notifications).
    async fn answer(
        &self,
        bytes: &[u8],
        peer: SocketAddr,
        deadline: Option<Instant>,
        meta: Metadata,
    ) -> HttpResponse {
        let body =
            match jsonrpc::parse_body(bytes, self.config.json_depth_max, self.config.batch_len_max)
            {
                Ok(body) => body,
                Err(error) => {
                    let status = Status::invalid_argument(error.message).not_executed();
                    let mut out = Vec::new();
                    jsonrpc::write_error(&mut out, &Value::Null, error.code, &status);
                    return json(out);
                }
            };
        let (entries, batch) = match body {
            Body::Single(entry) => (vec![entry], false),
            Body::Batch(entries) => (entries, true),
        };
        // A batch's calls run concurrently, as the spec allows: each drives its
        // own clone of the stack, so a concurrency limit below the batch size
        // queues (or sheds) them rather than deadlocking.
        let answers = futures_util::future::join_all(
            entries
                .into_iter()
                .map(|entry| self.run_entry(entry, peer, deadline, meta.clone())),
        )
        .await;
        let answers: Vec<Vec<u8>> = answers.into_iter().flatten().collect();
        if answers.is_empty() {
            let mut response = hyper::Response::new(Full::new(Bytes::new()));
            *response.status_mut() = StatusCode::NO_CONTENT;
            return response;
        }
        if !batch {
            return json(answers.into_iter().next().unwrap_or_default());
        }
        let mut out = Vec::with_capacity(answers.iter().map(|a| a.len() + 1).sum::<usize>() + 1);
        out.push(b'[');
        for (index, answer) in answers.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            out.extend_from_slice(answer);
        }
        out.push(b']');
        json(out)
    }

    /// One entry's response object, or `None` for a notification.
    async fn run_entry(
        &self,
        entry: Entry,
        peer: SocketAddr,
        deadline: Option<Instant>,
        meta: Metadata,
    ) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let call = match entry {
            Entry::Call(call) => call,
            Entry::Invalid { id, message } => {
                let status = Status::invalid_argument(message).not_executed();
                jsonrpc::write_error(&mut out, &id, jsonrpc::INVALID_REQUEST, &status);
                return Some(out);
            }
        };
        let Call { id, method, body } = call;
        let registered = self.router.has_method(&method);
        let result = self.run_call(method, body, peer, deadline, meta).await;
        let id = id?;
        match result {
            Ok(reply) => jsonrpc::write_result(&mut out, &id, &reply),
            Err(status) => {
                let code = jsonrpc::error_code(&status, registered);
                jsonrpc::write_error(&mut out, &id, code, &status);
            }
        }
        Some(out)
    }

    /// Runs one call through the stack as the binary server runs a request:
    /// refused unexecuted if it arrived past its deadline, the deadline
    /// inherited by the calls the handler makes and enforced on it, and a
    /// panic (in a handler or a layer) answered as `Internal`.
    async fn run_call(
        &self,
        method: String,
        body: Bytes,
        peer: SocketAddr,
        deadline: Option<Instant>,
        meta: Metadata,
    ) -> Result<Bytes, Status> {
        if deadline.is_some_and(|deadline| deadline <= Instant::now()) {
            return Err(
                Status::deadline_exceeded(format!("{method}: arrived past its deadline"))
                    .not_executed(),
            );
        }
        let call_id = self.next_call_id.fetch_add(1, Ordering::Relaxed);
        let ctx = Context::new(method, call_id, peer, deadline, meta, Codec::Json, false);
        let request = Request { ctx, body };
        let service = self
            .service
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        let call = service.oneshot(request);
        let guarded = AssertUnwindSafe(with_deadline(deadline, call)).catch_unwind();
        let outcome = match deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, guarded).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    return Err(Status::deadline_exceeded(
                        "handler ran past the call's deadline",
                    ))
                }
            },
            None => guarded.await,
        };
        crate::server::result_of(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn content_type_must_be_application_json_with_any_parameters() {
        assert!(is_json(&headers(&[("content-type", "application/json")])));
        assert!(is_json(&headers(&[(
            "content-type",
            "Application/JSON; charset=utf-8"
        )])));
        assert!(!is_json(&headers(&[("content-type", "text/plain")])));
        assert!(!is_json(&headers(&[("content-type", "application/jsonx")])));
        assert!(!is_json(&headers(&[])));
    }

    #[test]
    fn the_timeout_header_is_whole_milliseconds() {
        assert_eq!(timeout_of(&headers(&[])), Ok(None));
        assert_eq!(
            timeout_of(&headers(&[("squall-timeout-ms", "250")])),
            Ok(Some(Duration::from_millis(250)))
        );
        for bad in ["-1", "1.5", "", "2s", "99999999999999999999999"] {
            let map = {
                let mut map = HeaderMap::new();
                map.insert(TIMEOUT_HEADER, HeaderValue::from_str(bad).unwrap());
                map
            };
            assert!(timeout_of(&map).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn authorization_and_prefixed_headers_become_metadata() {
        let meta = metadata_of(&headers(&[
            ("authorization", "s3cret"),
            ("squall-meta-trace-id", "t-1"),
            ("user-agent", "python"),
        ]));
        assert_eq!(meta.get("authorization"), Some("s3cret"));
        assert_eq!(meta.get("trace-id"), Some("t-1"));
        assert_eq!(meta.get("user-agent"), None);
    }
}
