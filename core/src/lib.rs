//! Squall: an RPC framework whose every behaviour is proven in a seeded,
//! deterministic network simulation before the same code ships over real TCP.
//!
//! # Layout
//! - [`protocol`]: the frame (see `docs/PROTOCOL.md`), its codec, payload codecs.
//! - [`status`]: [`Status`] and [`Code`], with retryability and may-have-executed.
//! - [`transport`]: the [`Transport`] trait and real [`Tcp`].
//! - [`server`]: [`Server`], the `Service.Method` [`Router`], built-in middleware.
//! - [`client`]: the multiplexed [`Channel`], [`Pool`], the typed [`Client`].
//! - [`context`]: the per-call [`Context`] and deadline propagation.
//! - [`registry`]: service discovery — the [`Registry`] trait, [`MemoryRegistry`],
//!   and the server/client helpers [`Registrar`] and [`Resolver`].
//! - [`discovery`]: [`ServiceClient`], the discovery-aware client: calls a
//!   service by name across its instances (balancing, breakers, retries, hedging).
//! - [`balance`]: the [`Balancer`] trait and six load balancers ([`BalancerKind`]).
//! - [`resilience`]: pure policy state machines — [`CircuitBreaker`], [`Backoff`],
//!   [`RetryBudget`], [`RetryPolicy`], [`FailMode`], [`HedgePolicy`].
//! - [`rng`]: named, seeded random streams ([`SeedSource`]).
//! - `http` (feature `http`): JSON-RPC 2.0 over HTTP/1.1 for any [`Router`]
//!   (hyper, not squall, reads the wall clock there, for the `Date` header).
//! - [`observe`]: built-in per-call tracing spans, trace context across hops
//!   ([`observe::TraceContext`]), metrics through the `metrics` facade (feature).
//! - [`service`]: `#[squall::service]`, a trait in, server glue and a typed
//!   client out (guide: `docs/API.md`).
//! - [`prelude`]: `use squall::prelude::*;` for the common path.
//!
//! Core spawns no threads, reads no wall clock and takes no OS randomness except
//! in [`SeedSource::from_os`]; that is what lets `sim` replay a run exactly.
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![forbid(unsafe_code)]

pub mod balance;
pub mod client;
mod conn;
pub mod context;
pub mod discovery;
#[cfg(feature = "http")]
pub mod http;
pub mod observe;
pub mod prelude;
pub mod protocol;
pub mod registry;
pub mod resilience;
pub mod rng;
pub mod server;
pub mod status;
pub mod transport;

pub use balance::{Balancer, BalancerKind, Endpoint, Pick};
pub use client::{CallOptions, Caller, Channel, ChannelConfig, Client, Pool};
pub use context::Context;
pub use discovery::{DiscoveryEvent, ServiceClient, ServiceClientConfig};
pub use protocol::Codec;
pub use registry::{
    Instance, LeaseId, MemoryRegistry, Registrar, Registry, RegistryEvent, RemoteRegistry,
    Resolver, Snapshot,
};
pub use resilience::{
    Backoff, BreakerConfig, BreakerState, BudgetConfig, CircuitBreaker, FailMode, HedgePolicy,
    Jitter, RetryBudget, RetryDecision, RetryPolicy,
};
pub use rng::SeedSource;
pub use server::{Router, Server};
pub use status::{Code, Status};
pub use transport::{Connection, Listener, Tcp, Transport};

/// Defines a service from a trait: server registration and a typed client.
///
/// ```
/// use squall::{Context, Status};
///
/// #[squall::service]
/// trait Arith {
///     /// `Arith.Multiply`.
///     async fn multiply(&self, ctx: Context, a: i64, b: i64) -> Result<i64, Status>;
/// }
/// ```
///
/// generates, next to the trait (whose `async fn`s become
/// `fn … -> impl Future<Output = …> + Send`, so handlers run on any worker):
/// - `ArithServer<T: Arith>`: `ArithServer::new(implementation)` is a
///   [`ServiceDef`](server::ServiceDef) for [`Router::register`] and converts
///   into a [`Router`] (so [`Server::new`] takes it directly);
/// - `ArithClient<C: Caller>`: `ArithClient::new(caller)` (or `from_client`, or
///   `ArithClient::connect(addr)` over TCP) with one method per RPC,
///   `client.multiply(7, 8)`, returning a [`CallHandle`](client::CallHandle)
///   that is already sent: await it now or later; dropping it cancels;
/// - `ArithCall`: `client.with_options(CallOptions::new().timeout(d)).multiply(7, 8)`.
///
/// **Naming rule**: `{service}.{Method}`, where the service is the trait's
/// name and the method the UpperCamelCase of the Rust name (`get_all` →
/// `GetAll`). Override with `#[squall::service(name = "KV")]` on the trait and
/// `#[method = "Fetch"]` on a method.
///
/// **Arguments**: one argument goes on the wire as itself; several go as a
/// tuple `(a, b)` (the same bytes as `Router::route`'s `(a, b): (i64, i64)`
/// and the string client's `&(7, 8)`); none as `()`. The `Context` first is
/// optional.
///
/// **Idempotency**: a method is *not* idempotent unless it says
/// `#[idempotent]` (or `#[idempotent(true)]`): retries and hedges never re-send
/// a call that may have run unless the method is declared safe to repeat.
/// `#[idempotent(false)]` says the default explicitly.
///
/// **`crate = "..."`**: generated code names squall as `::squall`; inside a
/// crate that renames it, say `#[squall::service(crate = "my_squall")]`.
///
/// The full guide, with middleware and options: `docs/API.md`.
pub use squall_macros::service;

/// `docs/API.md`, compiled and run as doctests so the guide cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../docs/API.md")]
pub struct ApiGuide;
