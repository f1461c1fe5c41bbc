//! The JSON-RPC 2.0 envelope, apart from HTTP: a body becomes calls (or one
//! error answering the whole body), `params` become the argument body a handler
//! decodes with the JSON codec, and a [`Status`] becomes an error object.
//! docs/PROTOCOL.md ("HTTP + JSON-RPC mapping") is the contract; the tests
//! below check it rule by rule.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::protocol::DepthLimited;
use crate::status::{Code, Status};

/// Invalid JSON was received.
pub const PARSE_ERROR: i64 = -32700;
/// The JSON sent is not a valid request object (or the batch is empty or too long).
pub const INVALID_REQUEST: i64 = -32600;
/// The method is not registered.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// The params did not decode into the handler's argument, or it rejected them.
pub const INVALID_PARAMS: i64 = -32602;
/// `Internal`: a handler panicked, a reply could not be encoded.
pub const INTERNAL_ERROR: i64 = -32603;
/// Every other status (the spec's implementation-defined server error); its
/// code is in `error.data.status`.
pub const SERVER_ERROR: i64 = -32000;

/// One element of a body: a call to dispatch, or an error to answer at once.
#[derive(Debug)]
pub(crate) enum Entry {
    /// A well-formed request.
    Call(Call),
    /// A malformed one: always answered, with its id if it had a valid one.
    Invalid {
        /// The id to answer with (`null` if it had none or an invalid one).
        id: Value,
        /// Why it is invalid.
        message: String,
    },
}

/// A well-formed request.
#[derive(Debug)]
pub(crate) struct Call {
    /// The id to answer with; `None` for a notification (never answered).
    pub(crate) id: Option<Value>,
    /// `Service.Method`.
    pub(crate) method: String,
    /// The handler's argument, JSON-encoded (see [`argument_body`]).
    pub(crate) body: Bytes,
}

/// What a body holds.
#[derive(Debug)]
pub(crate) enum Body {
    /// One request object: answered with one response object.
    Single(Entry),
    /// An array of them: answered with an array (of the non-notifications).
    Batch(Vec<Entry>),
}

/// A failure that answers the whole body with one error object (`id: null`).
#[derive(Debug, PartialEq)]
pub(crate) struct BodyError {
    /// The JSON-RPC error code.
    pub(crate) code: i64,
    /// What is wrong.
    pub(crate) message: String,
}

/// Parses a body nested at most `depth_max` levels, with at most
/// `batch_len_max` requests in a batch.
pub(crate) fn parse_body(
    bytes: &[u8],
    depth_max: usize,
    batch_len_max: usize,
) -> Result<Body, BodyError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = Value::deserialize(DepthLimited::new(&mut deserializer, depth_max))
        .and_then(|value| deserializer.end().map(|()| value))
        .map_err(|error| BodyError {
            code: PARSE_ERROR,
            message: format!("parse error: {error}"),
        })?;
    match value {
        Value::Array(entries) if entries.is_empty() => Err(BodyError {
            code: INVALID_REQUEST,
            message: "invalid request: an empty batch".to_owned(),
        }),
        Value::Array(entries) if entries.len() > batch_len_max => Err(BodyError {
            code: INVALID_REQUEST,
            message: format!(
                "invalid request: a batch of {} requests, over the limit of {batch_len_max}",
                entries.len()
            ),
        }),
        Value::Array(entries) => Ok(Body::Batch(entries.into_iter().map(entry).collect())),
        value => Ok(Body::Single(entry(value))),
    }
}

/// Reads one request object.
fn entry(value: Value) -> Entry {
    let Value::Object(mut object) = value else {
        return invalid(Value::Null, "a request must be a JSON object");
    };
    let id = match object.remove("id") {
        None => None,
        Some(id @ (Value::String(_) | Value::Number(_) | Value::Null)) => Some(id),
        Some(_) => return invalid(Value::Null, "\"id\" must be a string, a number or null"),
    };
    let answer_id = id.clone().unwrap_or(Value::Null);
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return invalid(answer_id, "\"jsonrpc\" must be exactly \"2.0\"");
    }
    let method = match object.remove("method") {
        Some(Value::String(method)) => method,
        _ => return invalid(answer_id, "\"method\" must be a string"),
    };
    let body = match argument_body(object.remove("params")) {
        Ok(body) => body,
        Err(message) => return invalid(answer_id, message),
    };
    Entry::Call(Call { id, method, body })
}

