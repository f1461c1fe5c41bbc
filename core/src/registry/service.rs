//! The registry as a squall service: [`router`] serves a [`MemoryRegistry`]
//! under `Registry.*`, and [`RemoteRegistry`] implements the [`Registry`] trait
//! by calling it. In the simulation the registry is then a host of its own, so
//! it can be partitioned, crashed and restarted like any server.
//!
//! # Authentication
//!
//! [`router`] is open; [`authenticated_router`] refuses calls without one of
//! its tokens in the `authorization` metadata, which
//! [`RemoteRegistry::with_token`] sends; [`router_with_credentials`] also
//! confines each token to registering its own services. Beyond the token, a lease id is the
//! proof of ownership of a registration: ids are random (see
//! [`MemoryRegistryBuilder::lease_ids_from`](super::MemoryRegistryBuilder::lease_ids_from))
//! and never returned to anyone but the registrant. `docs/REGISTRY.md`,
//! "Security", says what this does and does not protect against.
//!
//! # Lost leases versus unknown methods
//!
//! The server's router answers an unknown method with `NotFound`, and the
//! [`Registry`] trait uses `NotFound` for a lost lease. Over the wire the two
//! must not be confused: a client pointed at a server that is not a registry
//! would otherwise "lose its lease" forever and re-register in a loop. So the
//! service sends a lost lease as `FailedPrecondition` (the gRPC code for "the
//! system is not in the state the call needs"), and [`RemoteRegistry`] maps it
//! back to `NotFound`, keeping the trait's contract. A `NotFound` on the wire can
//! then only mean the method is unknown; the client reports it as
//! `Unimplemented`, naming the address that is not a registry.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::{de::DeserializeOwned, Serialize};

use super::proto::{
    self, DeregisterReply, DeregisterRequest, DiscoverRequest, KeepAliveReply, KeepAliveRequest,
    RegisterReply, RegisterRequest, WatchRequest,
};
use super::{Instance, LeaseId, MemoryRegistry, Registry, Snapshot};
use crate::client::{CallOptions, Caller, Client};
use crate::context::Context;
use crate::server::middleware::{token_matches, AUTHORIZATION};
use crate::{Code, Router, Status};

/// A [`Router`] serving `registry` under `Registry.Register`, `.KeepAlive`,
/// `.Deregister`, `.Discover` and `.Watch` (see [`proto`]) to anyone who can
/// connect. Merge it into a server's router or serve it alone:
/// `Server::new(router(registry))`.
///
/// Open: any peer may register any instance. Outside a trusted network (and
/// the simulation), serve [`authenticated_router`] instead.
pub fn router(registry: MemoryRegistry) -> Router {
    routes(registry, Arc::new(RegistryCredentials::new()))
}

/// [`router`], but every call must carry one of `tokens` in its
/// [`AUTHORIZATION`] metadata ([`RemoteRegistry::with_token`] sends it); any
/// other call is refused as `Unauthenticated` (not executed, not retryable)
/// before it reaches the registry. Tokens are compared in constant time.
/// Each token may register instances of any service; to confine a token to
/// its own services, use [`router_with_credentials`].
///
/// Reads (`Discover`, `Watch`) need a token too: the instance list is a map of
/// the deployment.
///
/// # Panics
/// If `tokens` is empty or holds an empty token: a registry that requires a
/// token nobody can present is a configuration mistake found at start-up.
pub fn authenticated_router(
    registry: MemoryRegistry,
    tokens: impl IntoIterator<Item = String>,
) -> Router {
    let credentials = tokens
        .into_iter()
        .fold(RegistryCredentials::new(), RegistryCredentials::token);
    router_with_credentials(registry, credentials)
}

/// [`authenticated_router`] with per-token scopes: a token given with
/// [`RegistryCredentials::token_for`] may register instances of its services
/// only (anything else is `PermissionDenied`), so a compromised server can
/// neither list a rogue instance of another service nor replace another
/// service's registration. Every valid token may read, and renew or revoke a
/// lease it holds (the lease id is the proof of ownership).
///
/// # Panics
/// If `credentials` holds no token, or an empty one.
pub fn router_with_credentials(
    registry: MemoryRegistry,
    credentials: RegistryCredentials,
) -> Router {
    assert!(
        !credentials.entries.is_empty()
            && credentials
                .entries
                .iter()
                .all(|entry| !entry.token.is_empty()),
        "registry service: needs at least one non-empty token"
    );
    routes(registry, Arc::new(credentials))
}

