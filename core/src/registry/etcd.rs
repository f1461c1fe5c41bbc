//! [`EtcdRegistry`]: the [`Registry`] trait on etcd v3 (feature `etcd`), the
//! production registry: replicated by Raft, leases and watches native.
//!
//! # Key layout
//!
//! One key per instance, attached to the instance's lease:
//!
//! ```text
//! {prefix}/{service}/{addr}  ->  the Instance as JSON
//! /squall/services/arith/10.0.0.7%3A7000  ->  {"service":"arith","addr":"10.0.0.7:7000",...}
//! ```
//!
//! `service` and `addr` are escaped in the key (`%` → `%25`, `/` → `%2F`, `:`
//! → `%3A`), so a service named `a` never sees the keys of a service named
//! `a/b`; the value holds them unescaped. The address is the key within its
//! service, as the trait requires: registering it again replaces the value
//! (moving the key to the new lease) and revokes the old lease.
//!
//! # Mapping
//!
//! | Trait | etcd |
//! |---|---|
//! | `register` | `LeaseGrant(ceil(ttl) s)`, then `Put(key, lease, prev_kv)`; a previous key's lease is revoked |
//! | `keep_alive` | one round on a `LeaseKeepAlive` stream; TTL 0 ⇒ `NotFound` |
//! | `deregister` | `LeaseRevoke` (etcd deletes the key) |
//! | `discover` | `Range(prefix)`; the revision is the response header's store revision |
//! | `watch(after)` | `Watch(prefix, start_revision = after + 1)`, then `Range` at the first event |
//! | `LeaseId` | etcd's lease id (a positive `int64`) |
//!
//! Revisions are etcd's store revision, shared by every key in the cluster: a
//! service's snapshot revision also moves when *other* services change. That
//! keeps the trait's promise (monotonic, higher after every change of the
//! service), and a watch still wakes only for its own service's keys.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use etcd_client::{
    Client, ConnectOptions, Error as EtcdError, GetOptions, PutOptions, WatchOptions,
};
use futures_util::future::BoxFuture;

use super::{Instance, LeaseId, Registry, RegistryLimits, Snapshot};
use crate::Status;

/// How an [`EtcdRegistry`] reaches etcd.
#[derive(Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// etcd client URLs (`http://10.0.0.1:2379`); the client balances over them
    /// and fails over when one is down.
    pub endpoints: Vec<String>,
    /// The key prefix under which services live, without a trailing `/`.
    /// Default `/squall/services`; give each deployment (or test) its own.
    pub prefix: String,
    /// Bound on every call but a watch. Default 2 s, like the registry
    /// service's client: the registrar's and resolver's own bounds fire first.
    pub call_timeout: Duration,
    /// Bound on establishing a connection to an endpoint. Default 2 s.
    pub connect_timeout: Duration,
    /// HTTP/2 keep-alive ping interval: a silently dead etcd connection (a
    /// partition, not a refusal) is noticed within interval + timeout, and a
    /// watch on it fails rather than waiting for ever. Default 5 s.
    pub keep_alive_interval: Duration,
    /// How long a keep-alive ping may go unanswered. Default 5 s.
    pub keep_alive_timeout: Duration,
    /// etcd user name and password, when etcd's authentication is enabled
    /// (`etcdctl auth enable`): the way to keep other peers from rewriting the
    /// registry. `None` for an etcd without authentication.
    pub user: Option<(String, String)>,
    /// The same per-instance bounds every squall registry enforces (TTL range,
    /// name and metadata sizes); capacity limits are etcd's own quotas.
    pub limits: RegistryLimits,
}

impl Default for EtcdConfig {
    fn default() -> EtcdConfig {
        EtcdConfig {
            endpoints: vec!["http://127.0.0.1:2379".to_owned()],
            prefix: "/squall/services".to_owned(),
            call_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
            keep_alive_interval: Duration::from_secs(5),
            keep_alive_timeout: Duration::from_secs(5),
            user: None,
            limits: RegistryLimits::default(),
        }
    }
}

