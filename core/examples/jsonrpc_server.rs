//! The arith service on the JSON-RPC 2.0 over HTTP endpoint: any language with
//! an HTTP client can call it (Go net/rpc's HTTP + JSON mode).
//!
//! Run: `cargo run -p squall --features http --example jsonrpc_server -- 127.0.0.1:8080`
//! then:
//!
//! ```text
//! curl -s localhost:8080/jsonrpc -H 'content-type: application/json' \
//!   -d '{"jsonrpc":"2.0","method":"Arith.Multiply","params":{"a":7,"b":8},"id":1}'
//! {"jsonrpc":"2.0","result":56,"id":1}
//! ```
//!
//! With `--test-methods` it also serves `Test.Sleep` (sleeps its argument in
//! milliseconds), `Test.Panic` (panics), `Test.Record` / `Test.Recorded` (a
//! counter, to show notifications run): tests/python/jsonrpc_client.py uses
//! them to reach every error code. The first line on stdout is the bound
//! address (`listening on http://127.0.0.1:PORT/jsonrpc`), so a test can bind
//! port 0 and read it.

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use squall::http::JsonRpcServer;
use squall::server::middleware::LoggingLayer;
use squall::{Context, Router, Server, Status};

/// Arguments of Multiply and Divide, as in net/rpc's example.
#[derive(Debug, Serialize, Deserialize)]
struct Args {
    a: i64,
    b: i64,
}

/// Quotient and remainder.
#[derive(Debug, Serialize, Deserialize)]
struct Quotient {
    quo: i64,
    rem: i64,
}

fn arith() -> Router {
    Router::new()
        .route("Arith.Multiply", |_ctx: Context, args: Args| async move {
            args.a
                .checked_mul(args.b)
                .ok_or_else(|| Status::invalid_argument("product overflows i64"))
        })
        .route("Arith.Divide", |_ctx: Context, args: Args| async move {
            if args.b == 0 {
                return Err(Status::invalid_argument("divide by zero"));
            }
            Ok(Quotient {
                quo: args.a / args.b,
                rem: args.a % args.b,
            })
        })
        // Positional params: `"params": [2, 3]` is the tuple `(2, 3)`.
        .route(
            "Arith.Add",
            |_ctx: Context, (a, b): (i64, i64)| async move {
                a.checked_add(b)
                    .ok_or_else(|| Status::invalid_argument("sum overflows i64"))
            },
        )
}

fn with_test_methods(router: Router) -> Router {
    let recorded = Arc::new(AtomicU64::new(0));
    let recorder = Arc::clone(&recorded);
    router
        .route("Test.Sleep", |_ctx: Context, ms: u64| async move {
            tokio::time::sleep(Duration::from_millis(ms.min(60_000))).await;
            Ok::<u64, Status>(ms)
        })
        .route("Test.Panic", |_ctx: Context, (): ()| async move {
            if true {
                panic!("Test.Panic panics on purpose");
            }
            Ok::<(), Status>(())
        })
        .route("Test.Record", move |_ctx: Context, (): ()| {
            let recorder = Arc::clone(&recorder);
            async move { Ok::<u64, Status>(recorder.fetch_add(1, Ordering::SeqCst) + 1) }
        })
        .route("Test.Recorded", move |_ctx: Context, (): ()| {
            let recorded = Arc::clone(&recorded);
            async move { Ok::<u64, Status>(recorded.load(Ordering::SeqCst)) }
        })
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter("warn")
        .with_writer(std::io::stderr)
        .init();
    let mut addr = "127.0.0.1:8080".to_owned();
    let mut test_methods = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--test-methods" => test_methods = true,
            other => addr = other.to_owned(),
        }
    }
    let router = if test_methods {
        with_test_methods(arith())
    } else {
        arith()
    };
    let server = Server::new(router).layer(LoggingLayer::new());
    let listener = squall::Tcp.bind(&addr).await?;
    let bound = listener.local_addr()?;
    // The first line is the contract with tests: flush it before serving.
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening on http://{bound}/jsonrpc")?;
    stdout.flush()?;
    JsonRpcServer::new(&server)
        .serve(listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}
