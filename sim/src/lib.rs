//! Squall's deterministic simulation harness: the unchanged squall core inside a
//! seeded turmoil network, driven by scenario files.
//!
//! # Layout
//! - [`scenario`]: the scenario file format, parsing and validation.
//! - [`runner`]: builds and steps the simulation, applies faults, checks expectations.
//! - [`host`]: what simulated servers and clients run.
//! - [`net`]: the turmoil [`squall::Transport`].
//! - [`recorder`] and [`trace`]: the event log, its text form and hash.
//! - [`expect`]: expectations evaluated on the trace.
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![forbid(unsafe_code)]

pub mod expect;
pub mod host;
pub mod net;
pub mod recorder;
pub mod runner;
pub mod scenario;
pub mod trace;

pub use runner::{run, RunError, RunOutcome};
pub use scenario::Scenario;
