//! A squall server whose metrics Prometheus can scrape: the `metrics` facade
//! wired to `metrics-exporter-prometheus`, rendered at
//! `http://127.0.0.1:9100/metrics`; a client in the same process calls it
//! ten times a second so the figures move.
//!
//! `cargo run -p squall-e2e --features metrics --example prometheus -- [server addr] [metrics addr]`
//! then `curl -s 127.0.0.1:9100/metrics | grep rpc_`.

use std::time::Duration;

use squall::{Channel, ChannelConfig, Client, Context, Router, Server, Status, Tcp};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let server_addr = args.next().unwrap_or_else(|| "127.0.0.1:7000".to_owned());
    let metrics_addr = args.next().unwrap_or_else(|| "127.0.0.1:9100".to_owned());

    let handle = squall_e2e::prometheus::install()?;
    let scrape = tokio::net::TcpListener::bind(&metrics_addr).await?;
    println!("metrics at http://{}/metrics", scrape.local_addr()?);
    tokio::spawn(squall_e2e::prometheus::serve(scrape, handle));

    let router = Router::new()
        .route(
            "Arith.Add",
            |_ctx: Context, (a, b): (i64, i64)| async move { Ok::<i64, Status>(a + b) },
        )
        .route(
            "Arith.Divide",
            |_ctx: Context, (a, b): (i64, i64)| async move {
                a.checked_div(b)
                    .ok_or_else(|| Status::invalid_argument("division by zero"))
            },
        );
    let listener = Tcp.bind(&server_addr).await?;
    let addr = listener.local_addr()?.to_string();
    println!("serving Arith on {addr}");
    tokio::spawn(Server::new(router).serve(listener, std::future::pending()));

    let client = Client::new(Channel::connect(&Tcp, &addr, ChannelConfig::default()).await?);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    for n in 0i64.. {
        tick.tick().await;
        let _: Result<i64, Status> = client.call("Arith.Add", &(n, 1)).await;
        // Every tenth divides by zero, so an error code shows up too.
        let _: Result<i64, Status> = client.call("Arith.Divide", &(n, n % 10)).await;
    }
    Ok(())
}
