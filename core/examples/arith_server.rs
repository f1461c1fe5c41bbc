//! The arith server from Go's net/rpc documentation, over real TCP.
//!
//! Run: `cargo run -p squall --example arith_server -- 127.0.0.1:7000`
//! then `cargo run -p squall --example arith_client -- 127.0.0.1:7000`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use squall::server::{Methods, ServiceDef};
use squall::{Context, Router, Server, Status, Transport};

/// Arguments of both methods.
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

/// The service: stateless, as in net/rpc's example.
struct Arith;

impl Arith {
    async fn multiply(self: Arc<Self>, _ctx: Context, args: Args) -> Result<i64, Status> {
        args.a
            .checked_mul(args.b)
            .ok_or_else(|| Status::invalid_argument("product overflows i64"))
    }

    async fn divide(self: Arc<Self>, _ctx: Context, args: Args) -> Result<Quotient, Status> {
        if args.b == 0 {
            return Err(Status::invalid_argument("divide by zero"));
        }
        Ok(Quotient {
            quo: args.a / args.b,
            rem: args.a % args.b,
        })
    }
}

impl ServiceDef for Arith {
    const NAME: &'static str = "Arith";
    fn methods(m: &mut Methods<Self>) {
        m.method("Multiply", Self::multiply)
            .method("Divide", Self::divide);
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7000".into());
    let listener = squall::Tcp.bind(&addr).await?;
    tracing::info!(addr = %listener_addr(&listener), "arith server listening; Ctrl-C to stop");
    let server = Server::new(Router::new().register(Arith))
        .layer(squall::server::middleware::LoggingLayer::new());
    server
        .serve(listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}

fn listener_addr(listener: &impl squall::Listener) -> String {
    listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|e| e.to_string())
}
