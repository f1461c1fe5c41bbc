//! The registry host: squall's own registry service, so it runs — and fails —
//! inside the simulation like any server. Its state is in memory: a crash loses
//! it, and servers re-register when their heartbeats are refused.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use squall::registry::RegistryEvent;
use squall::{MemoryRegistry, SeedSource, Server, Transport};

use crate::net::{bind_addr, host_of, SimTransport};
use crate::recorder::Recorder;
use crate::scenario::REGISTRY_HOST;
use crate::trace::EventKind;

/// The registry host's state that outlives restarts.
#[derive(Debug)]
pub struct RegistryState {
    /// Incremented at each (re)start, so each incarnation draws fresh lease ids
    /// (an old server's keep-alive must never renew a new server's lease).
    pub incarnation: AtomicU64,
    /// The root of the lease-id streams.
    pub seeds: SeedSource,
}

fn trace_event(event: &RegistryEvent) -> EventKind {
    let (action, addr) = match event {
        RegistryEvent::Registered { addr, .. } => ("register", addr),
        RegistryEvent::Renewed { addr, .. } => ("renew", addr),
        RegistryEvent::Expired { addr, .. } => ("expire", addr),
        RegistryEvent::Deregistered { addr, .. } => ("deregister", addr),
    };
    EventKind::Registry {
        action: action.to_owned(),
        instance: host_of(addr).to_owned(),
    }
}

async fn serve(state: Arc<RegistryState>, recorder: Recorder) -> turmoil::Result {
    let incarnation = state.incarnation.fetch_add(1, Ordering::Relaxed);
    recorder.sockets().spawn_closer(REGISTRY_HOST);
    let observer_recorder = recorder.clone();
    let registry = MemoryRegistry::builder()
        .observer(Arc::new(move |event: &RegistryEvent| {
            observer_recorder.record(REGISTRY_HOST, trace_event(event));
        }))
        .lease_ids_from(state.seeds.child(&format!("incarnation-{incarnation}")))
        .build();
    let transport = SimTransport::new(REGISTRY_HOST, recorder);
    let listener = transport.bind(&bind_addr()).await?;
    Server::new(squall::registry::service::router(registry))
        .serve(listener, std::future::pending())
        .await?;
    Ok(())
}

/// The host software.
pub fn software(
    state: Arc<RegistryState>,
    recorder: Recorder,
) -> impl Fn() -> Pin<Box<dyn Future<Output = turmoil::Result>>> {
    move || Box::pin(serve(Arc::clone(&state), recorder.clone()))
}