fn invalid(id: Value, message: &str) -> Entry {
    Entry::Invalid {
        id,
        message: format!("invalid request: {message}"),
    }
}

/// The argument a handler decodes, from `params` — the one rule:
/// - absent or `[]`: `null` (a handler taking `()`);
/// - `[x]`: `x` (a handler taking one argument);
/// - `[x1, …, xn]`, n ≥ 2: the array (a handler taking an n-tuple);
/// - `{…}`: the object (a handler taking one struct or map).
///
/// Anything else is not allowed by the spec (`params` must be structured).
fn argument_body(params: Option<Value>) -> Result<Bytes, &'static str> {
    let argument = match params {
        None => Value::Null,
        Some(Value::Array(mut items)) => match items.len() {
            0 => Value::Null,
            1 => items.pop().unwrap_or(Value::Null),
            _ => Value::Array(items),
        },
        Some(object @ Value::Object(_)) => object,
        Some(_) => return Err("\"params\" must be an array or an object"),
    };
    // Serialising a `Value` cannot fail: its keys are strings.
    serde_json::to_vec(&argument)
        .map(Bytes::from)
        .map_err(|_| "\"params\" could not be re-encoded")
}

/// The JSON-RPC code of a failed call. `registered` says whether the router
/// knows the method: only its own unknown-method refusal is -32601, not a
/// handler's `NotFound` (a missing key).
pub(crate) fn error_code(status: &Status, registered: bool) -> i64 {
    match status.code() {
        Code::NotFound if !registered => METHOD_NOT_FOUND,
        Code::InvalidArgument => INVALID_PARAMS,
        Code::Internal => INTERNAL_ERROR,
        _ => SERVER_ERROR,
    }
}

/// `error.data`: the status as squall's binary protocol would carry it.
fn status_data(status: &Status) -> Value {
    let mut data = Map::new();
    data.insert("status".into(), status.code().as_str().into());
    data.insert("status_code".into(), status.code().as_u8().into());
    data.insert("message".into(), status.message().into());
    data.insert("retryable".into(), status.is_retryable().into());
    data.insert(
        "may_have_executed".into(),
        status.may_have_executed().into(),
    );
    Value::Object(data)
}

/// A response object carrying `result`, already JSON-encoded by the handler's
/// codec (so it is copied, not parsed and re-encoded).
pub(crate) fn write_result(out: &mut Vec<u8>, id: &Value, result: &[u8]) {
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"result\":");
    out.extend_from_slice(result);
    out.extend_from_slice(b",\"id\":");
    write_value(out, id);
    out.push(b'}');
}

/// A response object carrying an error: `message` is the status's message,
/// `data` the whole status.
pub(crate) fn write_error(out: &mut Vec<u8>, id: &Value, code: i64, status: &Status) {
    let mut error = Map::new();
    error.insert("code".into(), code.into());
    error.insert("message".into(), status.message().into());
    error.insert("data".into(), status_data(status));
    let mut response = Map::new();
    response.insert("jsonrpc".into(), "2.0".into());
    response.insert("error".into(), Value::Object(error));
    response.insert("id".into(), id.clone());
    write_value(out, &Value::Object(response));
}

