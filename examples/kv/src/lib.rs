//! A replicated key-value store on squall, and how it is tested under faults
//! with `sim` — the worked example of `docs/TESTING.md`.
//!
//! # The service
//! `N` replicas (the server group `kv`), any of which coordinates a call:
//! - `KV.Put {key, version, value}`: the coordinator stores the value, sends
//!   `KV.Replicate` to every peer, and acknowledges once `write_quorum`
//!   replicas (itself included) hold it.
//! - `KV.Get key`: the coordinator reads its own copy and asks peers
//!   (`KV.Fetch`) until `read_quorum` replicas answered; the highest version wins.
//!
//! With `write_quorum + read_quorum > N`, every read quorum meets every write
//! quorum, so a read that starts after a write was acknowledged returns that
//! write or a newer one. Memory is lost on a crash: a restarted replica
//! recovers (`KV.Dump` from every peer) before it serves reads or takes part
//! in read quorums.
//!
//! Versions come from the writer: each client host owns its keys and numbers
//! its writes, so versions of a key only grow.
//!
//! # The deliberate bug
//! [`KvConfig::ack_before_replicate`] acknowledges a put as soon as the
//! coordinator stored it, replicating in the background. The simulation
//! catches it: under a partition a read quorum that missed the write returns
//! older data ([`no_stale_reads`] fails).
//!
//! # Layout
//! - [`Kv`] and [`Peer`]: the two halves of the `KV` service as
//!   `#[squall::service]` traits (clients call `Kv`, replicas call `Peer`).
//! - [`replica`]: the server side (the router factory).
//! - [`workload`]: the client side, the [`History`] it keeps, the invariant.

pub mod replica;
pub mod workload;

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sim::{ClientEnv, ServerEnv, Simulation};
use squall::{Context, Status};

pub use workload::{no_stale_reads, History};

/// How the store is configured (the same struct in production and in tests).
#[derive(Clone, Copy, Debug)]
pub struct KvConfig {
    /// Replicas that must hold a write before it is acknowledged (itself included).
    pub write_quorum: usize,
    /// Replicas whose answers a read waits for (itself included).
    pub read_quorum: usize,
    /// THE BUG, for demonstration: acknowledge a put once the coordinator has
    /// stored it, replicating in the background.
    pub ack_before_replicate: bool,
    /// How long a coordinator waits for one peer.
    pub peer_timeout: Duration,
}

impl Default for KvConfig {
    fn default() -> KvConfig {
        KvConfig {
            write_quorum: 2,
            read_quorum: 2,
            ack_before_replicate: false,
            peer_timeout: Duration::from_millis(300),
        }
    }
}

/// `KV.Put`'s argument and `KV.Replicate`'s.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Put {
    /// The key.
    pub key: String,
    /// The writer's version: only a higher version replaces a stored value.
    pub version: u64,
    /// The value.
    pub value: String,
}

/// A stored value and its version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versioned {
    /// The writer's version.
    pub version: u64,
    /// The value.
    pub value: String,
}

/// What clients call. Both methods are idempotent: a put carries the writer's
/// version, so applying it twice stores the same thing, and a read changes
/// nothing; retries may re-send either after a failure that may have run it.
#[squall::service(name = "KV")]
pub trait Kv {
    /// `KV.Put`: stores `put` on this replica and its peers; acknowledges
    /// (with the version) once `write_quorum` replicas hold it.
    #[idempotent]
    async fn put(&self, ctx: Context, put: Put) -> Result<u64, Status>;
    /// `KV.Get`: the newest version among `read_quorum` replicas' copies.
    #[idempotent]
    async fn get(&self, ctx: Context, key: String) -> Result<Option<Versioned>, Status>;
}

/// What a replica calls on its peers, under the same service name. Each is
/// idempotent: storing a version twice, or reading, changes nothing more.
#[squall::service(name = "KV")]
pub trait Peer {
    /// `KV.Replicate`: store `put` here if it is newer.
    #[idempotent]
    async fn replicate(&self, put: Put) -> Result<(), Status>;
    /// `KV.Fetch`: this replica's copy of `key`.
    #[idempotent]
    async fn fetch(&self, key: String) -> Result<Option<Versioned>, Status>;
    /// `KV.Dump`: every key this replica holds, for a restarted peer.
    #[idempotent]
    async fn dump(&self) -> Result<Vec<(String, Versioned)>, Status>;
}

/// The scenario files this crate's tests run, in the workspace's `scenarios/`.
pub fn scenario_path(file: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../scenarios")
        .join(file)
}

/// The simulation of `file` with this store on server group `kv`, its
/// workload on client group `client`, and its invariant.
pub fn simulation(file: &str, config: KvConfig) -> Simulation {
    Simulation::from_file(scenario_path(file))
        .unwrap_or_else(|e| panic!("{e:#}"))
        .server("kv", move |env: &ServerEnv| replica::router(env, config))
        .client("client", |env: ClientEnv| workload::run(env))
        .invariant("no stale reads", no_stale_reads)
}
