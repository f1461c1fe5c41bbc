//! Metrics through the `metrics` facade, scraped over HTTP from a Prometheus
//! endpoint and parsed: per-method call counts by code, latency histogram
//! buckets on both sides, and a bounded label set under a flood of made-up
//! method names. Run with `cargo test -p squall-e2e --features metrics`.
#![cfg(feature = "metrics")]

mod common;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use common::{client, guard, TestServer};
use metrics_exporter_prometheus::PrometheusHandle;
use squall::client::{Caller, OutgoingRequest};
use squall::server::ServerConfig;
use squall::{Code, Codec, Context, Router, Status};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The process-wide recorder (installed once per test binary).
fn recorder() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| squall_e2e::prometheus::install().expect("install the recorder"))
}

/// Starts a scrape endpoint on this test's runtime; returns its address.
async fn scrape_endpoint() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("bound address").to_string();
    tokio::spawn(squall_e2e::prometheus::serve(listener, recorder().clone()));
    addr
}

/// GETs /metrics over HTTP and returns the body, checking the status line.
async fn scrape(endpoint: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(endpoint)
        .await
        .expect("connect");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
        .await
        .expect("request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("response");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_owned()
}

/// One sample line of the text format: name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the Prometheus text exposition format (comments skipped).
fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (key, value) = pair.split_once('=').expect("label=value");
                    (key.to_owned(), value.trim_matches('"').to_owned())
                })
                .collect();
            let value = value.parse().unwrap_or_else(|_| panic!("a number: {line}"));
            Sample {
                name: name.to_owned(),
                labels,
                value,
            }
        })
        .collect()
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

fn router() -> Router {
    Router::new()
        .route(
            "Scrape.Add",
            |_ctx: Context, (a, b): (i64, i64)| async move { Ok::<i64, Status>(a + b) },
        )
        .route("Scrape.Fail", |_ctx: Context, (): ()| async move {
            Err::<(), Status>(Status::invalid_argument("always fails"))
        })
}

#[tokio::test]
async fn a_scrape_shows_per_method_counts_by_code_and_latency_buckets() {
    let endpoint = scrape_endpoint().await;
    let server = TestServer::start_router(router(), ServerConfig::default()).await;
    let client = client(&server.addr).await;
    for n in 0..3i64 {
        let sum: Result<i64, Status> = guard("add", client.call("Scrape.Add", &(n, 1))).await;
        assert_eq!(sum, Ok(n + 1));
    }
    let failed: Result<(), Status> = guard("fail", client.call("Scrape.Fail", &())).await;
    assert_eq!(failed.unwrap_err().code(), Code::InvalidArgument);

    let samples = parse(&scrape(&endpoint).await);
    let add_ok = [("method", "Scrape.Add"), ("code", "Ok")];
    assert_eq!(
        value(&samples, "rpc_server_calls_total", &add_ok),
        Some(3.0)
    );
    assert_eq!(
        value(&samples, "rpc_client_calls_total", &add_ok),
        Some(3.0)
    );
    assert_eq!(
        value(&samples, "rpc_client_attempts_total", &add_ok),
        Some(3.0)
    );
    let fail = [("method", "Scrape.Fail"), ("code", "InvalidArgument")];
    assert_eq!(value(&samples, "rpc_server_calls_total", &fail), Some(1.0));
    for histogram in ["rpc_server_duration_seconds", "rpc_client_duration_seconds"] {
        let add = [("method", "Scrape.Add")];
        let count = value(&samples, &format!("{histogram}_count"), &add);
        assert_eq!(count, Some(3.0), "{histogram}");
        let buckets: Vec<&Sample> = samples
            .iter()
            .filter(|s| {
                s.name == format!("{histogram}_bucket")
                    && s.labels.get("method").map(String::as_str) == Some("Scrape.Add")
            })
            .collect();
        assert!(buckets.len() > 10, "{histogram} has buckets: {buckets:?}");
        let infinite = buckets
            .iter()
            .find(|s| s.labels.get("le").map(String::as_str) == Some("+Inf"));
        assert_eq!(
            infinite.map(|s| s.value),
            Some(3.0),
            "{histogram}: every call is under +Inf"
        );
    }
    assert!(
        value(&samples, "rpc_server_connections", &[]).is_some_and(|open| open >= 1.0),
        "the connection gauge counts the open connection"
    );
}

#[tokio::test]
async fn ten_thousand_made_up_method_names_share_one_label() {
    let endpoint = scrape_endpoint().await;
    let server = TestServer::start_router(router(), ServerConfig::default()).await;
    let channel = common::connect(&server.addr).await;
    let names = 10_000;
    for batch in 0..names / 500 {
        let calls: Vec<_> = (0..500)
            .map(|n| {
                channel.call(OutgoingRequest {
                    method: format!("Attacker.Method{}", batch * 500 + n),
                    codec: Codec::MessagePack,
                    body: bytes::Bytes::from_static(&[0xc0]),
                    metadata: Vec::new(),
                    timeout: Some(std::time::Duration::from_secs(10)),
                    idempotent: false,
                })
            })
            .collect();
        for call in calls {
            let status = guard("made-up method", call).await.unwrap_err();
            assert_eq!(status.code(), Code::NotFound);
        }
    }
    let samples = parse(&scrape(&endpoint).await);
    let server_methods: std::collections::BTreeSet<&str> = samples
        .iter()
        .filter(|s| s.name.starts_with("rpc_server_"))
        .filter_map(|s| s.labels.get("method").map(String::as_str))
        .collect();
    assert!(
        server_methods
            .iter()
            .all(|m| ["unknown", "Scrape.Add", "Scrape.Fail"].contains(m)),
        "only the router's methods and `unknown` label server series: {server_methods:?}"
    );
    let unknown = [("method", "unknown"), ("code", "NotFound")];
    assert!(
        value(&samples, "rpc_server_calls_total", &unknown).is_some_and(|n| n >= names as f64),
        "every made-up name is counted under `unknown`"
    );
}
