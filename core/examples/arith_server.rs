//! The arith server from Go's net/rpc documentation, over real TCP.
//!
//! Run: `cargo run -p squall --example arith_server -- 127.0.0.1:7000`
//! then `cargo run -p squall --example arith_client -- 127.0.0.1:7000`.

// The client half of the shared definition is unused here.
#[allow(dead_code)]
mod arith;

use arith::{Args, Arith, ArithServer, Quotient};
use squall::server::middleware::LoggingLayer;
use squall::{Context, Server, Status, Tcp};

/// The implementation: stateless, as in net/rpc's example.
struct Calculator;

impl Arith for Calculator {
    async fn multiply(&self, _ctx: Context, args: Args) -> Result<i64, Status> {
        args.a
            .checked_mul(args.b)
            .ok_or_else(|| Status::invalid_argument("product overflows i64"))
    }

    async fn divide(&self, _ctx: Context, args: Args) -> Result<Quotient, Status> {
        if args.b == 0 {
            return Err(Status::invalid_argument("divide by zero"));
        }
        Ok(Quotient {
            quo: args.a / args.b,
            rem: args.a % args.b,
        })
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7000".into());
    let listener = Tcp.bind(&addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "arith server listening; Ctrl-C to stop");
    let server = Server::new(ArithServer::new(Calculator)).layer(LoggingLayer::new());
    server
        .serve(listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}