/// The tokens an authenticated registry service accepts, each with the
/// services it may register.
#[derive(Clone, Default)]
pub struct RegistryCredentials {
    /// Every accepted token; all are compared on every call.
    entries: Vec<Credential>,
}

/// One accepted token.
#[derive(Clone)]
struct Credential {
    /// The secret.
    token: String,
    /// The services it may register; `None` means any.
    services: Option<BTreeSet<String>>,
}

impl fmt::Debug for RegistryCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scopes: Vec<_> = self
            .entries
            .iter()
            .map(|entry| entry.services.as_ref())
            .collect();
        f.debug_struct("RegistryCredentials")
            .field("tokens", &"<redacted>")
            .field("scopes", &scopes)
            .finish()
    }
}

impl RegistryCredentials {
    /// No tokens yet.
    pub fn new() -> RegistryCredentials {
        RegistryCredentials::default()
    }

    /// Accepts `token` for every service.
    pub fn token(mut self, token: impl Into<String>) -> RegistryCredentials {
        self.entries.push(Credential {
            token: token.into(),
            services: None,
        });
        self
    }

    /// Accepts `token`, which may register instances of `services` only.
    pub fn token_for(
        mut self,
        token: impl Into<String>,
        services: impl IntoIterator<Item = impl Into<String>>,
    ) -> RegistryCredentials {
        self.entries.push(Credential {
            token: token.into(),
            services: Some(services.into_iter().map(Into::into).collect()),
        });
        self
    }

    /// The credential `presented` matches, comparing it with every token in
    /// constant time (no early exit: the time does not say which one matched).
    fn find(&self, presented: &str) -> Option<&Credential> {
        let mut found = None;
        for entry in &self.entries {
            let matches = token_matches(presented, std::slice::from_ref(&entry.token));
            found = found.or(matches.then_some(entry));
        }
        found
    }
}

/// The five routes, each checking `credentials` first (none: open).
fn routes(registry: MemoryRegistry, credentials: Arc<RegistryCredentials>) -> Router {
    let register = (registry.clone(), Arc::clone(&credentials));
    let keep_alive = (registry.clone(), Arc::clone(&credentials));
    let deregister = (registry.clone(), Arc::clone(&credentials));
    let discover = (registry.clone(), Arc::clone(&credentials));
    let watch = (registry, credentials);
    Router::new()
        .route(
            proto::METHOD_REGISTER,
            move |ctx, request: RegisterRequest| {
                let (registry, credentials) = register.clone();
                async move {
                    let scope = authenticate(&ctx, &credentials)?;
                    may_register(&ctx, scope, &request.instance.service)?;
                    proto::serve_register(&registry, request).await
                }
            },
        )
        .route(proto::METHOD_KEEP_ALIVE, move |ctx, request| {
            let (registry, credentials) = keep_alive.clone();
            async move {
                authenticate(&ctx, &credentials)?;
                proto::serve_keep_alive(&registry, request)
                    .await
                    .map_err(lease_lost_on_the_wire)
            }
        })
        .route(proto::METHOD_DEREGISTER, move |ctx, request| {
            let (registry, credentials) = deregister.clone();
            async move {
                authenticate(&ctx, &credentials)?;
                proto::serve_deregister(&registry, request)
                    .await
                    .map_err(lease_lost_on_the_wire)
            }
        })
        .route(proto::METHOD_DISCOVER, move |ctx, request| {
            let (registry, credentials) = discover.clone();
            async move {
                authenticate(&ctx, &credentials)?;
                proto::serve_discover(&registry, request).await
            }
        })
        .route(proto::METHOD_WATCH, move |ctx, request| {
            let (registry, credentials) = watch.clone();
            async move {
                authenticate(&ctx, &credentials)?;
                proto::serve_watch(&registry, request).await
            }
        })
}

