//! Simulation speed: simulated seconds per wall second for squall inside turmoil,
//! against a bare turmoil echo with the same hosts and message count (the floor).
//!
//! `cargo run --release -p sim --example speed` (add `-- --quick` for a short run).

use std::time::{Duration, UNIX_EPOCH};

use sim::{run, Scenario};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Simulated seconds per run.
const SIMULATED: Duration = Duration::from_secs(30);

fn scenario(hosts: usize, rate: u32) -> Scenario {
    let text = format!(
        r#"
name = "speed-{hosts}x{rate}"
description = "speed benchmark"
duration = "{secs}s"
seeds = [1]
[network]
latency = {{ min = "1ms", max = "5ms" }}
[[servers]]
group = "server"
replicas = {hosts}
latency = "0ms"
[[clients]]
group = "client"
replicas = {hosts}
targets = ["server"]
rate = {rate}
payload_bytes = 64
timeout = "1s"
"#,
        secs = SIMULATED.as_secs()
    );
    Scenario::from_str(&text, "speed.toml").expect("valid benchmark scenario")
}

/// A bare turmoil echo: each client sends `rate` 64-byte messages per second
/// (Poisson-free: fixed spacing) to server `i % hosts` over one TCP stream and
/// reads each echo back.
fn bare_echo(hosts: usize, rate: u32) -> Result<Duration, Box<dyn std::error::Error>> {
    let mut builder = turmoil::Builder::new();
    builder
        .rng_seed(1)
        .epoch(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        .simulation_duration(SIMULATED + Duration::from_secs(5))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(5));
    let mut sim = builder.build();
    for s in 0..hosts {
        sim.host(format!("server-{s}"), || async {
            let listener = turmoil::net::TcpListener::bind("0.0.0.0:7000").await?;
            loop {
                let (mut stream, _) = listener.accept().await?;
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while stream.read_exact(&mut buf).await.is_ok() {
                        if stream.write_all(&buf).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
    }
    let calls = u64::from(rate) * SIMULATED.as_secs();
    for c in 0..hosts {
        let target = format!("server-{}:7000", c % hosts);
        sim.client(format!("client-{c}"), async move {
            let stream = turmoil::net::TcpStream::connect(target).await?;
            let (mut reader, mut writer) = stream.into_split();
            // An interval (not a sleep per message) keeps the average rate exact
            // even though turmoil's clock moves in 1ms ticks.
            let mut ticks = tokio::time::interval(Duration::from_secs(1) / rate);
            let sender = tokio::spawn(async move {
                for _ in 0..calls {
                    ticks.tick().await;
                    if writer.write_all(&[0x5a; 64]).await.is_err() {
                        break;
                    }
                }
            });
            let mut buf = [0u8; 64];
            for _ in 0..calls {
                reader.read_exact(&mut buf).await?;
            }
            sender.await?;
            Ok(())
        });
    }
    sim.run()?;
    Ok(sim.elapsed())
}

#[allow(clippy::disallowed_methods)] // wall-clock timing of whole runs, outside any simulation
fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = std::time::Instant::now();
    let value = f();
    (value, start.elapsed())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let quick = std::env::args().any(|a| a == "--quick");
    let shapes: &[(usize, u32)] = if quick {
        &[(3, 100)]
    } else {
        &[(3, 100), (10, 100), (30, 100), (3, 50), (3, 200), (3, 400)]
    };
    println!(
        "{:>8} {:>6} {:>10} {:>14} {:>14} {:>7}",
        "hosts", "rate", "messages", "squall sim s/s", "bare echo s/s", "ratio"
    );
    for &(hosts, rate) in shapes {
        let scenario = scenario(hosts, rate);
        let (outcome, squall_wall) = timed(|| run(&scenario, 1));
        let outcome = outcome?;
        let (bare, bare_wall) = timed(|| bare_echo(hosts, rate));
        let bare_simulated = bare?;
        let squall_speed = outcome.simulated.as_secs_f64() / squall_wall.as_secs_f64();
        let bare_speed = bare_simulated.as_secs_f64() / bare_wall.as_secs_f64();
        println!(
            "{:>4}+{:<3} {:>6} {:>10} {:>14.1} {:>14.1} {:>6.2}x",
            hosts,
            hosts,
            rate,
            u64::from(rate) * SIMULATED.as_secs() * hosts as u64,
            squall_speed,
            bare_speed,
            bare_speed / squall_speed
        );
    }
    Ok(())
}
