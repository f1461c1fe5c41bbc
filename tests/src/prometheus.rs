//! A Prometheus scrape endpoint for squall's metrics: the
//! `metrics-exporter-prometheus` recorder installed globally, and a minimal
//! HTTP/1.1 endpoint that answers every request with the rendered text.
//!
//! The exporter's own `http-listener` feature does the same over hyper; this
//! one binds a listener the caller owns, so a test can use port 0.

use std::io;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Latency buckets for every `*_duration_seconds` histogram, in seconds: 50 µs
/// to 10 s (without buckets the exporter renders summaries, not histograms).
pub const DURATION_BUCKETS_SECONDS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

/// Most bytes of a request head read before answering (a scrape is one line).
const REQUEST_HEAD_MAX: usize = 8 * 1024;

/// Installs the Prometheus recorder as the process's global `metrics`
/// recorder (once per process) and returns the handle that renders it.
pub fn install() -> Result<PrometheusHandle, String> {
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_duration_seconds".to_owned()),
            DURATION_BUCKETS_SECONDS,
        )
        .map_err(|error| error.to_string())?
        .build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|error| error.to_string())?;
    Ok(handle)
}

/// Answers scrapes on `listener` for ever, one task per scrape.
pub async fn serve(listener: TcpListener, handle: PrometheusHandle) -> io::Result<()> {
    loop {
        let (mut stream, _peer) = listener.accept().await?;
        let handle = handle.clone();
        tokio::spawn(async move {
            let mut head = Vec::new();
            let mut chunk = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < REQUEST_HEAD_MAX {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => head.extend_from_slice(&chunk[..n]),
                }
            }
            let body = handle.render();
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}
