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
