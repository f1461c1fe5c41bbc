//! Expectations checked on a trace: [`evaluate`] turns a scenario's
//! `[[expect]]` entries, plus two implicit checks — "every call resolved exactly
//! once" and "no call reported not-executed was executed" — into [`Verdict`]s.
//!
//! What is counted where (see also [`Filter`]):
//! - **Call-based** checks (success_rate, latency, max_failed_calls) look at calls:
//!   a `call.start` keyed by (client host, call number) and its `call.end`. A call is
//!   in a window when it *started* in it — "calls issued during the partition".
//! - **Attempt-based** checks (call_count, call_share, no_calls) look at
//!   `call.attempt` events, because attempts show where load actually went (a retried
//!   call loads two servers; its `call.end` names only the last). An attempt is in a
//!   window when it was *sent* in it.
//!
//!   The resilience kinds (retry_amplification, executions_per_call,
//!   handlers_end_by_deadline) and the key kinds (key_affinity,
//!   keys_moved_only_from) are call-based too.
//! - **Breaker** checks look at `breaker` events (recorded on client hosts),
//!   placed by the transition's time.
//!
//! An expectation that matches nothing fails rather than passing vacuously (a
//! success rate over zero calls proves nothing), except the ones whose point is
//! absence: no_calls and max_failed_calls.
//!
//! # Layout
//! - this file: the [`Index`] the trace is regrouped into, the implicit checks,
//!   and the call/attempt kinds.
//! - `breaker`: breaker_opened, breaker_closed, breaker_min_open.
//! - `execution`: retry_amplification, executions_per_call,
//!   handlers_end_by_deadline, and the implicit not-executed check.
//! - `keys`: key_affinity, keys_moved_only_from.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::scenario::{format_duration, Check, Expectation, Filter, OutcomeFilter, Scenario};
use crate::trace::{EventKind, Trace};

mod breaker;
mod execution;
mod keys;

/// The outcome string of a successful call in the trace.
const OK: &str = "Ok";

/// How many offending calls a verdict quotes.
const EXAMPLES_MAX: usize = 5;

/// One checked expectation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// What was checked: the expectation's name (given or generated).
    pub name: String,
    /// The bound, as a reader would state it (`>= 0.999`, `<= 20ms`).
    pub wanted: String,
    /// What the trace showed, with enough detail to start debugging.
    pub observed: String,
    /// Whether the trace met the bound.
    pub pass: bool,
    /// The `[[expect]]` line in the scenario file; `None` for implicit checks.
    pub line: Option<usize>,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mark = if self.pass { "PASS" } else { "FAIL" };
        write!(
            f,
            "{mark} {}: wanted {}, observed {}",
            self.name, self.wanted, self.observed
        )
    }
}

/// Checks every expectation of `scenario` against `trace`: first the implicit
/// "every call resolved exactly once" and "no call reported not-executed was
/// executed", then the file's, in file order.
pub fn evaluate(scenario: &Scenario, trace: &Trace) -> Vec<Verdict> {
    let mut index = Index::build(trace);
    index.timeouts = scenario
        .client_hosts()
        .map(|(group, host)| (host.to_string(), group.call.timeout))
        .collect();
    let mut verdicts = vec![
        index.exactly_once(),
        index.not_executed_means_not_executed(),
    ];
    verdicts.extend(scenario.expectations.iter().map(|e| index.check(e)));
    verdicts
}

/// One call as the trace tells it.
#[derive(Debug, Default)]
struct Call<'t> {
    /// `Service.Method`, from `call.start` (`None` if the start is missing).
    method: Option<&'t str>,
    /// When `call.start` happened.
    start: Option<Duration>,
    /// How many `call.start` events carried this key (1 when correct).
    starts: u32,
    /// The hash key from `call.start`, when the workload sets one.
    key: Option<&'t str>,
    /// Every `call.end`. Exactly one when correct.
    ends: Vec<End<'t>>,
}

/// One `call.end`.
#[derive(Debug)]
struct End<'t> {
    /// `Ok` or the status code name.
    outcome: &'t str,
    /// From start to resolution.
    latency: Duration,
    /// The last attempt's endpoint (`None` if no attempt reached one).
    endpoint: Option<&'t str>,
    /// Whether a failure may have run on a server.
    may_have_executed: bool,
}

/// A breaker transition, as recorded on a client host.
#[derive(Debug)]
struct Transition<'t> {
    client: &'t str,
    at: Duration,
    endpoint: &'t str,
    to: &'t str,
}

