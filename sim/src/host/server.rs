//! A simulated server: the unchanged squall [`Server`] serving every method the
//! scenario's clients call. Each call records a `server.executed` event, sleeps
//! its scripted service time and fails at its scripted error rate.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng as _;
use serde_bytes::ByteBuf;
use squall::server::ServerConfig;
use squall::{Context, Router, Server, Status, Transport};

use super::{CALL_KEY, CLIENT_KEY};
use crate::net::{bind_addr, SimTransport};
use crate::recorder::Recorder;
use crate::scenario::{Behaviour, LatencyRange};
use crate::trace::EventKind;

/// A server host's state that outlives restarts and that the harness can change
/// (the `server_behaviour` fault).
#[derive(Debug)]
pub struct ServerState {
    /// The host name.
    pub name: String,
    /// Service time and error rate, changed by faults.
    pub behaviour: Mutex<Behaviour>,
    /// Draws service times and injected failures.
    pub rng: Mutex<squall::rng::Rng>,
    /// Methods to serve (every method any client calls).
    pub methods: BTreeSet<String>,
}

/// Samples a latency uniformly from `range`.
pub fn sample(range: &LatencyRange, rng: &mut squall::rng::Rng) -> Duration {
    if range.max <= range.min {
        return range.min;
    }
    let span = (range.max - range.min).as_nanos() as u64;
    range.min + Duration::from_nanos(rng.gen_range(0..=span))
}

impl ServerState {
    fn draw(&self) -> (Duration, bool) {
        let behaviour = self.behaviour.lock().unwrap_or_else(|p| p.into_inner());
        let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        let delay = sample(&behaviour.latency, &mut rng);
        let fail = behaviour.error_rate > 0.0 && rng.gen_bool(behaviour.error_rate.min(1.0));
        (delay, fail)
    }
}

fn router(state: &Arc<ServerState>, recorder: &Recorder) -> Router {
    let mut router = Router::new();
    for method in &state.methods {
        let state = Arc::clone(state);
        let recorder = recorder.clone();
        router = router.route(method, move |ctx: Context, body: ByteBuf| {
            let state = Arc::clone(&state);
            let recorder = recorder.clone();
            async move {
                let client = ctx.get(CLIENT_KEY).unwrap_or("-").to_owned();
                let call = ctx
                    .get(CALL_KEY)
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(u64::MAX);
                recorder.record(
                    &state.name,
                    EventKind::Executed {
                        client,
                        call,
                        method: ctx.method().to_owned(),
                    },
                );
                let (delay, fail) = state.draw();
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                if fail {
                    return Err(Status::internal(format!(
                        "{}: injected failure",
                        state.name
                    )));
                }
                Ok(body)
            }
        });
    }
    router
}

/// The host software: bind, serve until crashed.
pub fn software(
    state: Arc<ServerState>,
    recorder: Recorder,
) -> impl Fn() -> std::pin::Pin<Box<dyn Future<Output = turmoil::Result>>> {
    move || {
        let state = Arc::clone(&state);
        let recorder = recorder.clone();
        Box::pin(async move {
            let transport = SimTransport::new(&state.name, recorder.clone());
            let listener = transport.bind(&bind_addr()).await?;
            let server =
                Server::new(router(&state, &recorder)).with_config(ServerConfig::default());
            server.serve(listener, std::future::pending()).await?;
            Ok(())
        })
    }
}
