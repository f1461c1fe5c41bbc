//! The trace: every meaningful event of a run, with simulated time and host, in a
//! stable text form. Expectations are checked against it, `sim replay` prints it,
//! and its hash is the determinism check.

use std::fmt::{self, Write as _};
use std::time::Duration;

use sha2::{Digest, Sha256};

/// One event.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// Simulated time since the start of the run.
    pub at: Duration,
    /// The host it happened on (`client-1`, `server-2`, `sim` for the harness itself).
    pub host: String,
    /// What happened.
    pub kind: EventKind,
}

/// What happened. Each variant's text form is `name key=value …` (see [`fmt::Display`]).
#[derive(Clone, Debug, PartialEq)]
pub enum EventKind {
    /// A client started a call. `call` is unique per client host.
    CallStart {
        /// Per-client call number, from 0.
        call: u64,
        /// `Service.Method`.
        method: String,
        /// The call's hash key, when the workload sets one (consistent hashing).
        key: Option<String>,
    },
    /// One attempt of a call was sent to an endpoint (a call has ≥ 1 attempts).
    Attempt {
        /// The call.
        call: u64,
        /// Attempt number, from 1.
        attempt: u32,
        /// The server host the attempt went to.
        endpoint: String,
    },
    /// A call resolved, exactly once.
    CallEnd {
        /// The call.
        call: u64,
        /// The endpoint of the last attempt (`-` if none was reached).
        endpoint: Option<String>,
        /// `Ok` or the status code name.
        outcome: String,
        /// From start to resolution.
        latency: Duration,
        /// Whether a failure may have executed on the server.
        may_have_executed: bool,
    },
    /// A server ran a handler (counts executions per call, server-side).
    Executed {
        /// The calling host.
        client: String,
        /// The client's call number (carried in metadata).
        call: u64,
        /// `Service.Method`.
        method: String,
    },
    /// A server handler ended: it finished (`ok` / `error`) or was dropped
    /// before finishing (`cancelled`: the caller gave up or the deadline passed).
    HandlerDone {
        /// The calling host.
        client: String,
        /// The client's call number.
        call: u64,
        /// `Service.Method`.
        method: String,
        /// `ok`, `error` or `cancelled`.
        outcome: String,
    },
    /// A client decided whether to retry a failed attempt.
    Retry {
        /// The call.
        call: u64,
        /// The attempt that failed.
        attempt: u32,
        /// `retry`, `budget_exhausted` or `stop:<reason>`.
        decision: String,
    },
    /// A client opened a connection.
    Connected {
        /// The server host.
        peer: String,
    },
    /// A connection attempt failed.
    ConnectFailed {
        /// The server host.
        peer: String,
        /// Why.
        reason: String,
    },
    /// A fault from the timeline was applied.
    Fault {
        /// The fault, as written in the scenario (`partition client-1 server-1`).
        description: String,
    },
    /// A circuit breaker changed state.
    Breaker {
        /// The endpoint the breaker guards.
        endpoint: String,
        /// Previous state.
        from: String,
        /// New state.
        to: String,
    },
    /// A registry event (register, renew, expire, deregister).
    Registry {
        /// What happened.
        action: String,
        /// The instance concerned.
        instance: String,
    },
    /// A client's set of known endpoints changed.
    Endpoints {
        /// The new set, sorted.
        endpoints: Vec<String>,
    },
    /// The harness crashed this host (the event's host): every handler it
    /// was running ended here, without a `server.done`.
    Crashed,
    /// Free-form note from the harness (run start/end, seed).
    Note {
        /// The text.
        text: String,
    },
    /// An event a user's handler, workload or invariant recorded through a
    /// [`Tracer`](crate::Tracer): its text form is `kind key=value …`, so
    /// `replay --kind`, the `event` expectation and the trace hash see it like
    /// any built-in event.
    User {
        /// Dotted kind chosen by the user (`kv.read`); never a built-in kind's prefix.
        kind: String,
        /// Key/value fields in the order given; values are quoted when they
        /// contain spaces, `=` or quotes, so the text form stays parseable.
        fields: Vec<(String, String)>,
    },
}

