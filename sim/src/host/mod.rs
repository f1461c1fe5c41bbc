//! The software each simulated host runs: servers serving the scenario's
//! methods with scripted behaviour, clients driving the scenario's workload.

pub mod client;
pub mod server;

/// Metadata key carrying the calling host's name (for server-side execution counts).
pub const CLIENT_KEY: &str = "sim-client";
/// Metadata key carrying the client's call number.
pub const CALL_KEY: &str = "call-id";