/// The handler runs one server made for one call: `server.executed` count and
/// times, and the `server.done` times.
#[derive(Debug, Default)]
struct Runs {
    executed: u32,
    executed_at: Vec<Duration>,
    done: Vec<Duration>,
}

/// One attempt: who sent it, for which call, when, to whom.
#[derive(Debug)]
struct Attempt<'t> {
    client: &'t str,
    call: u64,
    at: Duration,
    endpoint: &'t str,
}

/// The trace regrouped for checking.
#[derive(Debug, Default)]
struct Index<'t> {
    /// (client host, call number) → call. A BTreeMap so examples come out in a stable order.
    calls: BTreeMap<(&'t str, u64), Call<'t>>,
    /// Attempts in trace order.
    attempts: Vec<Attempt<'t>>,
    /// (client host, call number) → attempts sent for it (hedges included).
    attempts_per_call: BTreeMap<(&'t str, u64), u32>,
    /// (client host, call number) → `server.executed` events naming it, on any server.
    executions: BTreeMap<(&'t str, u64), u32>,
    /// (client host, call number) → handler runs that ended `refused`: they
    /// ran but declared "not executed" themselves (no side effects).
    refusals: BTreeMap<(&'t str, u64), u32>,
    /// (server host, client host, call number) → that server's handler runs.
    runs: BTreeMap<(&'t str, &'t str, u64), Runs>,
    /// Breaker transitions in trace order.
    transitions: Vec<Transition<'t>>,
    /// Client host → its group's overall call timeout (from the scenario).
    timeouts: BTreeMap<String, Duration>,
    /// Server host → when the harness crashed it (`host.crash`), in order.
    crashes: BTreeMap<&'t str, Vec<Duration>>,
    /// Every event, for the `event` kind.
    events: &'t [crate::trace::Event],
}

impl<'t> Index<'t> {
    fn build(trace: &'t Trace) -> Self {
        let mut index = Index {
            events: &trace.events,
            ..Index::default()
        };
        for event in &trace.events {
            let host = event.host.as_str();
            match &event.kind {
                EventKind::CallStart { call, method, key } => {
                    let entry = index.calls.entry((host, *call)).or_default();
                    entry.starts += 1;
                    entry.method.get_or_insert(method.as_str());
                    entry.start.get_or_insert(event.at);
                    if entry.key.is_none() {
                        entry.key = key.as_deref();
                    }
                }
                EventKind::CallEnd {
                    call,
                    endpoint,
                    outcome,
                    latency,
                    may_have_executed,
                } => {
                    index
                        .calls
                        .entry((host, *call))
                        .or_default()
                        .ends
                        .push(End {
                            outcome: outcome.as_str(),
                            latency: *latency,
                            endpoint: endpoint.as_deref(),
                            may_have_executed: *may_have_executed,
                        });
                }
                EventKind::Attempt { call, endpoint, .. } => {
                    index.attempts.push(Attempt {
                        client: host,
                        call: *call,
                        at: event.at,
                        endpoint: endpoint.as_str(),
                    });
                    *index.attempts_per_call.entry((host, *call)).or_default() += 1;
                }
                _ => index.add_server_or_breaker(host, event.at, &event.kind),
            }
        }
        index
    }

    /// The events the resilience checks read: handler runs and breaker transitions.
    fn add_server_or_breaker(&mut self, host: &'t str, at: Duration, kind: &'t EventKind) {
        match kind {
            EventKind::Executed { client, call, .. } => {
                *self.executions.entry((client.as_str(), *call)).or_default() += 1;
                let runs = self.runs.entry((host, client.as_str(), *call)).or_default();
                runs.executed += 1;
                runs.executed_at.push(at);
            }
            EventKind::Crashed => self.crashes.entry(host).or_default().push(at),
            EventKind::HandlerDone {
                client,
                call,
                outcome,
                ..
            } => {
                if outcome == "refused" {
                    *self.refusals.entry((client.as_str(), *call)).or_default() += 1;
                }
                self.runs
                    .entry((host, client.as_str(), *call))
                    .or_default()
                    .done
                    .push(at);
            }
            EventKind::Breaker { endpoint, to, .. } => self.transitions.push(Transition {
                client: host,
                at,
                endpoint: endpoint.as_str(),
                to: to.as_str(),
            }),
            _ => {}
        }
    }

    /// The implicit check: each `call.start` has exactly one `call.end`, and no
    /// `call.end` lacks its start.
    fn exactly_once(&self) -> Verdict {
        let mut unresolved = Vec::new();
        let mut resolved_twice = Vec::new();
        let mut end_without_start = Vec::new();
        let mut started_twice = Vec::new();
        for (&(host, id), call) in &self.calls {
            let name = format!("{host}#{id}");
            match (call.starts, call.ends.len()) {
                (0, _) => end_without_start.push(name),
                (1, 0) => unresolved.push(name),
                (1, 1) => {}
                (1, _) => resolved_twice.push(name),
                _ => started_twice.push(name),
            }
        }
        let problems: Vec<String> = [
            ("never resolved", &unresolved),
            ("resolved more than once", &resolved_twice),
            ("call.end without call.start", &end_without_start),
            ("call.start more than once", &started_twice),
        ]
        .iter()
        .filter(|(_, list)| !list.is_empty())
        .map(|(what, list)| format!("{} {what} ({})", list.len(), examples(list)))
        .collect();
        let pass = problems.is_empty();
        let observed = if pass {
            format!("{} calls, each resolved once", self.calls.len())
        } else {
            problems.join("; ")
        };
        Verdict {
            name: "every call resolved exactly once".into(),
            wanted: "one call.end per call.start".into(),
            observed,
            pass,
            line: None,
        }
    }

    fn check(&self, expectation: &Expectation) -> Verdict {
        let filter = &expectation.filter;
        let (wanted, observed, pass) = match &expectation.check {
            Check::SuccessRate { min, max } => self.success_rate(filter, *min, *max),
            Check::FailedCalls { min, max } => self.failed_calls(filter, *min, *max),
            Check::Latency {
                percentile,
                min,
                max,
                outcome,
            } => self.latency(filter, *percentile, *min, *max, *outcome),
            Check::CallCount {
                endpoints,
                min,
                max,
            } => self.call_count(filter, endpoints, *min, *max),
            Check::CallShare {
                endpoints,
                min,
                max,
            } => self.call_share(filter, endpoints, *min, *max),
            Check::NoCalls { endpoints } => self.no_calls(filter, endpoints),
            Check::Event { text, on, min, max } => {
                self.event_count(filter, text, on.as_deref(), *min, *max)
            }
            Check::MaxFailedCalls { max } => self.max_failed_calls(filter, *max),
            Check::BreakerOpened { endpoint, min } => self.breaker_opened(filter, endpoint, *min),
            Check::BreakerClosed { endpoint } => self.breaker_closed(filter, endpoint),
            Check::BreakerMinOpen { endpoint, min } => {
                self.breaker_min_open(filter, endpoint, *min)
            }
            Check::RetryAmplification { max } => self.retry_amplification(filter, *max),
            Check::ExecutionsPerCall { max } => self.executions_per_call(filter, *max),
            Check::KeyAffinity { max_endpoints } => self.key_affinity(filter, *max_endpoints),
            Check::KeysMovedOnlyFrom { endpoint, at } => {
                self.keys_moved_only_from(filter, endpoint, *at)
            }
            Check::HandlersEndByDeadline { slack } => self.handlers_end_by_deadline(filter, *slack),
        };
        Verdict {
            name: expectation.name.clone(),
            wanted,
            observed,
            pass,
            line: Some(expectation.line),
        }
    }

    /// Calls that match the filter (placed in the window by start time).
    fn calls<'s>(
        &'s self,
        filter: &'s Filter,
    ) -> impl Iterator<Item = (&'s (&'t str, u64), &'s Call<'t>)> + 's {
        self.calls.iter().filter(move |((host, _), call)| {
            let Some(start) = call.start else {
                return false;
            };
            filter.admits_client(host)
                && filter.contains(start)
                && method_matches(filter, call.method)
                && filter.may_have_executed.is_none_or(|wanted| {
                    call.ends
                        .first()
                        .is_some_and(|e| e.may_have_executed == wanted)
                })
        })
    }

    /// Attempts that match the filter (placed in the window by send time).
    fn attempts<'s>(&'s self, filter: &'s Filter) -> impl Iterator<Item = &'s Attempt<'t>> + 's {
        self.attempts.iter().filter(move |a| {
            let method = self.calls.get(&(a.client, a.call)).and_then(|c| c.method);
            filter.admits_client(a.client)
                && filter.contains(a.at)
                && method_matches(filter, method)
        })
    }

    /// Ok calls over started calls (a call that never resolved counts as not ok).
    fn success_rate(&self, filter: &Filter, min: f64, max: Option<f64>) -> (String, String, bool) {
        let mut total = 0u64;
        let mut failures: BTreeMap<&str, u64> = BTreeMap::new();
        for (_, call) in self.calls(filter) {
            total += 1;
            match call.ends.first() {
                Some(end) if end.outcome == OK => {}
                Some(end) => *failures.entry(end.outcome).or_default() += 1,
                None => *failures.entry("unresolved").or_default() += 1,
            }
        }
        let wanted = match max {
            None => format!(">= {min}"),
            Some(max) if min == 0.0 => format!("<= {max}"),
            Some(max) => format!("{min}..={max}"),
        };
        if total == 0 {
            return (wanted, "no calls matched".into(), false);
        }
        let failed: u64 = failures.values().sum();
        let rate = (total - failed) as f64 / total as f64;
        let observed = format!(
            "{rate:.4} ({} of {total} ok{})",
            total - failed,
            breakdown(&failures)
        );
        (
            wanted,
            observed,
            rate >= min && max.is_none_or(|max| rate <= max),
        )
    }

    /// Failed calls within bounds; a lower bound proves a fault had an effect.
    fn failed_calls(
        &self,
        filter: &Filter,
        min: Option<u64>,
        max: Option<u64>,
    ) -> (String, String, bool) {
        let mut failures: BTreeMap<&str, u64> = BTreeMap::new();
        for (_, call) in self.calls(filter) {
            if let Some(end) = call.ends.first().filter(|end| end.outcome != OK) {
                *failures.entry(end.outcome).or_default() += 1;
            }
        }
        let failed: u64 = failures.values().sum();
        let wanted = match (min, max) {
            (Some(min), Some(max)) => format!("{min}..={max}"),
            (Some(min), None) => format!(">= {min}"),
            (None, Some(max)) => format!("<= {max}"),
            (None, None) => "any".to_owned(),
        };
        let pass = min.is_none_or(|m| failed >= m) && max.is_none_or(|m| failed <= m);
        (
            wanted,
            format!("{failed} failed{}", breakdown(&failures)),
            pass,
        )
    }

    /// Nearest-rank percentile of resolved calls' latencies.
    fn latency(
        &self,
        filter: &Filter,
        percentile: f64,
        min: Option<Duration>,
        max: Option<Duration>,
        outcome: OutcomeFilter,
    ) -> (String, String, bool) {
        let mut latencies: Vec<Duration> = self
            .calls(filter)
            .filter_map(|(_, call)| call.ends.first())
            .filter(|end| match outcome {
                OutcomeFilter::Any => true,
                OutcomeFilter::Ok => end.outcome == OK,
                OutcomeFilter::Failed => end.outcome != OK,
            })
            .map(|end| end.latency)
            .collect();
        let wanted = bounds_text(min.map(format_duration), max.map(format_duration));
        let Some(value) = nearest_rank(&mut latencies, percentile) else {
            return (wanted, "no resolved calls matched".into(), false);
        };
        let pass = min.is_none_or(|m| value >= m) && max.is_none_or(|m| value <= m);
        (
            wanted,
            format!("p{percentile} = {value:?} over {} calls", latencies.len()),
            pass,
        )
    }

    /// Attempts to `endpoints`.
    fn call_count(
        &self,
        filter: &Filter,
        endpoints: &[String],
        min: Option<u64>,
        max: Option<u64>,
    ) -> (String, String, bool) {
        let count = self
            .attempts(filter)
            .filter(|a| endpoints.iter().any(|e| e == a.endpoint))
            .count() as u64;
        let pass = min.is_none_or(|m| count >= m) && max.is_none_or(|m| count <= m);
        (bounds_text(min, max), format!("{count} attempts"), pass)
    }

    /// Attempts to `endpoints` over all matching attempts.
    fn call_share(
        &self,
        filter: &Filter,
        endpoints: &[String],
        min: Option<f64>,
        max: Option<f64>,
    ) -> (String, String, bool) {
        let (mut ours, mut total) = (0u64, 0u64);
        for attempt in self.attempts(filter) {
            total += 1;
            ours += u64::from(endpoints.iter().any(|e| e == attempt.endpoint));
        }
        let wanted = bounds_text(min, max);
        if total == 0 {
            return (wanted, "no attempts matched".into(), false);
        }
        let share = ours as f64 / total as f64;
        let pass = min.is_none_or(|m| share >= m) && max.is_none_or(|m| share <= m);
        (
            wanted,
            format!("{share:.4} ({ours} of {total} attempts)"),
            pass,
        )
    }

    /// No attempt to `endpoints`.
    /// Events whose text contains `text` (on host `on`), in the window.
    fn event_count(
        &self,
        filter: &Filter,
        text: &str,
        on: Option<&str>,
        min: Option<u64>,
        max: Option<u64>,
    ) -> (String, String, bool) {
        let matching: Vec<&crate::trace::Event> = self
            .events
            .iter()
            .filter(|e| filter.contains(e.at))
            .filter(|e| on.is_none_or(|host| e.host == host))
            .filter(|e| e.kind.to_string().contains(text))
            .collect();
        let count = matching.len() as u64;
        let wanted = match (min, max) {
            (Some(min), Some(max)) => format!("{min}..={max} \"{text}\" events"),
            (Some(min), None) => format!(">= {min} \"{text}\" events"),
            (None, Some(max)) => format!("<= {max} \"{text}\" events"),
            (None, None) => format!("\"{text}\" events"),
        };
        let observed = match (matching.first(), matching.last()) {
            (Some(first), Some(last)) => format!(
                "{count}, first at {} on {}, last at {}",
                crate::scenario::format_duration(first.at),
                first.host,
                crate::scenario::format_duration(last.at)
            ),
            _ => "0".to_owned(),
        };
        let pass = min.is_none_or(|m| count >= m) && max.is_none_or(|m| count <= m);
        (wanted, observed, pass)
    }

    fn no_calls(&self, filter: &Filter, endpoints: &[String]) -> (String, String, bool) {
        let offending: Vec<&Attempt<'_>> = self
            .attempts(filter)
            .filter(|a| endpoints.iter().any(|e| e == a.endpoint))
            .collect();
        let observed = match offending.first() {
            None => "0 attempts".to_string(),
            Some(first) => format!(
                "{} attempts, first at {:?} ({}#{} to {})",
                offending.len(),
                first.at,
                first.client,
                first.call,
                first.endpoint
            ),
        };
        ("0 attempts".into(), observed, offending.is_empty())
    }

    /// Resolved calls whose outcome is not Ok.
    fn max_failed_calls(&self, filter: &Filter, max: u64) -> (String, String, bool) {
        let mut failures: BTreeMap<&str, u64> = BTreeMap::new();
        for (_, call) in self.calls(filter) {
            if let Some(end) = call.ends.first().filter(|end| end.outcome != OK) {
                *failures.entry(end.outcome).or_default() += 1;
            }
        }
        let failed: u64 = failures.values().sum();
        (
            format!("<= {max}"),
            format!("{failed} failed{}", breakdown(&failures)),
            failed <= max,
        )
    }
}

