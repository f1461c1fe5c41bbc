//! What a [`ServiceClient`](super::ServiceClient) reports about itself, for the
//! trace: every endpoint-set change, attempt, retry verdict and breaker transition.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::resilience::{BreakerState, TransitionReason};
use crate::Status;

/// Hears every [`DiscoveryEvent`], synchronously, at the moment it happens (never
/// under the client's lock, so it may call back into the client). Keep it cheap:
/// it runs on the call's task.
pub type DiscoveryObserver = Arc<dyn Fn(&DiscoveryEvent) + Send + Sync>;

/// One thing a discovery-aware client did. Deterministic: in a seeded simulation
/// the same run emits the same events in the same order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiscoveryEvent {
    /// The set of endpoint addresses changed (from the resolver, or
    /// [`ServiceClient::set_endpoints`](super::ServiceClient::set_endpoints)).
    /// A weight-only change updates the balancer but is not reported.
    EndpointsChanged {
        /// Every address now known, sorted.
        endpoints: Vec<String>,
    },
    /// An attempt of a call was sent to an endpoint.
    Attempt {
        /// The call's id (the `call-id` metadata value, or the client's counter).
        call: u64,
        /// 1 for the first attempt; retries and hedges count on.
        attempt: u32,
        /// Where it went.
        endpoint: String,
        /// Whether it is a hedge (a backup copy sent while an earlier attempt of
        /// the same call is still running).
        hedge: bool,
    },
    /// An attempt ended. Every `Attempt` is followed by exactly one of these,
    /// even when the call is dropped (`Cancelled`) or a hedge lost the race
    /// (`Cancelled`, "hedge lost").
    AttemptFinished {
        /// The call's id.
        call: u64,
        /// The attempt's number.
        attempt: u32,
        /// Where it went.
        endpoint: String,
        /// Its outcome.
        outcome: Result<(), Status>,
        /// How long it took, from send to outcome (virtual time in the simulation).
        rtt: Duration,
    },
    /// What the client decided after a failed attempt (or failed hedged round).
    RetryDecision {
        /// The call's id.
        call: u64,
        /// The attempt the decision is about (the latest one).
        attempt: u32,
        /// `retry`, `budget_exhausted`, or `stop:<reason>` where reason is one of
        /// `not_retryable`, `may_have_executed`, `attempts_exhausted` (the retry
        /// policy), `fail_fast` (the fail mode), `deadline` (the backoff would
        /// end past the deadline, or it passed).
        decision: String,
    },
    /// A call ended, with its final outcome.
    CallFinished {
        /// The call's id.
        call: u64,
        /// How many attempts were sent (hedges included).
        attempts: u32,
        /// The outcome returned to the caller (`Cancelled` if the caller dropped it).
        outcome: Result<(), Status>,
    },
    /// An endpoint's circuit breaker changed state.
    BreakerTransition {
        /// The endpoint.
        endpoint: String,
        /// The state left.
        from: BreakerState,
        /// The state entered.
        to: BreakerState,
        /// Why.
        reason: TransitionReason,
    },
    /// The resolver lost the registry and is serving the last known list.
    RegistryStale {
        /// When the first failing registry call failed.
        since: Instant,
    },
    /// The resolver reached the registry again.
    RegistryRecovered,
}

impl fmt::Display for DiscoveryEvent {
    /// One line per event, stable, for traces and logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiscoveryEvent::EndpointsChanged { endpoints } => {
                write!(f, "endpoints [{}]", endpoints.join(", "))
            }
            DiscoveryEvent::Attempt {
                call,
                attempt,
                endpoint,
                hedge,
            } => {
                let kind = if *hedge { "hedge" } else { "attempt" };
                write!(f, "call {call} {kind} {attempt} -> {endpoint}")
            }
            DiscoveryEvent::AttemptFinished {
                call,
                attempt,
                endpoint,
                outcome,
                rtt,
            } => {
                write!(f, "call {call} attempt {attempt} @ {endpoint} ")?;
                write_outcome(f, outcome)?;
                write!(f, " in {rtt:?}")
            }
            DiscoveryEvent::RetryDecision {
                call,
                attempt,
                decision,
            } => write!(f, "call {call} after attempt {attempt}: {decision}"),
            DiscoveryEvent::CallFinished {
                call,
                attempts,
                outcome,
            } => {
                write!(f, "call {call} finished after {attempts} attempt(s): ")?;
                write_outcome(f, outcome)
            }
            DiscoveryEvent::BreakerTransition {
                endpoint,
                from,
                to,
                reason,
            } => write!(f, "breaker {endpoint}: {from} -> {to} ({reason})"),
            DiscoveryEvent::RegistryStale { .. } => f.write_str("registry stale"),
            DiscoveryEvent::RegistryRecovered => f.write_str("registry recovered"),
        }
    }
}

/// `ok` or the status.
fn write_outcome(f: &mut fmt::Formatter<'_>, outcome: &Result<(), Status>) -> fmt::Result {
    match outcome {
        Ok(()) => f.write_str("ok"),
        Err(status) => write!(f, "{status}"),
    }
}
