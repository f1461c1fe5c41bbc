//! Built-in per-call spans and trace context over real TCP: a call from a
//! client through a frontend to a backend is one trace — four spans (client,
//! server, client, server) sharing one trace id, each the child of the one
//! before — seen by a capturing `tracing` layer, with no layer added to the
//! servers by hand.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use common::{client, connect, guard, TestServer};
use squall::observe::TraceContext;
use squall::server::ServerConfig;
use squall::{Client, Context, Router, Status};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt};
use tracing_subscriber::Layer;

/// One span as the capturing layer saw it: its name and every field recorded.
#[derive(Clone, Debug, Default)]
struct Captured {
    name: &'static str,
    fields: BTreeMap<String, String>,
}

/// A `tracing` layer that keeps every span's fields, by span id.
#[derive(Clone, Default)]
struct Capture {
    spans: Arc<Mutex<BTreeMap<u64, Captured>>>,
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: tracing::Subscriber> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _ctx: LayerContext<'_, S>) {
        let mut span = Captured {
            name: attrs.metadata().name(),
            ..Captured::default()
        };
        attrs.record(&mut Fields(&mut span.fields));
        self.spans.lock().unwrap().insert(id.into_u64(), span);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: LayerContext<'_, S>) {
        if let Some(span) = self.spans.lock().unwrap().get_mut(&id.into_u64()) {
            values.record(&mut Fields(&mut span.fields));
        }
    }
}

impl Capture {
    fn named(&self, name: &str) -> Vec<Captured> {
        let spans = self.spans.lock().unwrap();
        spans
            .values()
            .filter(|span| span.name == name)
            .cloned()
            .collect()
    }
}

fn field<'a>(span: &'a Captured, name: &str) -> &'a str {
    span.fields
        .get(name)
        .map(String::as_str)
        .unwrap_or_else(|| panic!("span {} has no field {name}: {:?}", span.name, span.fields))
}

fn by_method<'a>(spans: &'a [Captured], method: &str) -> &'a Captured {
    spans
        .iter()
        .find(|span| span.fields.get("method").map(String::as_str) == Some(method))
        .unwrap_or_else(|| panic!("no span for {method} in {spans:?}"))
}

#[tokio::test]
async fn a_two_hop_call_over_tcp_is_one_trace() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(
        capture
            .clone()
            .with_filter(tracing_subscriber::filter::LevelFilter::DEBUG),
    );
    let _default = tracing::subscriber::set_default(subscriber);

    let backend = TestServer::start_router(
        Router::new().route("Back.Echo", |_ctx: Context, text: String| async move {
            Ok::<String, Status>(text)
        }),
        ServerConfig::default(),
    )
    .await;
    let to_backend = Client::new(connect(&backend.addr).await);
    // What the frontend handler sees as its own trace context, for the check below.
    let seen = Arc::new(Mutex::new(None::<TraceContext>));
    let seen_in_handler = Arc::clone(&seen);
    let frontend = TestServer::start_router(
        Router::new().route("Front.Relay", move |_ctx: Context, text: String| {
            let to_backend = to_backend.clone();
            let seen = Arc::clone(&seen_in_handler);
            async move {
                *seen.lock().unwrap() = TraceContext::current();
                to_backend.call::<_, String>("Back.Echo", &text).await
            }
        }),
        ServerConfig::default(),
    )
    .await;
    let reply: Result<String, Status> = guard(
        "two-hop call",
        client(&frontend.addr).await.call("Front.Relay", &"hi"),
    )
    .await;
    assert_eq!(reply.as_deref(), Ok("hi"));
    // The first server span closes after its reply is queued: wait for the record.
    common::wait_until("both server spans record their code", || {
        capture
            .named("rpc.server")
            .iter()
            .filter(|s| s.fields.contains_key("code"))
            .count()
            == 2
    })
    .await;

    let clients = capture.named("rpc.client");
    let servers = capture.named("rpc.server");
    let first_client = by_method(&clients, "Front.Relay");
    let frontend_server = by_method(&servers, "Front.Relay");
    let second_client = by_method(&clients, "Back.Echo");
    let backend_server = by_method(&servers, "Back.Echo");
    let chain = [first_client, frontend_server, second_client, backend_server];

    let trace_id = field(first_client, "trace_id");
    assert_eq!(trace_id.len(), 32, "a W3C trace id: {trace_id}");
    for span in chain {
        assert_eq!(field(span, "trace_id"), trace_id, "one trace: {span:?}");
        assert_eq!(field(span, "code"), "Ok", "{span:?}");
        assert!(field(span, "latency_us").parse::<u64>().is_ok(), "{span:?}");
    }
    assert!(
        !first_client.fields.contains_key("parent_span_id"),
        "the first client span is the root: {first_client:?}"
    );
    for pair in chain.windows(2) {
        assert_eq!(
            field(pair[1], "parent_span_id"),
            field(pair[0], "span_id"),
            "{} is the child of {}",
            pair[1].name,
            pair[0].name
        );
    }
    let seen = seen
        .lock()
        .unwrap()
        .expect("the handler runs inside a trace");
    assert_eq!(format!("{:032x}", seen.trace_id), trace_id);
    assert_eq!(
        format!("{:016x}", seen.span_id),
        field(frontend_server, "span_id")
    );
}
