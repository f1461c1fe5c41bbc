//! The file as written: serde structs mirroring the TOML, every value that
//! validation may reject wrapped in [`Spanned`] so its error can name the line.
//! `deny_unknown_fields` everywhere: a misspelled key is an error, never ignored.
//!
//! Numbers are read wide (`i64`, `f64`) and range-checked in `validate/`, so a
//! `replicas = -1` gets "replicas must be 1..=100" rather than serde's "expected u32".
//! Faults and expectations are flat tables with every key optional: which keys a
//! kind accepts is checked in `validate/`, which can then say "partition takes
//! `between`, not `host`" instead of serde's generic enum errors.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::duration::{DurationText, LatencySpec};

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawScenario {
    pub(crate) name: Spanned<String>,
    pub(crate) description: Spanned<String>,
    pub(crate) duration: Spanned<DurationText>,
    pub(crate) seeds: Option<Spanned<Vec<Spanned<i64>>>>,
    pub(crate) network: Option<RawNetwork>,
    pub(crate) registry: Option<Spanned<RawRegistry>>,
    #[serde(default)]
    pub(crate) servers: Vec<Spanned<RawServerGroup>>,
    #[serde(default)]
    pub(crate) clients: Vec<Spanned<RawClientGroup>>,
    #[serde(default)]
    pub(crate) faults: Vec<Spanned<RawFault>>,
    #[serde(default)]
    pub(crate) expect: Vec<Spanned<RawExpect>>,
}

/// `[network]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNetwork {
    pub(crate) latency: Option<Spanned<LatencySpec>>,
    pub(crate) loss: Option<Spanned<f64>>,
    pub(crate) repair_rate: Option<Spanned<f64>>,
}

/// `[registry]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRegistry {
    pub(crate) ttl: Option<Spanned<DurationText>>,
    pub(crate) heartbeat: Option<Spanned<DurationText>>,
    pub(crate) watch_timeout: Option<Spanned<DurationText>>,
    pub(crate) call_timeout: Option<Spanned<DurationText>>,
    pub(crate) connection: Option<RawConnection>,
}

/// `[[servers]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServerGroup {
    pub(crate) group: Spanned<String>,
    pub(crate) replicas: Option<Spanned<i64>>,
    pub(crate) weight: Option<Spanned<i64>>,
    pub(crate) latency: Option<Spanned<LatencySpec>>,
    pub(crate) error_rate: Option<Spanned<f64>>,
    pub(crate) start_at: Option<Spanned<DurationText>>,
    pub(crate) service: Option<Spanned<String>>,
    pub(crate) forward_to: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) forward_method: Option<Spanned<String>>,
    pub(crate) forward_timeout: Option<Spanned<DurationText>>,
    pub(crate) forward_connection: Option<Spanned<RawConnection>>,
    pub(crate) forward_retry: Option<Spanned<RawRetry>>,
    pub(crate) code: Option<Spanned<String>>,
    pub(crate) error_code: Option<Spanned<String>>,
    pub(crate) concurrency_limit: Option<Spanned<i64>>,
    pub(crate) latency_per_call: Option<Spanned<DurationText>>,
    #[serde(default)]
    pub(crate) hosts: BTreeMap<Spanned<String>, RawHostOverride>,
}

/// `[servers.hosts.server-2]`: one host's departures from its group.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHostOverride {
    pub(crate) weight: Option<Spanned<i64>>,
    pub(crate) latency: Option<Spanned<LatencySpec>>,
    pub(crate) error_rate: Option<Spanned<f64>>,
    pub(crate) start_at: Option<Spanned<DurationText>>,
}

/// `[[clients]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawClientGroup {
    pub(crate) group: Spanned<String>,
    pub(crate) replicas: Option<Spanned<i64>>,
    pub(crate) targets: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) service: Option<Spanned<String>>,
    pub(crate) balancer: Option<Spanned<String>>,
    pub(crate) fail_mode: Option<Spanned<String>>,
    pub(crate) hash_keys: Option<Spanned<i64>>,
    pub(crate) pool_size: Option<Spanned<i64>>,
    pub(crate) idempotent: Option<Spanned<bool>>,
    pub(crate) rate: Option<Spanned<f64>>,
    pub(crate) concurrency: Option<Spanned<i64>>,
    pub(crate) method: Option<Spanned<String>>,
    pub(crate) mix: Option<Spanned<Vec<Spanned<RawMixEntry>>>>,
    pub(crate) payload_bytes: Option<Spanned<i64>>,
    pub(crate) timeout: Option<Spanned<DurationText>>,
    pub(crate) codec: Option<Spanned<String>>,
    pub(crate) start_at: Option<Spanned<DurationText>>,
    pub(crate) stop_at: Option<Spanned<DurationText>>,
    pub(crate) connection: Option<RawConnection>,
    pub(crate) retry: Option<Spanned<RawRetry>>,
    pub(crate) breaker: Option<Spanned<RawBreaker>>,
    pub(crate) budget: Option<Spanned<RawBudget>>,
    pub(crate) hedge: Option<Spanned<RawHedge>>,
    pub(crate) code: Option<Spanned<String>>,
}

/// One `mix` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMixEntry {
    pub(crate) method: Spanned<String>,
    pub(crate) weight: Option<Spanned<i64>>,
    pub(crate) idempotent: Option<bool>,
}

/// `[clients.retry]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRetry {
    pub(crate) max_attempts: Option<Spanned<i64>>,
    pub(crate) backoff: Option<Spanned<RawBackoff>>,
    pub(crate) codes: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) attempt_timeout: Option<Spanned<DurationText>>,
}

