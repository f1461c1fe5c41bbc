//! The programs simulated hosts run. Server and client hosts run whatever their
//! group was given — a user's router factory and workload, or the built-in echo
//! ones in [`echo`], which are just one more user of the same API.
//!
//! - [`server`]: bind, register, serve the group's router inside the harness layer.
//! - [`client`]: build the scenario's client, trace every call, run the workload.
//! - [`registry`]: squall's registry service on the `registry` host.
//! - [`echo`]: the built-in echo router (with forwarding) and workload.

pub mod client;
pub mod echo;
pub mod registry;
pub mod server;

/// Metadata key carrying the calling host's name (for server-side execution counts).
pub const CLIENT_KEY: &str = "sim-client";
/// Metadata key carrying the client's call number.
pub const CALL_KEY: &str = "call-id";
/// Metadata key carrying a call's hash key (consistent hashing).
pub const HASH_KEY: &str = "hash-key";

/// Sleeps until simulated time `at` (no-op if it has passed); in a real-TCP
/// run, until scenario time `at` by the scaled wall clock.
pub async fn sleep_until_sim(at: std::time::Duration) {
    let current = crate::recorder::now();
    if at > current {
        tokio::time::sleep(crate::real::clock::to_wall(at - current)).await;
    }
}