impl fmt::Debug for EtcdConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdConfig")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("call_timeout", &self.call_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("keep_alive_interval", &self.keep_alive_interval)
            .field("keep_alive_timeout", &self.keep_alive_timeout)
            .field(
                "user",
                &self.user.as_ref().map(|(name, _)| (name, "<redacted>")),
            )
            .field("limits", &self.limits)
            .finish()
    }
}

impl EtcdConfig {
    /// The default configuration for `endpoints`.
    pub fn new(endpoints: impl IntoIterator<Item = impl Into<String>>) -> EtcdConfig {
        EtcdConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            ..EtcdConfig::default()
        }
    }

    /// The same configuration under another key prefix.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> EtcdConfig {
        self.prefix = prefix.into();
        self
    }
}

/// A [`Registry`] stored in etcd. Cheap to clone; clones share connections.
///
/// Connections are made lazily and re-made after etcd restarts or fails over:
/// calls in between fail with `Unavailable` (or `DeadlineExceeded`), which the
/// [`Registrar`](super::Registrar) and [`Resolver`](super::Resolver) retry with
/// backoff. etcd keeps leases across its own restarts (and extends them by a
/// TTL when it comes back), so a registration survives an etcd restart without
/// re-registering.
#[derive(Clone)]
pub struct EtcdRegistry {
    /// The etcd client; `etcd_client` methods take `&mut self`, so each call
    /// works on a clone (clones share the underlying channel).
    client: Client,
    /// Where and how.
    config: EtcdConfig,
}

