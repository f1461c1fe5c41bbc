//! Attacks a real squall server (in this process, over loopback TCP) the way
//! issue 9's findings 1–3 did, and prints the process's resident memory
//! (`VmRSS` from `/proc/self/status`, so Linux only) before, during and after
//! each attack, next to the server's own figures. The numbers in
//! `docs/RELIABILITY.md` come from this program.
//!
//! `cargo run --release -p squall --example abuse -- --help`

use std::time::Duration;

use clap::Parser;
use squall::protocol::{
    encode_to_bytes, CodecId, Frame, FrameKind, Limits, HEADER_LEN, MAGIC, VERSION,
};
use squall::server::{ServerConfig, ServerStats};
use squall::{Client, Context, Router, Server, Status, Tcp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

#[derive(Parser, Debug)]
#[command(about = "Abuse a squall server and print its memory (findings 1-3 of issue 9)")]
struct Args {
    /// Finding 1: peers that send requests and never read the replies.
    #[arg(long, default_value_t = 4)]
    flooders: usize,
    /// Finding 1: seconds the flood lasts.
    #[arg(long, default_value_t = 15)]
    flood_seconds: u64,
    /// Finding 3: the server's connection limit, filled with idle sockets.
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
    /// Finding 3: peers that send a 16 MiB header and all but the last byte.
    #[arg(long, default_value_t = 32)]
    stallers: usize,
    /// Finding 2 (stack-safe decoding, a separate change): send one request
    /// whose MessagePack body nests an enum this deep. Off by default: a
    /// server without depth-safe decoding aborts, and this program with it.
    #[arg(long)]
    deep_nesting: Option<usize>,
    /// Skip measuring keepalive's detection of a silent peer (20-30 s).
    #[arg(long)]
    skip_silent_peer: bool,
}

/// A recursive argument type: what finding 2 attacks.
#[derive(serde::Deserialize, serde::Serialize, Debug)]
enum Expr {
    Lit(i64),
    Neg(Box<Expr>),
}

fn router() -> Router {
    Router::new()
        .route("Echo.Echo", |_ctx: Context, n: u64| async move {
            Ok::<u64, Status>(n)
        })
        .route("Expr.Depth", |_ctx: Context, expr: Expr| async move {
            let mut depth = 0u64;
            let mut at = &expr;
            while let Expr::Neg(inner) = at {
                depth += 1;
                at = inner;
            }
            Ok::<u64, Status>(depth)
        })
}

/// Resident memory of this process in MiB.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn report(phase: &str, stats: &ServerStats) {
    println!(
        "{phase:<34} rss {:>8.1} MiB | connections {:>5} | unwritten {:>10} B | partial frames {:>10} B | cut {} shed {} refused {}",
        rss_mib(),
        stats.connections(),
        stats.unwritten_bytes(),
        stats.partial_frame_bytes(),
        stats.connections_cut(),
        stats.connections_shed(),
        stats.connections_refused(),
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    // Defaults, but for shorter stall bounds so the cuts show within a run.
    let config = ServerConfig {
        max_connections: args.max_connections,
        write_stall_timeout: Duration::from_secs(5),
        frame_timeout: Duration::from_secs(10),
        ..ServerConfig::default()
    };
    println!("server config: {config:?}");
    let server = Server::new(router()).with_config(config);
    let stats = server.stats();
    let listener = Tcp.bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    tokio::spawn(server.serve(listener, std::future::pending()));
    report("start", &stats);

    flood(&addr, &args, &stats).await?;
    if let Some(depth) = args.deep_nesting {
        deep_nesting(&addr, depth, &stats).await?;
    }
    idle_flood(&addr, &args, &stats).await?;
    stalled_frames(&addr, &args, &stats).await?;
    if !args.skip_silent_peer {
        silent_peer().await?;
    }
    Ok(())
}

/// How long a client with the default keepalive takes to declare a silent peer
/// (accepts, then never reads or writes; no FIN, no RST) dead.
async fn silent_peer() -> Result<(), Box<dyn std::error::Error>> {
    let config = squall::ChannelConfig::default();
    println!(
        "\n== keepalive: a silent peer, interval {:?}, timeout {:?} ==",
        config.keepalive_interval, config.keepalive_timeout
    );
    let black_hole = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = black_hole.local_addr()?.to_string();
    let held = tokio::spawn(async move { black_hole.accept().await.map(|(socket, _)| socket) });
    let channel = squall::Channel::connect(&Tcp, &addr, config).await?;
    let _socket = held.await??;
    let client = Client::new(channel).with_timeout(None);
    let started = Instant::now();
    let result: Result<u64, Status> = client.call("Echo.Echo", &1u64).await;
    println!(
        "  call failed after {:.1} s: {:?}",
        started.elapsed().as_secs_f64(),
        result.map_err(|status| status.to_string())
    );
    Ok(())
}

/// Finding 1: requests sent, replies never read.
async fn flood(
    addr: &str,
    args: &Args,
    stats: &ServerStats,
) -> Result<(), Box<dyn std::error::Error>> {
    println!(
        "\n== finding 1: {} peers send requests and never read ==",
        args.flooders
    );
    report("before", stats);
    let mut request = Frame::control(FrameKind::Request, 1);
    request.codec = CodecId::MessagePack;
    request.meta.method = Some("Echo.Echo".into());
    request.body = bytes::Bytes::from_static(&[0x07]);
    let one = encode_to_bytes(&request, Limits::default())?;
    let burst: Vec<u8> = one.iter().copied().cycle().take(one.len() * 4096).collect();
    let mut tasks = Vec::new();
    let until = Instant::now() + Duration::from_secs(args.flood_seconds);
    for _ in 0..args.flooders {
        let mut raw = TcpStream::connect(addr).await?;
        let burst = burst.clone();
        tasks.push(tokio::spawn(async move {
            let mut sent = 0u64;
            while Instant::now() < until {
                match tokio::time::timeout_at(until, raw.write_all(&burst)).await {
                    Ok(Ok(())) => sent += burst.len() as u64,
                    Ok(Err(_)) => return (sent, "cut by the server"),
                    Err(_) => return (sent, "pushed back (server stopped reading)"),
                }
            }
            (sent, "still writing")
        }));
    }
    for second in 1..=args.flood_seconds {
        tokio::time::sleep(Duration::from_secs(1)).await;
        report(&format!("during, {second:>2} s"), stats);
    }
    for task in tasks {
        let (sent, outcome) = task.await?;
        println!(
            "  flooder sent {:.1} MiB: {outcome}",
            sent as f64 / (1 << 20) as f64
        );
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    report("after", stats);
    Ok(())
}

/// Finding 2: one deeply nested body.
async fn deep_nesting(
    addr: &str,
    depth: usize,
    stats: &ServerStats,
) -> Result<(), Box<dyn std::error::Error>> {
    println!("\n== finding 2: an enum nested {depth} deep ==");
    // {"Neg": {"Neg": ... {"Lit": 1}}} as MessagePack: fixmap(1), fixstr "Neg".
    let mut body = Vec::with_capacity(depth * 5 + 6);
    for _ in 0..depth {
        body.extend_from_slice(&[0x81, 0xa3, b'N', b'e', b'g']);
    }
    body.extend_from_slice(&[0x81, 0xa3, b'L', b'i', b't', 0x01]);
    let client = Client::new(squall::Channel::connect(&Tcp, addr, Default::default()).await?);
    let reply = client
        .caller()
        .start(squall::client::OutgoingRequest {
            method: "Expr.Depth".into(),
            codec: squall::Codec::MessagePack,
            body: bytes::Bytes::from(body),
            metadata: Vec::new(),
            timeout: Some(Duration::from_secs(10)),
            idempotent: false,
        })
        .await;
    println!("  reply: {:?}", reply.map(|r| r.body.len()));
    report("after", stats);
    Ok(())
}

/// Finding 3a: the connection limit filled with idle sockets, then a new client.
async fn idle_flood(
    addr: &str,
    args: &Args,
    stats: &ServerStats,
) -> Result<(), Box<dyn std::error::Error>> {
    println!(
        "\n== finding 3: {} idle connections, then a new client ==",
        args.max_connections
    );
    report("before", stats);
    let mut idle = Vec::new();
    for n in 0..args.max_connections as u64 {
        let client = Client::new(squall::Channel::connect(&Tcp, addr, Default::default()).await?);
        let _: Result<u64, Status> = client.call("Echo.Echo", &n).await;
        idle.push(client);
    }
    report("limit filled", stats);
    let newcomer = Client::new(squall::Channel::connect(&Tcp, addr, Default::default()).await?);
    let served: Result<u64, Status> = newcomer.call("Echo.Echo", &7u64).await;
    println!("  new client at the limit: {served:?}");
    report("after", stats);
    drop(idle);
    Ok(())
}

/// Finding 3b: headers announcing 16 MiB, followed by all but the last byte.
async fn stalled_frames(
    addr: &str,
    args: &Args,
    stats: &ServerStats,
) -> Result<(), Box<dyn std::error::Error>> {
    let len = Limits::default().frame_len_max;
    println!(
        "\n== finding 3: {} peers send a {len}-byte frame but its last byte ==",
        args.stallers
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    report("before", stats);
    let mut header = Vec::with_capacity(HEADER_LEN);
    header.extend_from_slice(&MAGIC);
    header.extend_from_slice(&[
        VERSION,
        FrameKind::Request as u8,
        CodecId::MessagePack as u8,
        0,
    ]);
    header.extend_from_slice(&1u64.to_be_bytes());
    header.extend_from_slice(&0u32.to_be_bytes());
    header.extend_from_slice(&len.to_be_bytes());
    let body = vec![0u8; len as usize - 1];
    let mut peers = Vec::new();
    for _ in 0..args.stallers {
        let mut raw = TcpStream::connect(addr).await?;
        let header = header.clone();
        let body = body.clone();
        peers.push(tokio::spawn(async move {
            let sent = async {
                raw.write_all(&header).await?;
                raw.write_all(&body).await
            };
            let sent = tokio::time::timeout(Duration::from_secs(10), sent).await;
            let mut buf = [0u8; 64];
            let closed = tokio::time::timeout(Duration::from_secs(60), raw.read(&mut buf)).await;
            (sent.is_ok_and(|r| r.is_ok()), closed.is_ok())
        }));
    }
    // Cut once a frame makes no progress for `frame_timeout` (10 s here).
    for second in (2..=16).step_by(2) {
        tokio::time::sleep(Duration::from_secs(2)).await;
        report(&format!("during, {second:>2} s"), stats);
    }
    let mut cut = 0;
    for peer in peers {
        let (_, closed) = peer.await?;
        cut += usize::from(closed);
    }
    println!("  {cut} of {} stalled peers were cut", args.stallers);
    tokio::time::sleep(Duration::from_secs(1)).await;
    report("after", stats);
    Ok(())
}
