//! Service discovery: servers register instances under TTL leases kept alive by
//! heartbeats; clients discover and watch the live instance list.
//!
//! # Layout
//! - [`Registry`]: the etcd-shaped trait (register / keep-alive / deregister /
//!   discover / watch) every implementation provides.
//! - [`MemoryRegistry`]: the embedded default, also the state behind the
//!   registry service.
//! - [`Registrar`]: a server's helper that keeps its registration alive and
//!   re-registers after the registry loses it.
//! - [`Resolver`]: a client's helper that follows one service and keeps the last
//!   known instance list while the registry is unreachable.
//! - [`proto`]: serde request/reply types for serving a registry over squall.
//! - [`service`]: the registry served by squall ([`service::router`], or
//!   [`service::authenticated_router`] requiring a token) and its client,
//!   [`RemoteRegistry`].
//! - `etcd` (feature `etcd`): `EtcdRegistry`, the trait on a real etcd cluster.
//!
//! What the registry guarantees, and what it does not, is in `docs/REGISTRY.md`.

mod backoff;
#[cfg(feature = "etcd")]
pub mod etcd;
mod memory;
pub mod proto;
mod registrar;
mod resolver;
pub mod service;
mod types;

#[cfg(test)]
mod tests;

use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::Status;

pub use backoff::Backoff;
#[cfg(feature = "etcd")]
pub use etcd::{EtcdConfig, EtcdRegistry};
pub use memory::{MemoryRegistry, MemoryRegistryBuilder, RegistryLimits, RegistryObserver};
pub use registrar::{Registrar, RegistrarConfig, RegistrarEvent, RegistrarObserver};
pub use resolver::{Resolver, ResolverConfig, ResolverEvent, ResolverObserver, ResolverState};
pub use service::{RemoteRegistry, RemoteRegistryConfig};
pub use types::{Instance, LeaseId, RegistryEvent, Snapshot};

/// A service registry, shaped like etcd's lease and watch APIs so an etcd
/// implementation maps onto it one call for one call.
///
/// Object safe: servers and clients hold an `Arc<dyn Registry>` and do not know
/// whether it is in memory, a squall registry service, or etcd.
///
/// Errors are [`Status`]es: `InvalidArgument` for a request the registry will
/// never accept (bad TTL, oversized instance), `ResourceExhausted` for a limit
/// that may clear later, `NotFound` for an unknown or expired lease, and
/// `Unavailable` / `DeadlineExceeded` when a remote registry cannot be reached.
pub trait Registry: Send + Sync {
    /// Registers `instance` under a new lease of `ttl`: the instance is listed
    /// until the lease expires (`ttl` after the last keep-alive) or is revoked.
    ///
    /// Registering an address that is already listed for the service replaces
    /// that registration and revokes its lease (a restarted server wins over
    /// its previous incarnation).
    fn register(&self, instance: Instance, ttl: Duration)
        -> BoxFuture<'_, Result<LeaseId, Status>>;

    /// Extends `lease` to a full TTL from now and returns that TTL.
    ///
    /// `NotFound` means the lease is unknown or already expired (the registry
    /// may have restarted): the holder must register again.
    fn keep_alive(&self, lease: LeaseId) -> BoxFuture<'_, Result<Duration, Status>>;

    /// Revokes `lease` and removes its instance at once (graceful shutdown).
    /// `NotFound` if the lease is unknown or already expired.
    fn deregister(&self, lease: LeaseId) -> BoxFuture<'_, Result<(), Status>>;

    /// The current instance list of `service`. An unknown service is an empty
    /// snapshot, not an error: "nobody serves this yet" is a normal state.
    fn discover<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<Snapshot, Status>>;

    /// Long-poll: resolves with the current snapshot of `service` once its
    /// revision exceeds `after_revision`. It waits as long as it takes; the caller
    /// bounds the wait with a timeout.
    ///
    /// A registry that sees an `after_revision` it never issued (it restarted and
    /// lost its history) resolves at once with its current snapshot, whose
    /// revision is then *lower* than `after_revision`: callers must accept it.
    fn watch<'a>(
        &'a self,
        service: &'a str,
        after_revision: u64,
    ) -> BoxFuture<'a, Result<Snapshot, Status>>;
}