impl fmt::Debug for EtcdRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdRegistry")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl EtcdRegistry {
    /// A registry in the etcd cluster at `config.endpoints`.
    ///
    /// Fails with `InvalidArgument` for an unusable configuration (no
    /// endpoint, a malformed URL, a prefix ending in `/`); with `Unavailable`
    /// or `Unauthenticated` only when `config.user` is set and authenticating
    /// fails. Without a user it does not wait for etcd: an etcd that is down
    /// now is found by the first call.
    pub async fn connect(config: EtcdConfig) -> Result<EtcdRegistry, Status> {
        if config.endpoints.is_empty() {
            return Err(Status::invalid_argument(
                "etcd registry: no endpoints configured",
            ));
        }
        if config.prefix.ends_with('/') {
            return Err(Status::invalid_argument(format!(
                "etcd registry: prefix {:?} must not end with `/`",
                config.prefix
            )));
        }
        let mut options = ConnectOptions::new()
            .with_connect_timeout(config.connect_timeout)
            .with_keep_alive(config.keep_alive_interval, config.keep_alive_timeout)
            .with_keep_alive_while_idle(true);
        if let Some((name, password)) = &config.user {
            options = options.with_user(name.clone(), password.clone());
        }
        let connect = Client::connect(&config.endpoints, Some(options));
        let client = bounded("connect", config.call_timeout, connect).await?;
        Ok(EtcdRegistry { client, config })
    }

    /// The configuration in use.
    pub fn config(&self) -> &EtcdConfig {
        &self.config
    }

    /// The key prefix of `service`'s instances, ending in `/`.
    fn service_prefix(&self, service: &str) -> String {
        format!("{}/{}/", self.config.prefix, escape(service))
    }

    /// The key of one instance.
    fn key(&self, instance: &Instance) -> String {
        format!(
            "{}{}",
            self.service_prefix(&instance.service),
            escape(&instance.addr)
        )
    }

    /// Registers; see [`Registry::register`].
    pub async fn register(&self, instance: Instance, ttl: Duration) -> Result<LeaseId, Status> {
        self.config.limits.check(&instance, ttl)?;
        let value = serde_json::to_vec(&instance).map_err(|error| {
            Status::internal(format!("etcd registry: cannot encode instance: {error}"))
        })?;
        let key = self.key(&instance);
        let limit = self.config.call_timeout;
        let mut client = self.client.clone();
        let grant = bounded(
            "lease grant",
            limit,
            client.lease_grant(ttl_seconds(ttl), None),
        )
        .await?;
        let lease = grant.id();
        let options = PutOptions::new().with_lease(lease).with_prev_key();
        let put = match bounded("put", limit, client.put(key, value, Some(options))).await {
            Ok(put) => put,
            Err(status) => {
                // The put may have happened: revoking the new lease removes the
                // key if it did, and frees the lease either way.
                let _ = bounded("lease revoke", limit, client.lease_revoke(lease)).await;
                return Err(status);
            }
        };
        if let Some(previous) = put.prev_key() {
            let old_lease = previous.lease();
            if old_lease != 0 && old_lease != lease {
                // The key now hangs on the new lease, so revoking the old one
                // deletes nothing; it ends the previous incarnation's lease, as
                // the trait promises. Failing that, the old lease simply expires.
                if let Err(status) =
                    bounded("lease revoke", limit, client.lease_revoke(old_lease)).await
                {
                    tracing::debug!(%status, "etcd registry: could not revoke a replaced lease");
                }
            }
        }
        lease_id(lease)
    }

    /// Keeps a lease alive; see [`Registry::keep_alive`].
    pub async fn keep_alive(&self, lease: LeaseId) -> Result<Duration, Status> {
        let id = etcd_lease(lease)?;
        let mut client = self.client.clone();
        let round = async move {
            // Opening the stream already renews once (and fails if the lease is
            // gone); a second round reports the TTL granted.
            let (mut keeper, mut stream) = client.lease_keep_alive(id).await?;
            keeper.keep_alive().await?;
            Ok::<_, EtcdError>(stream.message().await?.map(|reply| reply.ttl()))
        };
        let reply = bounded("lease keep-alive", self.config.call_timeout, round)
            .await
            .map_err(|status| lease_lost(status, lease))?;
        match reply {
            Some(ttl) if ttl > 0 => Ok(Duration::from_secs(ttl.unsigned_abs())),
            _ => Err(lease_not_found(lease)),
        }
    }

    /// Revokes a lease; see [`Registry::deregister`].
    pub async fn deregister(&self, lease: LeaseId) -> Result<(), Status> {
        let id = etcd_lease(lease)?;
        let mut client = self.client.clone();
        bounded(
            "lease revoke",
            self.config.call_timeout,
            client.lease_revoke(id),
        )
        .await
        .map(|_| ())
        .map_err(|status| lease_lost(status, lease))
    }

    /// The current snapshot; see [`Registry::discover`].
    pub async fn discover(&self, service: &str) -> Result<Snapshot, Status> {
        let mut client = self.client.clone();
        let options = GetOptions::new().with_prefix();
        let reply = bounded(
            "range",
            self.config.call_timeout,
            client.get(self.service_prefix(service), Some(options)),
        )
        .await?;
        let revision = reply.header().map_or(0, |header| header.revision());
        let mut instances: Vec<Instance> = reply
            .kvs()
            .iter()
            .filter_map(|kv| match serde_json::from_slice::<Instance>(kv.value()) {
                Ok(instance) => Some(instance),
                Err(error) => {
                    // Someone else wrote under our prefix: skip it, loudly,
                    // rather than lose the whole service.
                    tracing::warn!(
                        key = %String::from_utf8_lossy(kv.key()),
                        %error,
                        "etcd registry: ignoring a value that is not an instance"
                    );
                    None
                }
            })
            .collect();
        instances.sort_by(|a, b| a.addr.cmp(&b.addr));
        Ok(Snapshot {
            revision: u64::try_from(revision).unwrap_or(0),
            instances,
        })
    }

    /// Waits for a change; see [`Registry::watch`].
    ///
    /// Watches from `after_revision + 1`, so changes made after the caller's
    /// snapshot but before this call are replayed from etcd's history, not
    /// missed. If etcd has compacted that history, the watch answers at once
    /// with the current snapshot (level-triggered: intermediate states are
    /// skipped, the latest is not). A revision etcd never issued (its data was
    /// wiped) is answered at once with the current, lower, snapshot.
    pub async fn watch(&self, service: &str, after_revision: u64) -> Result<Snapshot, Status> {
        let current = self.discover(service).await?;
        if current.revision < after_revision {
            return Ok(current);
        }
        // `current.revision` came from an i64, and is ≥ after_revision.
        let start = i64::try_from(after_revision).map_or(i64::MAX, |after| after + 1);
        let options = WatchOptions::new().with_prefix().with_start_revision(start);
        let mut client = self.client.clone();
        let mut stream = bounded(
            "watch",
            self.config.call_timeout,
            client.watch(self.service_prefix(service), Some(options)),
        )
        .await?;
        loop {
            let reply = stream
                .message()
                .await
                .map_err(|error| etcd_status("watch", error))?;
            let Some(reply) = reply else {
                return Err(Status::unavailable(
                    "etcd registry: watch stream ended (etcd restarting?)",
                ));
            };
            if reply.compact_revision() > 0 || !reply.events().is_empty() {
                // A change (or history we can no longer replay): answer with the
                // whole current list, read after the change.
                return self.discover(service).await;
            }
            if reply.canceled() {
                return Err(Status::unavailable(format!(
                    "etcd registry: watch cancelled by etcd: {}",
                    reply.cancel_reason()
                )));
            }
            // The creation acknowledgement or a progress notice: keep waiting.
        }
    }
}