/// Admits the call if no tokens are configured (`Ok(None)`: any service) or
/// it carries one of them (`Ok(scope)` of that token).
fn authenticate<'a>(
    ctx: &Context,
    credentials: &'a RegistryCredentials,
) -> Result<Option<&'a BTreeSet<String>>, Status> {
    if credentials.entries.is_empty() {
        return Ok(None);
    }
    let refused = match ctx.get(AUTHORIZATION) {
        Some(token) => match credentials.find(token) {
            Some(credential) => return Ok(credential.services.as_ref()),
            None => "an invalid token",
        },
        None => "no token",
    };
    Err(Status::unauthenticated(format!(
        "registry: {} refused: the call carries {refused} in `{AUTHORIZATION}` metadata",
        ctx.method()
    ))
    .not_executed()
    .with_retryable(false))
}

/// Refuses a registration outside the token's services.
fn may_register(
    ctx: &Context,
    scope: Option<&BTreeSet<String>>,
    service: &str,
) -> Result<(), Status> {
    match scope {
        Some(services) if !services.contains(service) => Err(Status::new(
            Code::PermissionDenied,
            format!(
                "registry: {} refused: this token may not register instances of {service:?}",
                ctx.method()
            ),
        )
        .not_executed()
        .with_retryable(false)),
        _ => Ok(()),
    }
}

/// The registry's `NotFound` (unknown or expired lease) as sent on the wire:
/// `FailedPrecondition`, so it cannot be mistaken for an unknown method.
fn lease_lost_on_the_wire(status: Status) -> Status {
    if status.code() == Code::NotFound {
        return rebuild(Code::FailedPrecondition, status.message(), &status);
    }
    status
}

/// A status with `code` and `message` and the retry properties of `like`.
fn rebuild(code: Code, message: impl Into<String>, like: &Status) -> Status {
    let status = Status::new(code, message).with_retryable(like.is_retryable());
    if like.may_have_executed() {
        status.executed()
    } else {
        status.not_executed()
    }
}

/// How a [`RemoteRegistry`] calls the registry service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteRegistryConfig {
    /// Bound on every call but a watch (connect included). Default 2 s: a
    /// registry that takes longer is as good as down, and the registrar's and
    /// resolver's own timeouts (≥ 1 s) should be what fires first.
    pub call_timeout: Duration,
    /// How long one watch long-poll may wait at the server (`wait_ms`); the call
    /// is bounded by `watch_wait + call_timeout`. A quiet watch is re-sent, so
    /// [`Registry::watch`] still waits as long as it takes. Default 5 s: below the
    /// resolver's 10 s `watch_timeout`, so a long-poll is answered by the server
    /// rather than abandoned by the client (which would cost a cancel frame).
    pub watch_wait: Duration,
}

impl Default for RemoteRegistryConfig {
    fn default() -> RemoteRegistryConfig {
        RemoteRegistryConfig {
            call_timeout: Duration::from_secs(2),
            watch_wait: Duration::from_secs(5),
        }
    }
}

/// A [`Registry`] served by squall at the other end of `C` (a [`Pool`] or
/// [`Channel`] to the registry's address, or a discovery-aware client).
///
/// Errors: the server's statuses pass through, except that a lost lease comes
/// back as `NotFound` (as the trait requires) and a server without the
/// registry's methods is `Unimplemented` (see the module docs). A call that
/// takes longer than its bound is `DeadlineExceeded`.
///
/// [`Pool`]: crate::Pool
/// [`Channel`]: crate::Channel
#[derive(Clone)]
pub struct RemoteRegistry<C: Caller> {
    /// The typed client over the caller.
    client: Client<C>,
    /// Timeouts.
    config: RemoteRegistryConfig,
    /// Sent as [`AUTHORIZATION`] metadata on every call, if set.
    token: Option<Arc<str>>,
}