/// `backoff = { initial, max, multiplier, jitter }` in `[clients.retry]`.
/// `jitter` is `"full"`, `"none"` or a fraction, so it is read as a raw value.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBackoff {
    pub(crate) initial: Option<Spanned<DurationText>>,
    pub(crate) max: Option<Spanned<DurationText>>,
    pub(crate) multiplier: Option<Spanned<f64>>,
    pub(crate) jitter: Option<Spanned<toml::Value>>,
}

/// `[clients.breaker]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBreaker {
    pub(crate) consecutive_failures: Option<Spanned<i64>>,
    pub(crate) failure_rate: Option<Spanned<f64>>,
    pub(crate) window: Option<Spanned<i64>>,
    pub(crate) minimum_calls: Option<Spanned<i64>>,
    pub(crate) slow_call: Option<Spanned<DurationText>>,
    pub(crate) open: Option<Spanned<DurationText>>,
    pub(crate) open_max: Option<Spanned<DurationText>>,
    pub(crate) half_open_probes: Option<Spanned<i64>>,
}

/// `[clients.budget]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBudget {
    pub(crate) ttl: Option<Spanned<DurationText>>,
    pub(crate) min_per_sec: Option<Spanned<i64>>,
    pub(crate) ratio: Option<Spanned<f64>>,
}

/// `[clients.hedge]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHedge {
    pub(crate) delay: Option<Spanned<DurationText>>,
    pub(crate) percentile: Option<Spanned<f64>>,
    pub(crate) max_extra: Option<Spanned<f64>>,
    pub(crate) min_samples: Option<Spanned<i64>>,
}

/// `[clients.connection]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConnection {
    pub(crate) connect_timeout: Option<Spanned<DurationText>>,
    pub(crate) keepalive_interval: Option<Spanned<DurationText>>,
    pub(crate) keepalive_timeout: Option<Spanned<DurationText>>,
}

/// `[[faults]]`: the union of every kind's keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFault {
    pub(crate) at: Spanned<DurationText>,
    pub(crate) kind: Spanned<String>,
    pub(crate) between: Option<Spanned<Vec<Spanned<String>>>>,
    pub(crate) from: Option<Spanned<String>>,
    pub(crate) to: Option<Spanned<String>>,
    pub(crate) host: Option<Spanned<String>>,
    pub(crate) latency: Option<Spanned<LatencySpec>>,
    pub(crate) rate: Option<Spanned<f64>>,
    pub(crate) error_rate: Option<Spanned<f64>>,
}

/// `[[expect]]`: the union of every kind's keys. `min`/`max` are typed per kind
/// (a duration for latency, a fraction for shares, a count for counts).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawExpect {
    pub(crate) kind: Spanned<String>,
    pub(crate) name: Option<String>,
    pub(crate) min: Option<Spanned<toml::Value>>,
    pub(crate) max: Option<Spanned<toml::Value>>,
    pub(crate) percentile: Option<Spanned<f64>>,
    pub(crate) outcome: Option<Spanned<String>>,
    pub(crate) endpoint: Option<Spanned<String>>,
    pub(crate) max_endpoints: Option<Spanned<i64>>,
    pub(crate) at: Option<Spanned<DurationText>>,
    pub(crate) slack: Option<Spanned<DurationText>>,
    pub(crate) text: Option<Spanned<String>>,
    pub(crate) on: Option<Spanned<String>>,
    pub(crate) client: Option<Spanned<String>>,
    pub(crate) method: Option<Spanned<String>>,
    pub(crate) from: Option<Spanned<DurationText>>,
    pub(crate) to: Option<Spanned<DurationText>>,
    pub(crate) may_have_executed: Option<Spanned<bool>>,
}

/// Names of the keys a raw fault has set, with their spans, for "kind X does not
/// take key Y" checks.
impl RawFault {
    pub(crate) fn present_keys(&self) -> Vec<(&'static str, std::ops::Range<usize>)> {
        let mut keys = Vec::new();
        let mut add = |name, span: Option<std::ops::Range<usize>>| {
            if let Some(span) = span {
                keys.push((name, span));
            }
        };
        add("between", self.between.as_ref().map(Spanned::span));
        add("from", self.from.as_ref().map(Spanned::span));
        add("to", self.to.as_ref().map(Spanned::span));
        add("host", self.host.as_ref().map(Spanned::span));
        add("latency", self.latency.as_ref().map(Spanned::span));
        add("rate", self.rate.as_ref().map(Spanned::span));
        add("error_rate", self.error_rate.as_ref().map(Spanned::span));
        keys
    }
}

impl RawExpect {
    /// Same as [`RawFault::present_keys`], for the kind-specific keys.
    pub(crate) fn present_keys(&self) -> Vec<(&'static str, std::ops::Range<usize>)> {
        let mut keys = Vec::new();
        let mut add = |name, span: Option<std::ops::Range<usize>>| {
            if let Some(span) = span {
                keys.push((name, span));
            }
        };
        add("min", self.min.as_ref().map(Spanned::span));
        add("max", self.max.as_ref().map(Spanned::span));
        add("percentile", self.percentile.as_ref().map(Spanned::span));
        add("outcome", self.outcome.as_ref().map(Spanned::span));
        add("endpoint", self.endpoint.as_ref().map(Spanned::span));
        add(
            "max_endpoints",
            self.max_endpoints.as_ref().map(Spanned::span),
        );
        add("at", self.at.as_ref().map(Spanned::span));
        add("slack", self.slack.as_ref().map(Spanned::span));
        add("text", self.text.as_ref().map(Spanned::span));
        add("on", self.on.as_ref().map(Spanned::span));
        keys
    }
}
