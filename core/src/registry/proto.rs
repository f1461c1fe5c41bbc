//! Request and reply types for serving a [`Registry`] over squall, one pair per
//! operation, plus the server-side handlers that run them against any registry.
//!
//! The registry service is a thin shell: each method decodes one of these
//! requests, calls the matching `serve_*` function on its backing registry (a
//! [`MemoryRegistry`](super::MemoryRegistry)) and encodes the reply or the
//! [`Status`]. A client-side `Registry` implementation does the reverse. Durations
//! travel as whole milliseconds (`*_ms`), so every codec carries them the same way.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Instance, LeaseId, Registry, Snapshot};
use crate::Status;

/// The service name the registry is served under.
pub const SERVICE: &str = "Registry";
/// `Registry.Register`: [`RegisterRequest`] → [`RegisterReply`].
pub const METHOD_REGISTER: &str = "Registry.Register";
/// `Registry.KeepAlive`: [`KeepAliveRequest`] → [`KeepAliveReply`], or `NotFound`.
pub const METHOD_KEEP_ALIVE: &str = "Registry.KeepAlive";
/// `Registry.Deregister`: [`DeregisterRequest`] → [`DeregisterReply`], or `NotFound`.
pub const METHOD_DEREGISTER: &str = "Registry.Deregister";
/// `Registry.Discover`: [`DiscoverRequest`] → [`Snapshot`].
pub const METHOD_DISCOVER: &str = "Registry.Discover";
/// `Registry.Watch`: [`WatchRequest`] → [`Snapshot`] (long-poll).
pub const METHOD_WATCH: &str = "Registry.Watch";

/// The longest a watch may hold a server-side slot: longer waits are cut to this,
/// so a forgotten long-poll cannot hold a watcher slot for ever.
pub const WATCH_WAIT_MAX: Duration = Duration::from_secs(60);

/// Register `instance` under a new lease of `ttl_ms`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterRequest {
    /// What to list.
    pub instance: Instance,
    /// The lease TTL in milliseconds.
    pub ttl_ms: u64,
}

/// The lease granted by a [`RegisterRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterReply {
    /// Keep this alive; deregister with it.
    pub lease_id: LeaseId,
}

/// Extend a lease to a full TTL from now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeepAliveRequest {
    /// The lease to extend.
    pub lease_id: LeaseId,
}

/// The lease was extended; a lost lease is a `NotFound` status instead.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeepAliveReply {
    /// The TTL the lease now has, in milliseconds.
    pub ttl_ms: u64,
}

/// Revoke a lease and remove its instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeregisterRequest {
    /// The lease to revoke.
    pub lease_id: LeaseId,
}

/// The lease was revoked. Empty, but a struct so fields can be added compatibly.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeregisterReply {}

/// The current instance list of a service; the reply is a [`Snapshot`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoverRequest {
    /// The service to list.
    pub service: String,
}

/// Long-poll: reply with the service's [`Snapshot`] as soon as its revision
/// exceeds `after_revision`, or with the current snapshot (revision unchanged)
/// once `wait_ms` has passed. Either way the reply is a whole snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchRequest {
    /// The service to watch.
    pub service: String,
    /// The revision the caller already has.
    pub after_revision: u64,
    /// How long the server may hold the request, in milliseconds (at most
    /// [`WATCH_WAIT_MAX`]). The caller's deadline must exceed it.
    pub wait_ms: u64,
}

/// Runs a [`RegisterRequest`].
pub async fn serve_register(
    registry: &dyn Registry,
    request: RegisterRequest,
) -> Result<RegisterReply, Status> {
    let ttl = Duration::from_millis(request.ttl_ms);
    let lease_id = registry.register(request.instance, ttl).await?;
    Ok(RegisterReply { lease_id })
}

/// Runs a [`KeepAliveRequest`].
pub async fn serve_keep_alive(
    registry: &dyn Registry,
    request: KeepAliveRequest,
) -> Result<KeepAliveReply, Status> {
    let ttl = registry.keep_alive(request.lease_id).await?;
    Ok(KeepAliveReply {
        ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
    })
}

/// Runs a [`DeregisterRequest`].
pub async fn serve_deregister(
    registry: &dyn Registry,
    request: DeregisterRequest,
) -> Result<DeregisterReply, Status> {
    registry.deregister(request.lease_id).await?;
    Ok(DeregisterReply {})
}

/// Runs a [`DiscoverRequest`].
pub async fn serve_discover(
    registry: &dyn Registry,
    request: DiscoverRequest,
) -> Result<Snapshot, Status> {
    registry.discover(&request.service).await
}

/// Runs a [`WatchRequest`]: waits for a change for at most `wait_ms` (capped at
/// [`WATCH_WAIT_MAX`]), then answers with the current snapshot regardless.
pub async fn serve_watch(
    registry: &dyn Registry,
    request: WatchRequest,
) -> Result<Snapshot, Status> {
    let wait = Duration::from_millis(request.wait_ms).min(WATCH_WAIT_MAX);
    let watch = registry.watch(&request.service, request.after_revision);
    match tokio::time::timeout(wait, watch).await {
        Ok(outcome) => outcome,
        Err(_no_change) => registry.discover(&request.service).await,
    }
}
