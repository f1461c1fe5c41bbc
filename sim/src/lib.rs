//! Squall's deterministic simulation harness.
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![forbid(unsafe_code)]

pub mod expect;
pub mod scenario;
pub mod trace;
