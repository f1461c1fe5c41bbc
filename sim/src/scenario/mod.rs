//! Scenario files: a self-contained experiment (topology, workload, fault
//! timeline, expectations) read from TOML, validated, and handed to the runner as
//! plain types. The schema is documented key by key in `docs/SCENARIOS.md`.
//!
//! # Layout
//! - [`schema`]: the validated [`Scenario`] and everything in it — what the runner consumes.
//! - `raw`: the file as written (serde structs with spans); never leaves this module.
//! - `validate`: raw → schema, with limits and name resolution, one file per
//!   section (servers, clients, resilience, faults, expectations) over shared
//!   name resolution and leaf field checks; see its module doc.
//! - [`duration`]: `"250ms"`-style durations.
//! - [`error`]: [`ScenarioError`], `path:line: message (hint)`.

pub mod duration;
pub mod error;
mod raw;
pub mod schema;
mod validate;

#[cfg(test)]
mod tests;

use std::path::Path;

pub use duration::{format_duration, parse_duration};
pub use error::ScenarioError;
pub use schema::{
    Behaviour, CallConfig, Check, ClientGroup, ConnectionConfig, Expectation, Fault, FaultAction,
    Filter, Forward, LatencyRange, Link, Load, MethodWeight, Network, OutcomeFilter,
    RegistryConfig, Resilience, Scenario, ServerGroup, ServerHost, Workload, REGISTRY_HOST,
};
pub use validate::{
    CONCURRENCY_MAX, HASH_KEYS_MAX, LATENCY_MAX, MAX_ATTEMPTS_MAX, PAYLOAD_BYTES_MAX,
    POOL_SIZE_MAX, RATE_MAX, REGISTRY_DURATION_MAX, REPLICAS_MAX, RESERVED_NAMES, SEEDS_MAX,
    WEIGHT_MAX,
};

use error::Locator;

/// Largest scenario file read: a bigger one is not a hand-written experiment.
pub const FILE_BYTES_MAX: usize = 1 << 20;

impl Scenario {
    /// Reads and validates a scenario file. Messages name `path` as given.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Scenario, ScenarioError> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            path: shown.clone(),
            line: None,
            message: format!("cannot read the file: {e}"),
            hint: Some("check the path; scenario files live in scenarios/".into()),
            source_line: None,
        })?;
        Scenario::from_str(&text, &shown)
    }

    /// Parses and validates scenario text; `path` is only used in messages.
    pub fn from_str(text: &str, path: &str) -> Result<Scenario, ScenarioError> {
        let loc = Locator { path, text };
        if text.len() > FILE_BYTES_MAX {
            return Err(loc.file(
                format!(
                    "file is {} bytes, over the {FILE_BYTES_MAX}-byte limit",
                    text.len()
                ),
                Some("split it into several scenarios".into()),
            ));
        }
        let raw: raw::RawScenario = toml::from_str(text).map_err(|e| loc.toml_error(&e))?;
        validate::validate(raw, loc)
    }
}
