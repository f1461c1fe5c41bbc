//! Each evaluator on hand-built traces, passing and failing.

use std::time::Duration;

use super::*;
use crate::trace::Event;

/// Two servers, one client; `expect` is appended as `[[expect]]` tables.
fn scenario(expect: &str) -> Scenario {
    let text = format!(
        r#"name = "t"
description = "evaluator fixture"
duration = "30s"
[[servers]]
group = "server"
replicas = 2
[[clients]]
group = "client"
replicas = 2
targets = ["server"]
mix = [{{ method = "Echo.Echo" }}, {{ method = "Echo.Slow" }}]
rate = 10
{expect}"#
    );
    Scenario::from_str(&text, "t.toml").unwrap_or_else(|e| panic!("{e:#}"))
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Builds traces tersely.
#[derive(Default)]
struct TraceBuilder {
    events: Vec<Event>,
}

impl TraceBuilder {
    fn push(&mut self, at_ms: u64, host: &str, kind: EventKind) -> &mut Self {
        self.events.push(Event {
            at: ms(at_ms),
            host: host.into(),
            kind,
        });
        self
    }

    /// A whole call: start, one attempt to `endpoint`, end with `outcome` after `latency_ms`.
    fn call(
        &mut self,
        at_ms: u64,
        client: &str,
        call: u64,
        endpoint: &str,
        outcome: &str,
        latency_ms: u64,
    ) -> &mut Self {
        self.start(at_ms, client, call, "Echo.Echo");
        self.attempt(at_ms, client, call, endpoint);
        self.end(at_ms + latency_ms, client, call, outcome, latency_ms)
    }

    fn start(&mut self, at_ms: u64, client: &str, call: u64, method: &str) -> &mut Self {
        self.push(
            at_ms,
            client,
            EventKind::CallStart {
                call,
                method: method.into(),
                key: None,
            },
        )
    }

    fn attempt(&mut self, at_ms: u64, client: &str, call: u64, endpoint: &str) -> &mut Self {
        self.push(
            at_ms,
            client,
            EventKind::Attempt {
                call,
                attempt: 1,
                endpoint: endpoint.into(),
            },
        )
    }

    fn end(
        &mut self,
        at_ms: u64,
        client: &str,
        call: u64,
        outcome: &str,
        latency_ms: u64,
    ) -> &mut Self {
        let kind = EventKind::CallEnd {
            call,
            endpoint: None,
            outcome: outcome.into(),
            latency: ms(latency_ms),
            may_have_executed: false,
        };
        self.push(at_ms, client, kind)
    }

    fn build(&mut self) -> Trace {
        Trace {
            events: std::mem::take(&mut self.events),
        }
    }
}

/// The verdict of the file's only expectation (index 1; 0 is the implicit one).
fn only(scenario: &Scenario, trace: &Trace) -> Verdict {
    let verdicts = evaluate(scenario, trace);
    assert_eq!(verdicts.len(), 2, "{verdicts:?}");
    verdicts[1].clone()
}

#[test]
fn exactly_once_passes_when_every_start_has_one_end() {
    // Proves the implicit check accepts a clean trace and counts its calls.
    let trace = TraceBuilder::default()
        .call(0, "client-1", 0, "server-1", "Ok", 5)
        .call(0, "client-2", 0, "server-2", "Ok", 5)
        .build();
    let verdict = &evaluate(&scenario(""), &trace)[0];
    assert!(verdict.pass, "{verdict}");
    assert_eq!(verdict.observed, "2 calls, each resolved once");
    assert_eq!(verdict.line, None);
}

#[test]
fn exactly_once_fails_on_unresolved_double_and_orphan_ends() {
    // Proves each way of breaking "resolved exactly once" is caught and named.
    let trace = TraceBuilder::default()
        .start(0, "client-1", 0, "Echo.Echo")
        .call(0, "client-1", 1, "server-1", "Ok", 5)
        .end(9, "client-1", 1, "Cancelled", 9)
        .end(9, "client-2", 7, "Ok", 9)
        .build();
    let verdict = &evaluate(&scenario(""), &trace)[0];
    assert!(!verdict.pass);
    assert_eq!(
        verdict.observed,
        "1 never resolved (client-1#0); 1 resolved more than once (client-1#1); 1 call.end without call.start (client-2#7)"
    );
}

#[test]
fn success_rate_counts_ok_over_started_calls() {
    // Proves the rate, the failure breakdown, and that an unresolved call counts as a failure.
    let s = scenario("[[expect]]\nkind = \"success_rate\"\nmin = 0.75\n");
    let mut trace = TraceBuilder::default();
    trace
        .call(0, "client-1", 0, "server-1", "Ok", 5)
        .call(1, "client-1", 1, "server-1", "Ok", 5);
    trace.call(2, "client-1", 2, "server-1", "Ok", 5).call(
        3,
        "client-1",
        3,
        "server-2",
        "Unavailable",
        5,
    );
    let verdict = only(&s, &trace.build());
    assert!(verdict.pass, "{verdict}");
    assert_eq!(verdict.observed, "0.7500 (3 of 4 ok; Unavailable x1)");
    trace
        .call(0, "client-1", 0, "server-1", "Ok", 5)
        .call(1, "client-1", 1, "server-2", "Ok", 5);
    trace
        .start(2, "client-1", 2, "Echo.Echo")
        .call(3, "client-1", 3, "server-2", "Internal", 5);
    let verdict = only(&s, &trace.build());
    assert!(!verdict.pass, "{verdict}");
    assert_eq!(
        verdict.observed,
        "0.5000 (2 of 4 ok; Internal x1, unresolved x1)"
    );
}

#[test]
fn success_rate_over_no_calls_fails() {
    // Proves a window with no calls fails instead of passing vacuously.
    let s = scenario("[[expect]]\nkind = \"success_rate\"\nmin = 0.9\nfrom = \"10s\"\n");
    let verdict = only(
        &s,
        &TraceBuilder::default()
            .call(0, "client-1", 0, "server-1", "Ok", 5)
            .build(),
    );
    assert!(!verdict.pass);
    assert_eq!(verdict.observed, "no calls matched");
}

#[test]
fn filters_select_by_client_method_and_start_time() {
    // Proves client, method and [from, to) by call.start time each exclude what they should.
    let s = scenario("[[expect]]\nkind = \"max_failed_calls\"\nmax = 0\nclient = \"client-1\"\nmethod = \"Echo.Echo\"\nfrom = \"1s\"\nto = \"2s\"\n");
    let mut trace = TraceBuilder::default();
    trace.call(1000, "client-1", 0, "server-1", "Ok", 5);
    trace.call(1500, "client-2", 0, "server-1", "Internal", 5); // other client
    trace.call(999, "client-1", 1, "server-1", "Internal", 5); // before the window
    trace.call(2000, "client-1", 2, "server-1", "Internal", 5); // `to` is exclusive
    trace
        .start(1500, "client-1", 3, "Echo.Slow")
        .attempt(1500, "client-1", 3, "server-1"); // other method
    trace.end(1600, "client-1", 3, "Internal", 100);
    trace
        .start(1900, "client-1", 4, "Echo.Echo")
        .end(2500, "client-1", 4, "DeadlineExceeded", 600); // ends after `to`, still counts
    let verdict = only(&s, &trace.build());
    assert!(!verdict.pass);
    assert_eq!(verdict.observed, "1 failed; DeadlineExceeded x1");
}

#[test]
fn latency_uses_nearest_rank() {
    // Proves p99 of 1..=100ms is 99ms, p100 is the max and p50 is 50ms.
    let mut samples: Vec<Duration> = (1..=100).rev().map(ms).collect();
    assert_eq!(nearest_rank(&mut samples, 99.0), Some(ms(99)));
    assert_eq!(nearest_rank(&mut samples, 100.0), Some(ms(100)));
    assert_eq!(nearest_rank(&mut samples, 50.0), Some(ms(50)));
    assert_eq!(nearest_rank(&mut samples, 0.1), Some(ms(1)));
    assert_eq!(nearest_rank(&mut [ms(7)], 99.9), Some(ms(7)));
    assert_eq!(nearest_rank(&mut [], 50.0), None);
}

#[test]
fn latency_bounds_pass_and_fail() {
    // Proves min and max bounds are both enforced on the percentile.
    let mut trace = TraceBuilder::default();
    for (i, latency) in [10, 20, 30, 400].into_iter().enumerate() {
        trace.call(
            i as u64 * 10,
            "client-1",
            i as u64,
            "server-1",
            "Ok",
            latency,
        );
    }
    let trace = trace.build();
    let within = scenario("[[expect]]\nkind = \"latency\"\npercentile = 75\nmax = \"30ms\"\n");
    let verdict = only(&within, &trace);
    assert!(verdict.pass, "{verdict}");
    assert_eq!(
        (verdict.wanted.as_str(), verdict.observed.as_str()),
        ("<= 30ms", "p75 = 30ms over 4 calls")
    );
    let too_slow = scenario("[[expect]]\nkind = \"latency\"\npercentile = 100\nmax = \"300ms\"\n");
    assert!(!only(&too_slow, &trace).pass);
    let too_fast = scenario(
        "[[expect]]\nkind = \"latency\"\npercentile = 50\nmin = \"100ms\"\nmax = \"1s\"\n",
    );
    let verdict = only(&too_fast, &trace);
    assert!(!verdict.pass);
    assert_eq!(verdict.wanted, "100ms..=1s");
}

#[test]
fn latency_outcome_filter_selects_failures() {
    // Proves outcome = "failed" looks only at failures, and fails when there are none.
    let s = scenario(
        "[[expect]]\nkind = \"latency\"\npercentile = 100\noutcome = \"failed\"\nmax = \"50ms\"\n",
    );
    let mixed = TraceBuilder::default()
        .call(0, "client-1", 0, "server-1", "Ok", 900)
        .call(0, "client-1", 1, "server-1", "Unavailable", 40)
        .build();
    assert!(only(&s, &mixed).pass);
    let all_ok = TraceBuilder::default()
        .call(0, "client-1", 0, "server-1", "Ok", 10)
        .build();
    let verdict = only(&s, &all_ok);
    assert!(!verdict.pass);
    assert_eq!(verdict.observed, "no resolved calls matched");
}

#[test]
fn call_count_counts_attempts_to_the_endpoint() {
    // Proves retries count per attempt (load is where attempts went) and bounds are inclusive.
    let s =
        scenario("[[expect]]\nkind = \"call_count\"\nendpoint = \"server-2\"\nmin = 2\nmax = 2\n");
    let mut trace = TraceBuilder::default();
    trace
        .start(0, "client-1", 0, "Echo.Echo")
        .attempt(0, "client-1", 0, "server-1")
        .attempt(5, "client-1", 0, "server-2");
    trace
        .end(10, "client-1", 0, "Ok", 10)
        .call(20, "client-2", 0, "server-2", "Ok", 5);
    let verdict = only(&s, &trace.build());
    assert!(verdict.pass, "{verdict}");
    assert_eq!(verdict.observed, "2 attempts");
    let none = TraceBuilder::default()
        .call(0, "client-1", 0, "server-1", "Ok", 5)
        .build();
    assert!(!only(&s, &none).pass);
}

#[test]
fn call_count_of_a_group_sums_its_hosts() {
    // Proves an endpoint group counts attempts to any of its hosts.
    let s = scenario("[[expect]]\nkind = \"call_count\"\nendpoint = \"server\"\nmin = 2\n");
    let trace = TraceBuilder::default()
        .call(0, "client-1", 0, "server-1", "Ok", 5)
        .call(0, "client-1", 1, "server-2", "Ok", 5)
        .build();
    assert!(only(&s, &trace).pass);
}

#[test]
fn call_share_is_a_fraction_of_matching_attempts() {
    // Proves the share's arithmetic, a failing skew, and that no attempts at all fails.
    let s = scenario(
        "[[expect]]\nkind = \"call_share\"\nendpoint = \"server-1\"\nmin = 0.4\nmax = 0.6\n",
    );
    let even = TraceBuilder::default()
        .call(0, "client-1", 0, "server-1", "Ok", 5)
        .call(0, "client-1", 1, "server-2", "Ok", 5)
        .build();
    let verdict = only(&s, &even);
    assert!(verdict.pass, "{verdict}");
    assert_eq!(verdict.observed, "0.5000 (1 of 2 attempts)");
    let mut skewed = TraceBuilder::default();
    for call in 0..4 {
        skewed.call(0, "client-1", call, "server-1", "Ok", 5);
    }
    skewed.call(0, "client-1", 4, "server-2", "Ok", 5);
    assert!(!only(&s, &skewed.build()).pass);
    let verdict = only(&s, &Trace::default());
    assert!(!verdict.pass);
    assert_eq!(verdict.observed, "no attempts matched");
}

#[test]
fn no_calls_looks_at_attempts_in_the_window() {
    // Proves an attempt inside [from, to) fails the check and one outside does not.
    let s = scenario(
        "[[expect]]\nkind = \"no_calls\"\nendpoint = \"server-1\"\nfrom = \"10s\"\nto = \"15s\"\n",
    );
    let outside = TraceBuilder::default()
        .call(9_999, "client-1", 0, "server-1", "Ok", 5)
        .call(15_000, "client-1", 1, "server-1", "Ok", 5)
        .build();
    assert!(only(&s, &outside).pass);
    let inside = TraceBuilder::default()
        .call(12_000, "client-2", 3, "server-1", "Ok", 5)
        .call(12_500, "client-2", 4, "server-2", "Ok", 5)
        .build();
    let verdict = only(&s, &inside);
    assert!(!verdict.pass);
    assert_eq!(
        verdict.observed,
        "1 attempts, first at 12s (client-2#3 to server-1)"
    );
}

#[test]
fn max_failed_calls_allows_up_to_the_bound() {
    // Proves the bound is inclusive and one more failure fails it.
    let s = scenario("[[expect]]\nkind = \"max_failed_calls\"\nmax = 1\n");
    let mut trace = TraceBuilder::default();
    trace.call(0, "client-1", 0, "server-1", "Ok", 5).call(
        0,
        "client-1",
        1,
        "server-1",
        "Unavailable",
        5,
    );
    let one = trace.build();
    assert!(only(&s, &one).pass);
    trace
        .call(0, "client-1", 0, "server-1", "Unavailable", 5)
        .call(0, "client-1", 1, "server-2", "Unavailable", 5);
    let verdict = only(&s, &trace.build());
    assert!(!verdict.pass);
    assert_eq!(
        (verdict.wanted.as_str(), verdict.observed.as_str()),
        ("<= 1", "2 failed; Unavailable x2")
    );
}

#[test]
fn verdicts_carry_the_expectation_name_and_line() {
    // Proves reports can point at the [[expect]] entry that failed.
    let s = scenario("[[expect]]\nname = \"healthy\"\nkind = \"success_rate\"\nmin = 1\n");
    let verdict = only(&s, &Trace::default());
    assert_eq!((verdict.name.as_str(), verdict.line), ("healthy", Some(13)));
    assert_eq!(
        verdict.to_string(),
        "FAIL healthy: wanted >= 1, observed no calls matched"
    );
}
