//! Finding 2 of issue 9 over real loopback TCP: a body nested far deeper than
//! any stack, sent to a method whose argument type is recursive, is refused
//! with `InvalidArgument`, and the server goes on serving.
//!
//! In a file of its own because, before the fix, the attack overflows a worker
//! thread's stack, which aborts the whole process: here it takes down only this
//! test binary, not the other end-to-end tests.

mod common;

use bytes::Bytes;
use common::{guard, TestServer};
use serde::{Deserialize, Serialize};
use squall::client::OutgoingRequest;
use squall::server::ServerConfig;
use squall::{Caller, Channel, Code, Codec, Context, Router, Status};

/// An expression tree: the kind of recursive argument (trees, filters, ASTs)
/// any service may take.
#[derive(Serialize, Deserialize, Debug)]
enum Expr {
    Lit(i64),
    Neg(Box<Expr>),
    Add(Box<Expr>, Box<Expr>),
}

impl Expr {
    /// The value, iteratively, so evaluating needs no deep stack either.
    fn eval(&self) -> i64 {
        let mut sign = 1;
        let mut expr = self;
        loop {
            match expr {
                Expr::Lit(n) => return sign * n,
                Expr::Neg(inner) => {
                    sign = -sign;
                    expr = inner;
                }
                Expr::Add(a, b) => return sign * (a.eval() + b.eval()),
            }
        }
    }
}

/// A one-field newtype around an option: neither consumes input, so a decoder
/// that does not count them recurses forever on the one-byte body `5`.
#[derive(Serialize, Deserialize, Debug)]
struct Chain(Option<Box<Chain>>);

fn calculator() -> Router {
    Router::new()
        .route("Calc.Eval", |_ctx: Context, expr: Expr| async move {
            Ok::<i64, Status>(expr.eval())
        })
        .route("Calc.Chain", |_ctx: Context, _chain: Chain| async move {
            Ok::<(), Status>(())
        })
}

/// A raw call: `body` as it is, in `codec`.
async fn call_raw(
    channel: &Channel,
    method: &str,
    codec: Codec,
    body: Vec<u8>,
) -> Result<Bytes, Status> {
    let request = OutgoingRequest {
        method: method.to_owned(),
        codec,
        body: Bytes::from(body),
        metadata: Vec::new(),
        timeout: Some(common::HANG_GUARD),
        idempotent: false,
    };
    guard("a raw call", channel.call(request))
        .await
        .map(|reply| reply.body)
}

/// Proves the server still answers a well-formed call, on a fresh connection
/// (the attack's connection may be gone if the server did not survive it).
async fn assert_still_serves(addr: &str) {
    let client = common::client(addr).await;
    let expr = Expr::Add(
        Box::new(Expr::Neg(Box::new(Expr::Lit(2)))),
        Box::new(Expr::Lit(44)),
    );
    let value: i64 = guard("a normal call", client.call("Calc.Eval", &expr))
        .await
        .expect("the server still serves after the attack");
    assert_eq!(value, 42);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enum_variants_nested_forty_thousand_deep_are_invalid_argument_and_the_server_lives_on() {
    // Proves finding 2: the report's exact attack, a 200 KB MessagePack body of
    // `{"Neg":{"Neg":…}}` 40,000 deep, which aborted the server process before
    // the fix (rmp-serde does not count depth for enums and newtypes).
    let server = TestServer::start_router(calculator(), ServerConfig::default()).await;
    let channel = common::connect(&server.addr).await;
    let depth = 40_000;
    let mut body = Vec::with_capacity(depth * 5 + 6);
    for _ in 0..depth {
        body.extend_from_slice(&[0x81, 0xa3, b'N', b'e', b'g']);
    }
    body.extend_from_slice(&[0x81, 0xa3, b'L', b'i', b't', 0x01]);
    assert!(body.len() > 200_000, "the attack is the reported size");

    let status = call_raw(&channel, "Calc.Eval", Codec::MessagePack, body)
        .await
        .expect_err("a body nested 40,000 deep is refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status}");
    assert!(
        !status.may_have_executed(),
        "the handler never ran: {status}"
    );
    assert_still_serves(&server.addr).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_byte_body_for_a_newtype_of_an_option_is_invalid_argument_in_both_codecs() {
    // Proves levels that consume no input are bounded too: the body `5` sent
    // for `Chain(Option<Box<Chain>>)` recursed through the newtype and `Some`
    // until the stack ran out, in either codec, before the fix.
    let server = TestServer::start_router(calculator(), ServerConfig::default()).await;
    let channel = common::connect(&server.addr).await;
    for (codec, body) in [
        (Codec::Json, b"5".to_vec()),
        (Codec::MessagePack, vec![0x05]),
    ] {
        let status = call_raw(&channel, "Calc.Chain", codec, body)
            .await
            .expect_err("an endless chain is refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{codec:?}: {status}");
    }
    assert_still_serves(&server.addr).await;
    server.shutdown().await;
}