fn micros(d: Duration) -> u128 {
    d.as_micros()
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventKind::CallStart { call, method, key: None } => write!(f, "call.start call={call} method={method}"),
            EventKind::CallStart { call, method, key: Some(key) } => {
                write!(f, "call.start call={call} method={method} key={key}")
            }
            EventKind::HandlerDone { client, call, method, outcome } => {
                write!(f, "server.done client={client} call={call} method={method} outcome={outcome}")
            }
            EventKind::Retry { call, attempt, decision } => {
                write!(f, "call.retry call={call} attempt={attempt} decision={decision}")
            }
            EventKind::Attempt { call, attempt, endpoint } => {
                write!(f, "call.attempt call={call} attempt={attempt} endpoint={endpoint}")
            }
            EventKind::CallEnd { call, endpoint, outcome, latency, may_have_executed } => write!(
                f,
                "call.end call={call} endpoint={} outcome={outcome} latency_us={} may_have_executed={may_have_executed}",
                endpoint.as_deref().unwrap_or("-"),
                micros(*latency)
            ),
            EventKind::Executed { client, call, method } => {
                write!(f, "server.executed client={client} call={call} method={method}")
            }
            EventKind::Connected { peer } => write!(f, "conn.open peer={peer}"),
            EventKind::ConnectFailed { peer, reason } => {
                write!(f, "conn.failed peer={peer} reason={reason:?}")
            }
            EventKind::Fault { description } => write!(f, "fault {description}"),
            EventKind::Breaker { endpoint, from, to } => {
                write!(f, "breaker endpoint={endpoint} from={from} to={to}")
            }
            EventKind::Registry { action, instance } => {
                write!(f, "registry.{action} instance={instance}")
            }
            EventKind::Endpoints { endpoints } => write!(f, "endpoints set=[{}]", endpoints.join(",")),
            EventKind::Crashed => f.write_str("host.crash"),
            EventKind::Note { text } => write!(f, "note {text}"),
            EventKind::User { kind, fields } => {
                f.write_str(kind)?;
                for (key, value) in fields {
                    if value.is_empty() || value.contains([' ', '=', '"', '\n', '\t']) {
                        write!(f, " {key}={value:?}")?;
                    } else {
                        write!(f, " {key}={value}")?;
                    }
                }
                Ok(())
            }
        }
    }
}

impl EventKind {
    /// The event's kind name as used by `sim replay --kind` (`call.end`, `fault`, …).
    pub fn name(&self) -> &str {
        match self {
            EventKind::CallStart { .. } => "call.start",
            EventKind::Attempt { .. } => "call.attempt",
            EventKind::CallEnd { .. } => "call.end",
            EventKind::Executed { .. } => "server.executed",
            EventKind::HandlerDone { .. } => "server.done",
            EventKind::Retry { .. } => "call.retry",
            EventKind::Connected { .. } => "conn.open",
            EventKind::ConnectFailed { .. } => "conn.failed",
            EventKind::Fault { .. } => "fault",
            EventKind::Breaker { .. } => "breaker",
            EventKind::Registry { .. } => "registry",
            EventKind::Endpoints { .. } => "endpoints",
            EventKind::Crashed => "host.crash",
            EventKind::Note { .. } => "note",
            EventKind::User { kind, .. } => kind,
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.at.as_secs();
        let micros = self.at.subsec_micros();
        write!(f, "{secs:>4}.{micros:06} {:<10} {}", self.host, self.kind)
    }
}

/// A whole run's events, in the order they happened.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    /// The events.
    pub events: Vec<Event>,
}

impl Trace {
    /// The trace as text, one event per line.
    pub fn to_text(&self) -> String {
        let mut out = String::with_capacity(self.events.len() * 64);
        for event in &self.events {
            // Writing to a String cannot fail.
            let _ = writeln!(out, "{event}");
        }
        out
    }

    /// SHA-256 of the text form, hex, first 16 characters: the determinism fingerprint.
    pub fn hash(&self) -> String {
        let mut hasher = Sha256::new();
        for event in &self.events {
            hasher.update(event.to_string().as_bytes());
            hasher.update(b"\n");
        }
        let digest = hasher.finalize();
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }

    /// The first line where two traces differ: (line number from 1, ours, theirs).
    pub fn first_difference(&self, other: &Trace) -> Option<(usize, String, String)> {
        let n = self.events.len().max(other.events.len());
        (0..n).find_map(|i| {
            let a = self
                .events
                .get(i)
                .map(|e| e.to_string())
                .unwrap_or_else(|| "<end of trace>".into());
            let b = other
                .events
                .get(i)
                .map(|e| e.to_string())
                .unwrap_or_else(|| "<end of trace>".into());
            (a != b).then(|| (i + 1, a, b))
        })
    }
}
