//! Fixed-count echo calls over loopback TCP, for counting instructions per call
//! under callgrind, which counts the same on a loaded machine as on a quiet one
//! (unlike calls/s): `percall CALLS IN_FLIGHT PAYLOAD [multi]` (`multi`: a
//! two-worker runtime instead of one thread). Run it at two call counts and
//! divide the difference in instructions by the difference in calls, which
//! cancels start-up:
//!
//! ```sh
//! cargo build --release -p squall --example percall
//! for n in 16000 48000; do
//!   valgrind --tool=callgrind --callgrind-out-file=cg.$n target/release/examples/percall $n 64 64
//! done   # (Ir(48000) - Ir(16000)) / 32000 = instructions per call
//! ```
//!
//! Calls/s and latency come from `loadgen`; this program is for comparing two
//! versions of the hot path when the machine is too busy for wall-clock figures.
use std::sync::Arc;

use serde_bytes::ByteBuf;
use squall::{Channel, ChannelConfig, Client, Context, Router, Server, Status};

fn main() {
    let mut args = std::env::args().skip(1);
    let calls: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let in_flight: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(64);
    let payload: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(64);
    let multi = args.next().is_some_and(|a| a == "multi");
    let runtime = if multi {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    runtime.block_on(async move {
        let listener = squall::Tcp.bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let router = Router::new().route("Bench.Echo", |_ctx: Context, body: ByteBuf| async move {
            Ok::<_, Status>(body)
        });
        tokio::spawn(Server::new(router).serve(listener, std::future::pending()));
        let channel = Channel::connect(&squall::Tcp, &addr, ChannelConfig::default())
            .await
            .unwrap();
        let client = Arc::new(Client::new(channel));
        let body = Arc::new(ByteBuf::from(vec![0x5a; payload]));
        let mut workers = Vec::new();
        for _ in 0..in_flight {
            let client = Arc::clone(&client);
            let body = Arc::clone(&body);
            workers.push(tokio::spawn(async move {
                let mut ok = 0u64;
                for _ in 0..calls / in_flight {
                    let r: Result<ByteBuf, Status> = client.call("Bench.Echo", &*body).await;
                    ok += r.is_ok() as u64;
                }
                ok
            }));
        }
        let mut ok = 0;
        for w in workers {
            ok += w.await.unwrap();
        }
        println!("ok={ok}");
    });
}