impl Registry for EtcdRegistry {
    fn register(
        &self,
        instance: Instance,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<LeaseId, Status>> {
        Box::pin(EtcdRegistry::register(self, instance, ttl))
    }

    fn keep_alive(&self, lease: LeaseId) -> BoxFuture<'_, Result<Duration, Status>> {
        Box::pin(EtcdRegistry::keep_alive(self, lease))
    }

    fn deregister(&self, lease: LeaseId) -> BoxFuture<'_, Result<(), Status>> {
        Box::pin(EtcdRegistry::deregister(self, lease))
    }

    fn discover<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<Snapshot, Status>> {
        Box::pin(EtcdRegistry::discover(self, service))
    }

    fn watch<'a>(
        &'a self,
        service: &'a str,
        after_revision: u64,
    ) -> BoxFuture<'a, Result<Snapshot, Status>> {
        Box::pin(EtcdRegistry::watch(self, service, after_revision))
    }
}

/// Runs one etcd call within `limit`, mapping its error to a [`Status`].
async fn bounded<T>(
    operation: &str,
    limit: Duration,
    call: impl Future<Output = Result<T, EtcdError>>,
) -> Result<T, Status> {
    match tokio::time::timeout(limit, call).await {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(error)) => Err(etcd_status(operation, error)),
        Err(_elapsed) => Err(Status::deadline_exceeded(format!(
            "etcd registry: {operation} took longer than {limit:?}"
        ))),
    }
}

/// An etcd client error in the [`Registry`] vocabulary. A lost lease comes
/// back from etcd as gRPC `NotFound` (revoke) or as a keep-alive error saying
/// so; everything about reaching etcd is `Unavailable`.
fn etcd_status(operation: &str, error: EtcdError) -> Status {
    use tonic::Code as Grpc;
    let message = format!("etcd registry: {operation} failed: {error}");
    match &error {
        EtcdError::GRpcStatus(status) => match status.code() {
            Grpc::NotFound => Status::not_found(message),
            Grpc::InvalidArgument | Grpc::OutOfRange => Status::invalid_argument(message),
            Grpc::ResourceExhausted => Status::resource_exhausted(message),
            Grpc::DeadlineExceeded => Status::deadline_exceeded(message),
            Grpc::Unauthenticated | Grpc::PermissionDenied => Status::unauthenticated(message),
            _ => Status::unavailable(message),
        },
        EtcdError::LeaseKeepAliveError(reason) if reason.contains("not found") => {
            Status::not_found(message)
        }
        EtcdError::InvalidArgs(_) | EtcdError::InvalidUri(_) => Status::invalid_argument(message),
        _ => Status::unavailable(message),
    }
}

/// Re-words a `NotFound` as the trait's "lease lost; register again".
fn lease_lost(status: Status, lease: LeaseId) -> Status {
    if status.code() == crate::Code::NotFound {
        return lease_not_found(lease);
    }
    status
}

/// `NotFound` for a lease, telling the holder what to do.
fn lease_not_found(lease: LeaseId) -> Status {
    Status::not_found(format!(
        "etcd registry: {lease} is unknown or expired; register again"
    ))
}

/// A trait lease id as etcd's `int64`; one etcd never issued is `NotFound`.
fn etcd_lease(lease: LeaseId) -> Result<i64, Status> {
    i64::try_from(lease.0).map_err(|_| lease_not_found(lease))
}

