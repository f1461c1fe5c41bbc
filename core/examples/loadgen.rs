//! Load generator for the hot path (framing, dispatch, client multiplexing):
//! an echo server and a client in one process over loopback TCP. Prints calls/s
//! and p50/p99/max latency.
//!
//! `cargo run --release -p squall --example loadgen -- --payload 64 --in-flight 64 --connections 1`
//!
//! Over TLS: `cargo run --release -p squall --features tls --example loadgen -- --tls DIR`,
//! where DIR holds `ca.pem`, `server.pem` and `server.key` for the name
//! `localhost` (docs/TLS.md shows the two openssl commands that make them).

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use hdrhistogram::Histogram;
use serde_bytes::ByteBuf;
use squall::client::{Caller, Pool};
use squall::{
    Channel, ChannelConfig, Client, Codec, Context, Listener, Router, Server, Status, Transport,
};
use tokio::time::Instant;

#[derive(Parser, Debug)]
#[command(about = "Squall load generator: echo calls over loopback TCP")]
struct Args {
    /// Payload bytes per request (echoed back).
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Calls outstanding at once (closed loop).
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    /// Connections from client to server.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Payload codec: msgpack or json.
    #[arg(long, default_value = "msgpack")]
    codec: String,
    /// Seconds to measure (after one second of warm-up).
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Give each call no timeout (measures the cost of per-call timers).
    #[arg(long)]
    no_timeout: bool,
    /// Runtime layout: `split` = server and client each on its own
    /// single-threaded runtime and OS thread (like two processes);
    /// `shared` = both on one multi-threaded runtime with `--threads` workers.
    #[arg(long, default_value = "shared")]
    runtime: String,
    /// Worker threads for `--runtime shared`.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Soak mode: every call carries a unique tag and its reply must echo it;
    /// a reply carrying another call's tag is counted as misrouted. Costs an
    /// allocation per call, so do not compare its calls/s with plain runs.
    #[arg(long)]
    check: bool,
    /// Run over TLS (needs `--features tls`) with the certificates in this
    /// directory: `ca.pem`, `server.pem`, `server.key` (for `localhost`).
    #[arg(long)]
    tls: Option<std::path::PathBuf>,
    /// Record squall's per-call spans: a `tracing` registry listening at
    /// DEBUG with a layer that keeps nothing, so the figures show what
    /// creating, filling and closing the spans (and sending trace context)
    /// costs, without any output's cost.
    #[arg(long)]
    trace: bool,
    /// Call through the `#[squall::service]` client (`BenchClient::echo`)
    /// instead of the string-named `Client::call`; the server is the same.
    /// The typed method takes its argument by value, so each call clones the
    /// payload (one allocation of `--payload` bytes), as a caller would.
    #[arg(long)]
    typed: bool,
}

/// The echo service as a trait, for `--typed`. The server side stays the
/// `Router::route` closure in both modes, so a comparison isolates the client
/// (hence the unused server half).
#[allow(dead_code)]
mod bench {
    use serde_bytes::ByteBuf;
    use squall::{Context, Status};

    /// `Bench.Echo`: the reply is the request.
    #[squall::service]
    pub trait Bench {
        async fn echo(&self, ctx: Context, body: ByteBuf) -> Result<ByteBuf, Status>;
    }
}
use bench::BenchClient;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let codec = match args.codec.as_str() {
        "msgpack" => Codec::MessagePack,
        "json" => Codec::Json,
        other => return Err(format!("unknown codec {other:?}: use msgpack or json").into()),
    };
    if args.trace {
        use tracing_subscriber::layer::SubscriberExt;
        let subscriber =
            tracing_subscriber::registry().with(tracing_subscriber::filter::LevelFilter::DEBUG);
        tracing::subscriber::set_global_default(subscriber)?;
    }
    #[cfg(feature = "tls")]
    if let Some(dir) = &args.tls {
        return run(&args, codec, tls_transport(dir)?);
    }
    if args.tls.is_some() {
        return Err("--tls needs the tls feature: cargo run --features tls ...".into());
    }
    run(&args, codec, squall::Tcp)
}

/// A transport that both listens and dials with the certificates in `dir`.
#[cfg(feature = "tls")]
fn tls_transport(
    dir: &std::path::Path,
) -> Result<squall::transport::tls::Tls, Box<dyn std::error::Error>> {
    use squall::transport::tls::{Tls, TlsClientConfig, TlsServerConfig};
    let server =
        TlsServerConfig::from_pem_files(&dir.join("server.pem"), &dir.join("server.key"), None)?;
    let client =
        TlsClientConfig::from_pem_files(&dir.join("ca.pem"), None)?.server_name("localhost")?;
    Ok(Tls::new(Some(client), Some(server)))
}

fn run<T: Transport>(
    args: &Args,
    codec: Codec,
    transport: T,
) -> Result<(), Box<dyn std::error::Error>> {
    match args.runtime.as_str() {
        "shared" => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(args.threads)
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let addr = start_server(transport.clone()).await?;
                run_client(args, codec, addr, transport).await
            })
        }
        "split" => {
            let (addr_tx, addr_rx) = std::sync::mpsc::channel();
            // The load generator is a program, not core: its threads are its own.
            let server_transport = transport.clone();
            #[allow(clippy::disallowed_methods)]
            std::thread::spawn(move || -> Result<(), String> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                runtime.block_on(async move {
                    let addr = start_server(server_transport).await;
                    let _ = addr_tx.send(addr);
                    std::future::pending::<()>().await;
                });
                Ok(())
            });
            let addr = addr_rx.recv()??;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(run_client(args, codec, addr, transport))
        }
        other => Err(format!("unknown runtime {other:?}: use split or shared").into()),
    }
}

