//! With squall's DEBUG call spans disabled (a subscriber at INFO, the usual
//! production level), a call starts no trace: no span reaches the subscriber
//! and the server sees no `traceparent`. A test binary of its own, because
//! `tracing` caches callsite interest process-wide: a DEBUG subscriber in
//! another test of the same process would change what this one sees.

mod common;

use std::sync::{Arc, Mutex};

use common::{client, TestServer};
use squall::server::ServerConfig;
use squall::{Context, Router, Status};
use tracing::span::{Attributes, Id};
use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt};
use tracing_subscriber::Layer;

/// Counts the spans it is told about.
#[derive(Clone, Default)]
struct CountSpans(Arc<Mutex<Vec<&'static str>>>);

impl<S: tracing::Subscriber> Layer<S> for CountSpans {
    fn on_new_span(&self, attrs: &Attributes<'_>, _id: &Id, _ctx: LayerContext<'_, S>) {
        self.0.lock().unwrap().push(attrs.metadata().name());
    }
}

#[tokio::test]
async fn a_subscriber_at_info_gets_no_call_spans_and_no_trace_context_is_sent() {
    let spans = CountSpans::default();
    let subscriber = tracing_subscriber::registry().with(
        spans
            .clone()
            .with_filter(tracing_subscriber::filter::LevelFilter::INFO),
    );
    let _default = tracing::subscriber::set_default(subscriber);
    let backend = TestServer::start_router(
        Router::new().route("Back.Has", |ctx: Context, (): ()| async move {
            Ok::<bool, Status>(ctx.get(squall::observe::TRACEPARENT).is_some())
        }),
        ServerConfig::default(),
    )
    .await;
    let has: Result<bool, Status> = client(&backend.addr).await.call("Back.Has", &()).await;
    assert_eq!(has, Ok(false), "no trace context travels");
    let names = spans.0.lock().unwrap().clone();
    assert!(
        !names.iter().any(|name| name.starts_with("rpc.")),
        "no call span reached the subscriber: {names:?}"
    );
}
