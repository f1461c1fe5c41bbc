//! Expectations checked on a trace: [`evaluate`] turns a scenario's
//! `[[expect]]` entries, plus the implicit "every call resolved exactly once",
//! into [`Verdict`]s.
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
//! An expectation that matches nothing fails rather than passing vacuously (a
//! success rate over zero calls proves nothing), except the ones whose point is
//! absence: no_calls and max_failed_calls.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::scenario::{format_duration, Check, Expectation, Filter, OutcomeFilter, Scenario};
use crate::trace::{EventKind, Trace};

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
/// "every call resolved exactly once", then the file's, in file order.
pub fn evaluate(scenario: &Scenario, trace: &Trace) -> Vec<Verdict> {
    let index = Index::build(trace);
    let mut verdicts = vec![index.exactly_once()];
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
    /// Every `call.end`: (outcome, latency). Exactly one when correct.
    ends: Vec<(&'t str, Duration)>,
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
}

impl<'t> Index<'t> {
    fn build(trace: &'t Trace) -> Self {
        let mut index = Index::default();
        for event in &trace.events {
            let host = event.host.as_str();
            match &event.kind {
                EventKind::CallStart { call, method, .. } => {
                    let entry = index.calls.entry((host, *call)).or_default();
                    entry.starts += 1;
                    entry.method.get_or_insert(method.as_str());
                    entry.start.get_or_insert(event.at);
                }
                EventKind::CallEnd {
                    call,
                    outcome,
                    latency,
                    ..
                } => {
                    index
                        .calls
                        .entry((host, *call))
                        .or_default()
                        .ends
                        .push((outcome.as_str(), *latency));
                }
                EventKind::Attempt { call, endpoint, .. } => {
                    index.attempts.push(Attempt {
                        client: host,
                        call: *call,
                        at: event.at,
                        endpoint: endpoint.as_str(),
                    });
                }
                _ => {}
            }
        }
        index
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
            Check::SuccessRate { min } => self.success_rate(filter, *min),
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
            Check::MaxFailedCalls { max } => self.max_failed_calls(filter, *max),
            // Evaluators for the discovery and resilience kinds land in the next commit.
            _ => (
                "an evaluator".to_string(),
                "not evaluated yet".to_string(),
                false,
            ),
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
    fn success_rate(&self, filter: &Filter, min: f64) -> (String, String, bool) {
        let mut total = 0u64;
        let mut failures: BTreeMap<&str, u64> = BTreeMap::new();
        for (_, call) in self.calls(filter) {
            total += 1;
            match call.ends.first() {
                Some((OK, _)) => {}
                Some((outcome, _)) => *failures.entry(outcome).or_default() += 1,
                None => *failures.entry("unresolved").or_default() += 1,
            }
        }
        let wanted = format!(">= {min}");
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
        (wanted, observed, rate >= min)
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
            .filter(|(result, _)| match outcome {
                OutcomeFilter::Any => true,
                OutcomeFilter::Ok => *result == OK,
                OutcomeFilter::Failed => *result != OK,
            })
            .map(|(_, latency)| *latency)
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
            if let Some((outcome, _)) = call.ends.first().filter(|(o, _)| *o != OK) {
                *failures.entry(outcome).or_default() += 1;
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
