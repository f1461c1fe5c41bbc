//! The software each simulated host runs: servers serving the scenario's
//! methods with scripted behaviour, clients driving the scenario's workload.

pub mod client;
pub mod registry;
pub mod server;

/// Metadata key carrying the calling host's name (for server-side execution counts).
pub const CLIENT_KEY: &str = "sim-client";
/// Metadata key carrying the client's call number.
pub const CALL_KEY: &str = "call-id";

/// Sleeps until simulated time `at` (no-op if it has passed).
pub async fn sleep_until_sim(at: std::time::Duration) {
    let current = crate::recorder::now();
    if at > current {
        tokio::time::sleep(at - current).await;
    }
}