/// Binds an echo server on a free loopback port and serves it on this runtime.
async fn start_server<T: Transport>(transport: T) -> Result<String, String> {
    let listener = transport
        .bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener
        .local_addr()
        .map_err(|e| e.to_string())?
        .to_string();
    let router = Router::new().route("Bench.Echo", |_ctx: Context, body: ByteBuf| async move {
        Ok::<_, Status>(body)
    });
    tokio::spawn(Server::new(router).serve(listener, std::future::pending()));
    Ok(addr)
}

async fn run_client<T: Transport>(
    args: &Args,
    codec: Codec,
    addr: String,
    transport: T,
) -> Result<(), Box<dyn std::error::Error>> {
    let payload = ByteBuf::from(vec![0x5a; args.payload]);
    let config = ChannelConfig::default();
    if args.connections == 1 {
        let channel = Channel::connect(&transport, &addr, config).await?;
        let client = Client::new(channel).with_codec(codec);
        let client = if args.no_timeout {
            client.with_timeout(None)
        } else {
            client
        };
        drive(client, payload, args).await
    } else {
        let pool = Pool::new(transport, &addr, config, args.connections);
        pool.warm_up().await?;
        let client = Client::new(pool.clone()).with_codec(codec);
        let client = if args.no_timeout {
            client.with_timeout(None)
        } else {
            client
        };
        let result = drive(client, payload, args).await;
        println!("pool: {:?}", pool.stats());
        result
    }
}

async fn drive<C: Caller>(
    client: Client<C>,
    payload: ByteBuf,
    args: &Args,
) -> Result<(), Box<dyn std::error::Error>> {
    let client = Arc::new(client);
    let payload = Arc::new(payload);
    let warmup_end = Instant::now() + Duration::from_secs(1);
    let end = warmup_end + Duration::from_secs(args.seconds);
    // CPU time of the whole process (client and server) over the measured window:
    // on a shared machine calls/s depends on what else runs, CPU per call less so.
    let cpu_window = tokio::spawn(async move {
        tokio::time::sleep_until(warmup_end).await;
        let start = process_cpu_seconds();
        tokio::time::sleep_until(end).await;
        process_cpu_seconds()
            .zip(start)
            .map(|(end, start)| end - start)
    });
    let mut workers = Vec::with_capacity(args.in_flight);
    let check = args.check;
    let typed = args.typed;
    for worker in 0..args.in_flight as u64 {
        let client = Arc::clone(&client);
        let typed_client = BenchClient::from_client(Client::clone(&client));
        let payload = Arc::clone(&payload);
        workers.push(tokio::spawn(async move {
            let mut histogram =
                Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
            let mut errors = 0u64;
            let mut misrouted = 0u64;
            let mut seq = 0u64;
            loop {
                let start = Instant::now();
                if start >= end {
                    break;
                }
                let tagged;
                let sent = if check {
                    seq += 1;
                    let mut bytes = payload.to_vec();
                    bytes.resize(bytes.len().max(16), 0);
                    bytes[..8].copy_from_slice(&worker.to_be_bytes());
                    bytes[8..16].copy_from_slice(&seq.to_be_bytes());
                    tagged = ByteBuf::from(bytes);
                    &tagged
                } else {
                    &*payload
                };
                let result: Result<ByteBuf, Status> = if typed {
                    typed_client.echo(sent.clone()).await
                } else {
                    client.call("Bench.Echo", sent).await
                };
                if check && result.as_ref().is_ok_and(|reply| reply != sent) {
                    misrouted += 1;
                }
                if start >= warmup_end {
                    match result {
                        Ok(_) => {
                            histogram.saturating_record(start.elapsed().as_micros().max(1) as u64)
                        }
                        Err(_) => errors += 1,
                    }
                }
            }
            (histogram, errors, misrouted)
        }));
    }
    let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut errors = 0;
    let mut misrouted = 0;
    for worker in workers {
        let (histogram, worker_errors, worker_misrouted) = worker.await?;
        total.add(histogram)?;
        errors += worker_errors;
        misrouted += worker_misrouted;
    }
    let calls = total.len();
    let check = if check {
        format!(" calls={calls} misrouted={misrouted}")
    } else {
        String::new()
    };
    let cpu = match cpu_window.await? {
        Some(seconds) => format!(
            ", cpu={:.2} cores {:.2}us/call",
            seconds / args.seconds as f64,
            seconds * 1e6 / calls.max(1) as f64
        ),
        None => String::new(),
    };
    println!(
        "payload={}B in_flight={} connections={} codec={} runtime={} api={}: {:.0} calls/s, p50={}us p99={}us max={}us, errors={}{check}{cpu}",
        args.payload,
        args.in_flight,
        args.connections,
        args.codec,
        args.runtime,
        if args.typed { "typed" } else { "string" },
        calls as f64 / args.seconds as f64,
        total.value_at_quantile(0.5),
        total.value_at_quantile(0.99),
        total.max(),
        errors
    );
    Ok(())
}

/// User + system CPU seconds this process has used, from `/proc/self/stat`
/// (Linux only; `None` elsewhere). Clock ticks are 100 per second on Linux.
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}