/// An etcd lease id as the trait's; etcd issues positive ids only.
fn lease_id(lease: i64) -> Result<LeaseId, Status> {
    u64::try_from(lease)
        .map(LeaseId)
        .map_err(|_| Status::internal(format!("etcd registry: etcd granted lease id {lease}")))
}

/// etcd leases are whole seconds: round up, so a lease never lives shorter
/// than asked (etcd may also raise it to its minimum, about 1.5 s, rounded).
fn ttl_seconds(ttl: Duration) -> i64 {
    let seconds = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    i64::try_from(seconds.max(1)).unwrap_or(i64::MAX)
}

/// A key segment: `%`, `/` and `:` escaped, everything else as is.
fn escape(segment: &str) -> String {
    let mut escaped = String::with_capacity(segment.len());
    for character in segment.chars() {
        match character {
            '%' => escaped.push_str("%25"),
            '/' => escaped.push_str("%2F"),
            ':' => escaped.push_str("%3A"),
            other => escaped.push(other),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_segments_cannot_collide_across_services() {
        // Proves the escaping is injective where it matters: service `a` with
        // address `b/c` and service `a/b` with address `c` get different keys.
        let one = format!("{}/{}", escape("a"), escape("b/c"));
        let two = format!("{}/{}", escape("a/b"), escape("c"));
        assert_ne!(one, two);
        assert_eq!(escape("10.0.0.7:7000"), "10.0.0.7%3A7000");
        assert_eq!(escape("50%"), "50%25");
    }

    #[test]
    fn ttl_rounds_up_to_whole_seconds() {
        assert_eq!(ttl_seconds(Duration::from_millis(100)), 1);
        assert_eq!(ttl_seconds(Duration::from_millis(2000)), 2);
        assert_eq!(ttl_seconds(Duration::from_millis(2001)), 3);
    }
}

/// Against a real etcd (`SQUALL_ETCD_ENDPOINTS`, as `tests/etcd.rs`): what
/// needs the raw client, which the public API does not expose.
#[cfg(test)]
mod live_tests {
    use super::*;
    use crate::SeedSource;

    #[tokio::test]
    async fn watch_after_a_compacted_revision_answers_with_the_current_snapshot() {
        // Proves the watch-gap defence: when etcd has compacted away the
        // history after the caller's revision, the watch cannot replay it, and
        // answers at once with the whole current list instead of failing or
        // waiting for a change that already happened.
        let Ok(endpoints) = std::env::var("SQUALL_ETCD_ENDPOINTS") else {
            let required = std::env::var("SQUALL_ETCD_REQUIRED").is_ok_and(|value| value == "1");
            assert!(
                !required,
                "SQUALL_ETCD_REQUIRED=1 but SQUALL_ETCD_ENDPOINTS is unset: run tests/etcd/run.sh"
            );
            eprintln!("skipped: no etcd (set SQUALL_ETCD_ENDPOINTS, or run tests/etcd/run.sh)");
            return;
        };
        let prefix = format!("/squall-test/{:016x}", SeedSource::from_os().seed());
        let endpoints: Vec<String> = endpoints.split(',').map(str::to_owned).collect();
        let registry = EtcdRegistry::connect(EtcdConfig::new(endpoints).with_prefix(prefix))
            .await
            .unwrap();
        let ttl = Duration::from_secs(30);
        let lease = registry
            .register(Instance::new("compacted", "10.0.0.1:7000"), ttl)
            .await
            .unwrap();
        let before = registry.discover("compacted").await.unwrap();
        registry.deregister(lease).await.unwrap();
        registry
            .register(Instance::new("compacted", "10.0.0.2:7000"), ttl)
            .await
            .unwrap();
        let now = registry.discover("compacted").await.unwrap();
        let mut client = registry.client.clone();
        client
            .compact(i64::try_from(now.revision).unwrap(), None)
            .await
            .unwrap();
        let answer = tokio::time::timeout(
            Duration::from_secs(10),
            registry.watch("compacted", before.revision),
        )
        .await
        .expect("a compacted watch answers at once")
        .unwrap();
        assert_eq!(answer.addrs(), ["10.0.0.2:7000"]);
        assert!(answer.revision >= now.revision);
    }
}
