//! The built-in service and workload, for scenarios that test squall itself
//! (balancing, breakers, retries) rather than a user's service. Both plug into
//! the simulation through the same API a user's code does: [`router`] is a
//! server group factory, [`workload`] a client group workload.
//!
//! The echo server answers every method the scenario calls with the request's
//! own bytes (after the scenario's service time, applied by the harness layer);
//! a forwarding group calls the next tier first. The echo workload calls the
//! group's method mix with payloads that name their call, so a reply delivered
//! to the wrong caller is caught ([`MISDELIVERED`]).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rand::Rng as _;
use serde_bytes::ByteBuf;
use squall::{
    BalancerKind, CallOptions, Client, Context, Endpoint, FailMode, Router, Server, ServiceClient,
    ServiceClientConfig, Status,
};

use super::server::Hop;
use super::{CALL_KEY, HASH_KEY};
use crate::env::{ClientEnv, RunView, ServerEnv};
use crate::net::SimTransport;
use crate::scenario::{MethodWeight, Scenario};
use crate::trace::EventKind;

/// The user event the echo workload records when a reply is not the echo of
/// its own call's payload.
pub const MISDELIVERED: &str = "echo.misdelivered";

/// Every method any client or forwarding tier of `scenario` calls: what an
/// echo server serves.
pub fn methods(scenario: &Scenario) -> BTreeSet<String> {
    let called = scenario
        .clients
        .iter()
        .flat_map(|c| c.workload.mix.iter().map(|m| m.method.clone()));
    let forwarded = scenario
        .servers
        .iter()
        .filter_map(|g| g.forward.as_ref().map(|f| f.method.clone()));
    called.chain(forwarded).collect()
}

type Forwarder = Arc<Client<Hop<ServiceClient<SimTransport>>>>;

/// A static client to the group's next tier, if it forwards: round robin,
/// the hop's connection settings and retries (fail fast unless it retries).
fn forwarder(env: &ServerEnv, scenario: &Scenario) -> Option<Forwarder> {
    let group = scenario.servers.iter().find(|g| g.name == env.group())?;
    let forward = group.forward.as_ref()?;
    let endpoints = forward
        .targets
        .iter()
        .map(|host| Endpoint::new(crate::net::addr_of(host), 1))
        .collect();
    let config = ServiceClientConfig {
        balancer: BalancerKind::RoundRobin,
        breaker: None,
        channel: crate::real::scale::channel(&forward.connection),
        retry: crate::real::scale::retry(&forward.retry),
        fail_mode: if forward.retry.max_attempts > 1 {
            FailMode::FailOver
        } else {
            FailMode::FailFast
        },
        budget: None,
        call_id_key: CALL_KEY.to_owned(),
        seed: env.state.seeds.child("forward"),
        ..ServiceClientConfig::default()
    };
    let client = ServiceClient::new(env.transport(), "forward", endpoints, config);
    Some(Arc::new(Client::new(Hop::new(client)).with_timeout(
        crate::real::clock::to_wall_opt(forward.timeout),
    )))
}

/// The echo server for `env`'s host: every method of [`methods`], answered with
/// the request's bytes, after the next tier's answer for a forwarding group.
pub fn router(env: &ServerEnv) -> Server {
    let scenario = Arc::clone(&env.scenario);
    let forwarder = forwarder(env, &scenario);
    let forward_method = scenario
        .servers
        .iter()
        .find(|g| g.name == env.group())
        .and_then(|g| g.forward.as_ref().map(|f| f.method.clone()));
    let mut router = Router::new();
    for method in methods(&scenario) {
        let forwarder = forwarder.clone();
        let forward_method = forward_method.clone();
        router = router.route(&method, move |_ctx: Context, body: ByteBuf| {
            let forwarder = forwarder.clone();
            let forward_method = forward_method.clone();
            async move {
                if let (Some(forwarder), Some(method)) = (forwarder, forward_method) {
                    // The call inherits this handler's remaining deadline; `Hop`
                    // passes the original caller's identity on. A failure is
                    // passed back as "may have executed": this handler ran, and
                    // the next tier's "not executed" says nothing about it (a
                    // hop must not forward that promise blindly).
                    let _: ByteBuf = forwarder
                        .call_with(&method, &body, CallOptions::new())
                        .await
                        .map_err(Status::executed)?;
                }
                Ok::<_, Status>(body)
            }
        });
    }
    env.server(router)
}

/// `len` bytes (at least the identity) that name `host`'s operation `op`.
fn call_payload(host: &str, op: u64, len: usize) -> ByteBuf {
    let mut bytes = format!("{host}/{op}/").into_bytes();
    if bytes.len() < len {
        bytes.resize(len, b'.');
    }
    ByteBuf::from(bytes)
}

/// Picks a method of `mix` by weight.
fn pick(mix: &[MethodWeight], rng: &mut squall::rng::Rng) -> MethodWeight {
    let total: u64 = mix.iter().map(|m| u64::from(m.weight)).sum();
    let mut ticket = rng.gen_range(0..total.max(1));
    for entry in mix {
        if ticket < u64::from(entry.weight) {
            return entry.clone();
        }
        ticket -= u64::from(entry.weight);
    }
    // Validation guarantees a non-empty mix with positive weights.
    mix.last().cloned().unwrap_or(MethodWeight {
        method: "Echo.Echo".to_owned(),
        weight: 1,
        idempotent: false,
    })
}

/// The echo workload: the group's method mix at its load, each call carrying
/// a payload that names it; a reply that is not that payload is recorded as
/// [`MISDELIVERED`].
pub async fn workload(env: ClientEnv) {
    let rng = Arc::new(Mutex::new(env.rng("echo")));
    let ops = Arc::new(AtomicU64::new(0));
    let payload_len = env.group().workload.payload_bytes as usize;
    let op_env = env.clone();
    env.drive(move || {
        let (env, rng, ops) = (op_env.clone(), Arc::clone(&rng), Arc::clone(&ops));
        async move {
            let group = env.group();
            let (entry, key) = {
                let mut rng = rng.lock().unwrap_or_else(|p| p.into_inner());
                let entry = pick(&group.workload.mix, &mut rng);
                let key = group
                    .hash_keys
                    .map(|keys| format!("k{}", rng.gen_range(0..keys.max(1))));
                (entry, key)
            };
            let mut options = CallOptions::new();
            if let Some(key) = key {
                options = options.metadata(HASH_KEY, key);
            }
            if entry.idempotent {
                options = options.idempotent();
            }
            let op = ops.fetch_add(1, Ordering::Relaxed);
            let body = call_payload(env.host(), op, payload_len);
            let result: Result<ByteBuf, Status> =
                env.client().call_with(&entry.method, &body, options).await;
            if let Ok(reply) = result {
                if reply != body {
                    let expected =
                        String::from_utf8_lossy(&body[..body.len().min(32)]).into_owned();
                    let got = String::from_utf8_lossy(&reply[..reply.len().min(32)]).into_owned();
                    env.tracer()
                        .record(MISDELIVERED, &[("expected", &expected), ("got", &got)]);
                }
            }
        }
    })
    .await;
}

/// The echo workload's invariant: no reply went to the wrong caller.
pub fn no_misdelivered_replies(view: &RunView<'_>) -> Result<(), String> {
    let misdelivered: Vec<String> = view
        .events()
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::User { kind, .. } if kind == MISDELIVERED))
        .map(|e| e.to_string())
        .collect();
    match misdelivered.first() {
        None => Ok(()),
        Some(first) => Err(format!(
            "{} replies were another call's; first: {first}",
            misdelivered.len()
        )),
    }
}
