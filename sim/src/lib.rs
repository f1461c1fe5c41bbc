//! Squall's deterministic simulation harness: the unchanged squall core — and
//! the user's own service on it — inside a seeded turmoil network, driven by
//! scenario files. Any run replays exactly from its seed.
//!
//! # Testing your service
//! ```ignore
//! use sim::{ClientEnv, ServerEnv, Simulation};
//!
//! #[test]
//! fn kv_survives_a_partition() {
//!     Simulation::from_file("scenarios/kv-partition.toml").unwrap()
//!         .server("kv", |env: &ServerEnv| my_kv::router(env))
//!         .client("client", my_kv::workload)
//!         .invariant("no stale reads", my_kv::no_stale_reads)
//!         .test(); // pinned seeds, each twice; on failure: verdicts + `SQUALL_SEED=… cargo test …`
//! }
//! ```
//! `docs/TESTING.md` walks through it from an empty crate.
//!
//! # Layout
//! - [`simulation`]: the public builder — [`Simulation`] with the user's router
//!   factories, workloads and invariants — and [`testing`]: `test()`,
//!   `explore`, shards, determinism checks, replay instructions.
//! - [`env`]: what user code receives: [`ServerEnv`], [`ClientEnv`], [`RunView`], [`Tracer`].
//! - `world`: one run — build the turmoil world, step it (faults), evaluate it.
//! - [`host`]: host programs: the server/client/registry hosts, and the built-in
//!   echo router and workload (one more user of the API).
//! - [`scenario`]: the scenario file format, parsing and validation.
//! - [`expect`]: expectations evaluated on the trace.
//! - [`report`]: the self-contained HTML timeline of a run.
//! - [`shrink`]: a failing run reduced to a smaller scenario that still fails.
//! - [`real`]: real-TCP mode — the same hosts over loopback through per-link
//!   fault proxies, in wall-clock time; simulated and real verdicts compared.
//! - [`net`]: the turmoil [`squall::Transport`]; [`sockets`]: every connection's
//!   halves, closed in a deterministic order when a host crashes.
//! - [`recorder`] and [`trace`]: the event log, its text form and hash.
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![forbid(unsafe_code)]

pub mod env;
pub mod expect;
pub mod host;
pub mod net;
pub mod real;
pub mod recorder;
pub mod report;
pub mod scenario;
pub mod shrink;
pub mod simulation;
pub mod sockets;
pub mod testing;
pub mod trace;
mod world;

pub use env::{ClientEnv, RunView, ServerEnv, Tracer};
pub use host::client::SimCaller;
pub use real::{Comparison, RealOptions};
pub use scenario::Scenario;
pub use simulation::{IntoServer, Simulation};
pub use testing::{ExploreReport, Shard};
pub use world::{RunError, RunOutcome, HARNESS};

/// Runs `scenario` at `seed` with the built-in echo server and workload
/// everywhere: shorthand for `Simulation::new(scenario.clone()).run(seed)`.
pub fn run(scenario: &Scenario, seed: u64) -> Result<RunOutcome, RunError> {
    Simulation::new(scenario.clone()).run(seed)
}