/// Whether a call's method passes the filter's method (unknown methods never do
/// when a method is asked for).
fn method_matches(filter: &Filter, method: Option<&str>) -> bool {
    filter
        .method
        .as_deref()
        .is_none_or(|wanted| method == Some(wanted))
}

/// Nearest-rank percentile: the value at rank ⌈p/100 · n⌉ (1-based) of the sorted
/// samples. `None` for no samples. p100 is the maximum; any p > 0 of one sample is it.
pub fn nearest_rank(samples: &mut [Duration], percentile: f64) -> Option<Duration> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let n = samples.len();
    // The product is at most n (percentile ≤ 100), so the cast cannot truncate.
    let rank = ((percentile / 100.0) * n as f64).ceil() as usize;
    samples.get(rank.clamp(1, n) - 1).copied()
}

/// `>= a`, `<= b`, or `a..=b`.
fn bounds_text<T: fmt::Display>(min: Option<T>, max: Option<T>) -> String {
    match (min, max) {
        (Some(a), Some(b)) => format!("{a}..={b}"),
        (Some(a), None) => format!(">= {a}"),
        (None, Some(b)) => format!("<= {b}"),
        (None, None) => "anything".into(),
    }
}

/// `; Unavailable ×3, DeadlineExceeded ×1` or empty.
fn breakdown(failures: &BTreeMap<&str, u64>) -> String {
    if failures.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = failures
        .iter()
        .map(|(outcome, n)| format!("{outcome} x{n}"))
        .collect();
    format!("; {}", parts.join(", "))
}

/// The first few names, and how many more.
fn examples(list: &[String]) -> String {
    let shown = list
        .iter()
        .take(EXAMPLES_MAX)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    match list.len().saturating_sub(EXAMPLES_MAX) {
        0 => shown,
        more => format!("{shown}, and {more} more"),
    }
}

#[cfg(test)]
mod tests;
