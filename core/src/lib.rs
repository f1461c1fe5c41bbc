//! Squall: an RPC framework whose every behaviour is proven in a seeded,
//! deterministic network simulation before the same code ships over real TCP.
//!
//! # Layout
//! - [`protocol`]: the frame (see `docs/PROTOCOL.md`), its codec, payload codecs.
//! - [`status`]: [`Status`] and [`Code`], with retryability and may-have-executed.
//! - [`transport`]: the [`Transport`] trait and real [`Tcp`].
//! - [`rng`]: named, seeded random streams ([`SeedSource`]).
//! - [`registry`]: service discovery — the [`Registry`] trait, [`MemoryRegistry`],
//!   and the server/client helpers [`Registrar`] and [`Resolver`].
//!
//! Core spawns no threads, reads no wall clock and takes no OS randomness except
//! in [`SeedSource::from_os`]; that is what lets `sim` replay a run exactly.
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![forbid(unsafe_code)]

pub mod protocol;
pub mod registry;
pub mod rng;
pub mod status;
pub mod transport;

pub use protocol::Codec;
pub use registry::{
    Instance, LeaseId, MemoryRegistry, Registrar, Registry, RegistryEvent, Resolver, Snapshot,
};
pub use rng::SeedSource;
pub use status::{Code, Status};
pub use transport::{Connection, Listener, Tcp, Transport};