fn write_value(out: &mut Vec<u8>, value: &Value) {
    // Writing a `Value` into a Vec cannot fail.
    let _ = serde_json::to_writer(out, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn single(body: &str) -> Entry {
        match parse_body(body.as_bytes(), 64, 8) {
            Ok(Body::Single(entry)) => entry,
            other => panic!("expected one entry, got {other:?}"),
        }
    }

    fn call(body: &str) -> Call {
        match single(body) {
            Entry::Call(call) => call,
            Entry::Invalid { message, .. } => panic!("expected a call, got {message}"),
        }
    }

    fn argument(params: &str) -> String {
        let body = format!(r#"{{"jsonrpc":"2.0","method":"A.B","params":{params},"id":1}}"#);
        String::from_utf8(call(&body).body.to_vec()).unwrap()
    }

    #[test]
    fn params_map_to_the_handler_argument_by_the_documented_rule() {
        assert_eq!(argument("[]"), "null");
        assert_eq!(argument("[7]"), "7");
        assert_eq!(argument("[[1,2]]"), "[1,2]");
        assert_eq!(argument("[7,8]"), "[7,8]");
        assert_eq!(argument(r#"{"a":7}"#), r#"{"a":7}"#);
        let absent = call(r#"{"jsonrpc":"2.0","method":"A.B","id":1}"#);
        assert_eq!(&absent.body[..], b"null");
    }

    #[test]
    fn a_request_without_an_id_is_a_notification_and_a_null_id_is_not() {
        assert_eq!(call(r#"{"jsonrpc":"2.0","method":"A.B"}"#).id, None);
        assert_eq!(
            call(r#"{"jsonrpc":"2.0","method":"A.B","id":null}"#).id,
            Some(Value::Null)
        );
    }

    #[test]
    fn malformed_requests_are_invalid_and_keep_a_valid_id() {
        for (body, id) in [
            (r#"{"jsonrpc":"1.0","method":"A.B","id":4}"#, Value::from(4)),
            (r#"{"jsonrpc":"2.0","method":5,"id":"x"}"#, Value::from("x")),
            (
                r#"{"jsonrpc":"2.0","method":"A.B","params":3,"id":4}"#,
                Value::from(4),
            ),
            (r#"{"jsonrpc":"2.0","method":"A.B","id":[1]}"#, Value::Null),
            ("17", Value::Null),
        ] {
            match single(body) {
                Entry::Invalid { id: got, .. } => assert_eq!(got, id, "{body}"),
                Entry::Call(call) => panic!("{body} was accepted as {call:?}"),
            }
        }
    }

    #[test]
    fn bodies_that_are_not_json_or_empty_or_too_long_or_too_deep_fail_whole() {
        let code = |body: &str| {
            parse_body(body.as_bytes(), 8, 2)
                .map(|_| ())
                .unwrap_err()
                .code
        };
        assert_eq!(code("{\"jsonrpc\":"), PARSE_ERROR);
        assert_eq!(code("{} trailing"), PARSE_ERROR);
        assert_eq!(code("[]"), INVALID_REQUEST);
        assert_eq!(code("[1,2,3]"), INVALID_REQUEST);
        // Depth counts values nested inside another: 10 brackets hold 9 levels.
        assert_eq!(
            code(&format!("{}{}", "[".repeat(10), "]".repeat(10))),
            PARSE_ERROR
        );
        assert!(parse_body(
            format!("{}{}", "[".repeat(9), "]".repeat(9)).as_bytes(),
            8,
            2
        )
        .is_ok());
        assert!(parse_body(b"[[[[[[[1]]]]]]]", 8, 2).is_ok());
    }

    #[test]
    fn only_the_routers_own_not_found_is_method_not_found() {
        let not_found = Status::not_found("x");
        assert_eq!(error_code(&not_found, false), METHOD_NOT_FOUND);
        assert_eq!(error_code(&not_found, true), SERVER_ERROR);
        assert_eq!(
            error_code(&Status::invalid_argument("x"), true),
            INVALID_PARAMS
        );
        assert_eq!(error_code(&Status::internal("x"), true), INTERNAL_ERROR);
        assert_eq!(
            error_code(&Status::deadline_exceeded("x"), true),
            SERVER_ERROR
        );
    }

    #[test]
    fn an_error_object_carries_the_status_in_data() {
        let mut out = Vec::new();
        let status = Status::resource_exhausted("shed").not_executed();
        write_error(&mut out, &Value::from(3), SERVER_ERROR, &status);
        let value: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["jsonrpc"], "2.0");
        assert_eq!(value["id"], 3);
        assert_eq!(value["error"]["code"], SERVER_ERROR);
        assert_eq!(value["error"]["data"]["status"], "ResourceExhausted");
        assert_eq!(value["error"]["data"]["status_code"], 8);
        assert_eq!(value["error"]["data"]["may_have_executed"], false);
        assert_eq!(value["error"]["data"]["retryable"], true);

        let mut out = Vec::new();
        write_result(&mut out, &Value::from("a"), b"[1,2]");
        let value: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["result"], serde_json::json!([1, 2]));
        assert_eq!(value["id"], "a");
    }
}