impl<C: Caller + fmt::Debug> fmt::Debug for RemoteRegistry<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteRegistry")
            .field("caller", self.client.caller())
            .field("config", &self.config)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl<C: Caller> RemoteRegistry<C> {
    /// A registry client over `caller` with default timeouts.
    pub fn new(caller: C) -> RemoteRegistry<C> {
        RemoteRegistry::with_config(caller, RemoteRegistryConfig::default())
    }

    /// A registry client over `caller` with `config`.
    pub fn with_config(caller: C, config: RemoteRegistryConfig) -> RemoteRegistry<C> {
        RemoteRegistry {
            client: Client::new(caller).with_timeout(None),
            config,
            token: None,
        }
    }

    /// Sends `token` with every call, for a registry served by
    /// [`authenticated_router`].
    pub fn with_token(mut self, token: impl Into<String>) -> RemoteRegistry<C> {
        self.token = Some(Arc::from(token.into()));
        self
    }

    /// The timeouts in use.
    pub fn config(&self) -> &RemoteRegistryConfig {
        &self.config
    }

    /// Calls `method`, bounded by `bound` (connect included), and maps the
    /// wire's statuses back to the trait's vocabulary.
    async fn call<A: Serialize, R: DeserializeOwned>(
        &self,
        method: &str,
        args: &A,
        bound: Duration,
        idempotent: bool,
    ) -> Result<R, Status> {
        let mut options = CallOptions::new().timeout(bound);
        if idempotent {
            options = options.idempotent();
        }
        if let Some(token) = &self.token {
            options = options.metadata(AUTHORIZATION, token.as_ref());
        }
        let call = self.client.go_with(method, args, options);
        match tokio::time::timeout(bound, call).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(status)) => Err(from_the_wire(method, status)),
            Err(_elapsed) => Err(Status::deadline_exceeded(format!(
                "registry: {method} took longer than {bound:?}"
            ))),
        }
    }
}

/// Maps a status from the registry service back to the [`Registry`] contract.
fn from_the_wire(method: &str, status: Status) -> Status {
    match status.code() {
        Code::FailedPrecondition => rebuild(Code::NotFound, status.message(), &status),
        Code::NotFound => rebuild(
            Code::Unimplemented,
            format!(
                "registry: {method} is not served there (is it a squall registry service?): {}",
                status.message()
            ),
            &status,
        ),
        _ => status,
    }
}

impl<C: Caller> Registry for RemoteRegistry<C> {
    fn register(
        &self,
        instance: Instance,
        ttl: Duration,
    ) -> BoxFuture<'_, Result<LeaseId, Status>> {
        Box::pin(async move {
            let request = RegisterRequest {
                instance,
                ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
            };
            let reply: RegisterReply = self
                .call(
                    proto::METHOD_REGISTER,
                    &request,
                    self.config.call_timeout,
                    false,
                )
                .await?;
            Ok(reply.lease_id)
        })
    }

    fn keep_alive(&self, lease: LeaseId) -> BoxFuture<'_, Result<Duration, Status>> {
        Box::pin(async move {
            let request = KeepAliveRequest { lease_id: lease };
            let reply: KeepAliveReply = self
                .call(
                    proto::METHOD_KEEP_ALIVE,
                    &request,
                    self.config.call_timeout,
                    true,
                )
                .await?;
            Ok(Duration::from_millis(reply.ttl_ms))
        })
    }

    fn deregister(&self, lease: LeaseId) -> BoxFuture<'_, Result<(), Status>> {
        Box::pin(async move {
            let request = DeregisterRequest { lease_id: lease };
            let _: DeregisterReply = self
                .call(
                    proto::METHOD_DEREGISTER,
                    &request,
                    self.config.call_timeout,
                    true,
                )
                .await?;
            Ok(())
        })
    }

    fn discover<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<Snapshot, Status>> {
        Box::pin(async move {
            let request = DiscoverRequest {
                service: service.to_owned(),
            };
            self.call(
                proto::METHOD_DISCOVER,
                &request,
                self.config.call_timeout,
                true,
            )
            .await
        })
    }

    fn watch<'a>(
        &'a self,
        service: &'a str,
        after_revision: u64,
    ) -> BoxFuture<'a, Result<Snapshot, Status>> {
        Box::pin(async move {
            // At least 100 ms, so a zero setting cannot make the loop below spin.
            let wait = self
                .config
                .watch_wait
                .clamp(Duration::from_millis(100), proto::WATCH_WAIT_MAX);
            let request = WatchRequest {
                service: service.to_owned(),
                after_revision,
                wait_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            };
            let bound = wait.saturating_add(self.config.call_timeout);
            // A quiet long-poll answers with the revision we already have: ask
            // again. Any other revision (higher, or lower after a registry
            // restart) is an answer. The loop ends when the caller drops us.
            loop {
                let snapshot: Snapshot = self
                    .call(proto::METHOD_WATCH, &request, bound, true)
                    .await?;
                if snapshot.revision != after_revision {
                    return Ok(snapshot);
                }
            }
        })
    }
}
