//! The arith client: calls Multiply, Divide, and Divide by zero, then shows a
//! call started now and awaited later (net/rpc's `Go`).
//!
//! Run `arith_server` first, then: `cargo run -p squall --example arith_client -- 127.0.0.1:7000`

use serde::{Deserialize, Serialize};
use squall::{Channel, ChannelConfig, Client, Status};

#[derive(Debug, Serialize, Deserialize)]
struct Args {
    a: i64,
    b: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Quotient {
    quo: i64,
    rem: i64,
}

#[tokio::main]
async fn main() -> Result<(), Status> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7000".into());
    let channel = Channel::connect(&squall::Tcp, &addr, ChannelConfig::default()).await?;
    let client = Client::new(channel);

    let product: i64 = client.call("Arith.Multiply", &Args { a: 7, b: 8 }).await?;
    println!("Arith: 7*8={product}");

    let q: Quotient = client.call("Arith.Divide", &Args { a: 17, b: 5 }).await?;
    println!("Arith: 17/5={} remainder {}", q.quo, q.rem);

    match client
        .call::<_, Quotient>("Arith.Divide", &Args { a: 1, b: 0 })
        .await
    {
        Ok(q) => println!("Arith: 1/0 unexpectedly gave {q:?}"),
        Err(status) => println!("Arith: 1/0 failed as expected: {status}"),
    }

    let later = client.go::<_, i64>("Arith.Multiply", &Args { a: 6, b: 9 });
    println!("Arith: 6*9 sent; awaiting it later…");
    println!("Arith: 6*9={}", later.await?);
    Ok(())
}
