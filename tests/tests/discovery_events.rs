//! A discovery-aware client reports what it decides as `tracing` events
//! (target `squall::discovery`, field `event`), with no observer configured:
//! the endpoint set, each attempt, the retry decision after a refused connect,
//! and the breaker opening on the dead endpoint. Over real TCP.

mod common;

use std::sync::{Arc, Mutex};

use common::{guard, TestServer};
use squall::balance::Endpoint;
use squall::server::ServerConfig;
use squall::{
    BalancerKind, BreakerConfig, Client, Context, Router, ServiceClient, ServiceClientConfig,
    Status, Tcp,
};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt};
use tracing_subscriber::Layer;

/// Keeps the `event` field (and `decision`, `to`) of every discovery event.
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<String>>>);

struct Named(String);

impl Visit for Named {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if ["event", "decision", "to"].contains(&field.name()) {
            let value = format!("{value:?}");
            self.0
                .push_str(&format!(" {}={}", field.name(), value.trim_matches('"')));
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if ["event", "decision", "to"].contains(&field.name()) {
            self.0.push_str(&format!(" {}={value}", field.name()));
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for Events {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: LayerContext<'_, S>) {
        if event.metadata().target() == "squall::discovery" {
            let mut named = Named(String::new());
            event.record(&mut named);
            self.0.lock().unwrap().push(named.0.trim().to_owned());
        }
    }
}

#[tokio::test]
async fn retries_breaker_transitions_and_endpoint_changes_are_tracing_events() {
    let events = Events::default();
    let subscriber = tracing_subscriber::registry().with(
        events
            .clone()
            .with_filter(tracing_subscriber::filter::LevelFilter::DEBUG),
    );
    let _default = tracing::subscriber::set_default(subscriber);

    let good = TestServer::start_router(
        Router::new().route("Echo.Who", |_ctx: Context, (): ()| async move {
            Ok::<String, Status>("good".to_owned())
        }),
        ServerConfig::default(),
    )
    .await;
    // A port nothing listens on: connects are refused (not executed, retried).
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap().to_string();
    drop(dead);
    let config = ServiceClientConfig {
        balancer: BalancerKind::RoundRobin,
        breaker: Some(BreakerConfig {
            consecutive_failures: Some(1),
            ..BreakerConfig::default()
        }),
        ..ServiceClientConfig::default()
    };
    let endpoints = vec![
        Endpoint::new(dead_addr.as_str(), 1),
        Endpoint::new(good.addr.as_str(), 1),
    ];
    let client = Client::new(ServiceClient::new(Tcp, "echo", endpoints, config));
    for _ in 0..4 {
        let who: Result<String, Status> = guard("call", client.call("Echo.Who", &())).await;
        assert_eq!(
            who.as_deref(),
            Ok("good"),
            "the refused attempt is retried on the good endpoint"
        );
    }

    let seen = events.0.lock().unwrap().clone();
    for wanted in [
        "event=endpoints_changed",
        "event=attempt",
        "event=attempt_finished",
        "event=retry_decision decision=retry",
        "event=breaker_transition to=Open",
    ] {
        assert!(
            seen.iter().any(|line| line == wanted),
            "missing {wanted:?} in {seen:#?}"
        );
    }
}
