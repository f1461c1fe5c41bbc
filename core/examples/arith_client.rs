//! The arith client: calls Multiply, Divide, and Divide by zero, then shows a
//! call started now and awaited later (net/rpc's `Go`), and one with options.
//!
//! Run `arith_server` first, then: `cargo run -p squall --example arith_client -- 127.0.0.1:7000`

use std::time::Duration;

// The server half of the shared definition is unused here.
#[allow(dead_code)]
mod arith;

use arith::{Args, ArithClient};
use squall::{CallOptions, Status};

#[tokio::main]
async fn main() -> Result<(), Status> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7000".into());
    let client = ArithClient::connect(&addr).await?;

    let product = client.multiply(Args { a: 7, b: 8 }).await?;
    println!("Arith: 7*8={product}");

    let q = client.divide(Args { a: 17, b: 5 }).await?;
    println!("Arith: 17/5={} remainder {}", q.quo, q.rem);

    match client.divide(Args { a: 1, b: 0 }).await {
        Ok(q) => println!("Arith: 1/0 unexpectedly gave {q:?}"),
        Err(status) => println!("Arith: 1/0 failed as expected: {status}"),
    }

    let later = client.multiply(Args { a: 6, b: 9 }); // sent now…
    println!("Arith: 6*9 sent; awaiting it later…");
    println!("Arith: 6*9={}", later.await?); // …awaited here

    let options = CallOptions::new().timeout(Duration::from_secs(1));
    let product = client
        .with_options(options)
        .multiply(Args { a: 3, b: 4 })
        .await?;
    println!("Arith: 3*4={product} (within 1 s)");
    Ok(())
}
