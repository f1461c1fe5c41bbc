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

    /// A call with hash key `key` answered Ok by `endpoint` after 5ms.
    fn keyed(
        &mut self,
        at_ms: u64,
        client: &str,
        call: u64,
        key: &str,
        endpoint: &str,
    ) -> &mut Self {
        self.push(
            at_ms,
            client,
            EventKind::CallStart {
                call,
                method: "Echo.Echo".into(),
                key: Some(key.into()),
            },
        );
        self.attempt(at_ms, client, call, endpoint);
        self.end_full(at_ms + 5, client, call, Some(endpoint), "Ok", false)
    }

    /// A `call.end` with every field chosen.
    fn end_full(
        &mut self,
        at_ms: u64,
        client: &str,
        call: u64,
        endpoint: Option<&str>,
        outcome: &str,
        may_have_executed: bool,
    ) -> &mut Self {
        let kind = EventKind::CallEnd {
            call,
            endpoint: endpoint.map(str::to_string),
            outcome: outcome.into(),
            latency: ms(5),
            may_have_executed,
        };
        self.push(at_ms, client, kind)
    }

    /// `server.executed` on `server` for `client`'s call.
    fn executed(&mut self, at_ms: u64, server: &str, client: &str, call: u64) -> &mut Self {
        let kind = EventKind::Executed {
            client: client.into(),
            call,
            method: "Echo.Echo".into(),
        };
        self.push(at_ms, server, kind)
    }

    /// `server.done` on `server` for `client`'s call.
    fn done(&mut self, at_ms: u64, server: &str, client: &str, call: u64) -> &mut Self {
        let kind = EventKind::HandlerDone {
            client: client.into(),
            call,
            method: "Echo.Echo".into(),
            outcome: "cancelled".into(),
        };
        self.push(at_ms, server, kind)
    }

    /// A breaker transition of `client`'s breaker for `endpoint`.
    fn breaker(
        &mut self,
        at_ms: u64,
        client: &str,
        endpoint: &str,
        from: &str,
        to: &str,
    ) -> &mut Self {
        let kind = EventKind::Breaker {
            endpoint: endpoint.into(),
            from: from.into(),
            to: to.into(),
        };
        self.push(at_ms, client, kind)
    }

    fn build(&mut self) -> Trace {
        Trace {
            events: std::mem::take(&mut self.events),
        }
    }
}

/// The verdict of the file's only expectation (index 2; 0 and 1 are the implicit ones).
fn only(scenario: &Scenario, trace: &Trace) -> Verdict {
    let verdicts = evaluate(scenario, trace);
    assert_eq!(verdicts.len(), 3, "{verdicts:?}");
    verdicts[2].clone()
}

/// Like [`scenario`], but the clients retry (failover), have breakers, send
/// hash keys and time out after 1s: what the resilience and key kinds need.
fn resilient(expect: &str) -> Scenario {
    let text = format!(
        r#"name = "t"
description = "evaluator fixture"
duration = "30s"
[[servers]]
group = "server"
replicas = 3
[[clients]]
group = "client"
replicas = 2
targets = ["server"]
rate = 10
idempotent = true
timeout = "1s"
fail_mode = "failover"
hash_keys = 10
[clients.retry]
max_attempts = 3
[clients.breaker]
{expect}"#
    );
    Scenario::from_str(&text, "t.toml").unwrap_or_else(|e| panic!("{e:#}"))
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
    assert_eq!(evaluate(&s, &Trace::default())[1].line, None);
    assert_eq!(
        verdict.to_string(),
        "FAIL healthy: wanted >= 1, observed no calls matched"
    );
}

#[test]
fn not_executed_calls_that_ran_fail_the_implicit_check() {
    // Proves the second implicit verdict: a failure reported with
    // may_have_executed=false must have no server.executed, while a failure that
    // may have executed, or an Ok call, may have any.
    let s = scenario("");
    let mut trace = TraceBuilder::default();
    trace
        .start(0, "client-1", 0, "Echo.Echo")
        .attempt(0, "client-1", 0, "server-1")
        .end_full(9, "client-1", 0, Some("server-1"), "Unavailable", false);
    trace
        .start(0, "client-1", 1, "Echo.Echo")
        .executed(2, "server-1", "client-1", 1)
        .end_full(9, "client-1", 1, Some("server-1"), "Unavailable", true);
    let clean = trace.build();
    let verdict = &evaluate(&s, &clean)[1];
    assert!(verdict.pass, "{verdict}");
    assert_eq!(verdict.name, "no call reported not-executed was executed");
    assert_eq!(verdict.observed, "1 calls reported not executed, none ran");
    trace
        .start(0, "client-1", 0, "Echo.Echo")
        .executed(2, "server-1", "client-1", 0)
        .end_full(9, "client-1", 0, Some("server-1"), "Unavailable", false);
    let verdict = &evaluate(&s, &trace.build())[1];
    assert!(!verdict.pass);
    assert_eq!(
        verdict.observed,
        "1 of 1 calls reported not executed ran anyway (client-1#0 ran 1x)"
    );
}

#[test]
fn breaker_opened_counts_openings_in_the_window() {
    // Proves openings of the named endpoint inside [from, to) are counted, others not.
    let s = resilient("[[expect]]\nkind = \"breaker_opened\"\nendpoint = \"server-1\"\nmin = 2\nfrom = \"10s\"\nto = \"20s\"\n");
    let mut trace = TraceBuilder::default();
    trace
        .breaker(9_000, "client-1", "server-1", "closed", "open") // before the window
        .breaker(11_000, "client-1", "server-1", "closed", "open")
        .breaker(12_000, "client-1", "server-2", "closed", "open"); // other endpoint
    let one = trace.build();
    let verdict = only(&s, &one);
    assert!(!verdict.pass);
    assert_eq!(verdict.observed, "1 openings, first at 11s (client-1)");
    trace
        .breaker(11_000, "client-1", "server-1", "closed", "open")
        .breaker(13_000, "client-2", "server-1", "closed", "open");
    let verdict = only(&s, &trace.build());
    assert!(verdict.pass, "{verdict}");
    assert_eq!(verdict.wanted, ">= 2 openings of server-1's breaker");
}

#[test]
fn breaker_closed_needs_a_close_in_the_window_and_says_where_it_stuck() {
    // Proves a close inside the window passes and a breaker stuck half-open fails
    // with its last transition named.
    let s = resilient(
        "[[expect]]\nkind = \"breaker_closed\"\nendpoint = \"server-2\"\nfrom = \"15s\"\n",
    );
    let closed = TraceBuilder::default()
        .breaker(12_000, "client-1", "server-2", "closed", "open")
        .breaker(16_000, "client-1", "server-2", "half_open", "closed")
        .build();
    assert!(only(&s, &closed).pass);
    let stuck = TraceBuilder::default()
        .breaker(12_000, "client-1", "server-2", "closed", "open")
        .breaker(13_000, "client-1", "server-2", "half_open", "closed") // before the window
        .breaker(16_000, "client-1", "server-2", "closed", "open")
        .breaker(19_000, "client-1", "server-2", "open", "half_open")
        .build();
    let verdict = only(&s, &stuck);
    assert!(!verdict.pass);
    assert_eq!(
        verdict.observed,
        "never closed; last transition: half_open at 19s (client-1)"
    );
}

#[test]
fn breaker_min_open_judges_every_finished_open_period() {
    // Proves each client's open → next-transition period is measured, a short one
    // fails naming it, an unfinished one is not judged, and none at all fails.
    let s = resilient(
        "[[expect]]\nkind = \"breaker_min_open\"\nendpoint = \"server-1\"\nmin = \"2s\"\n",
    );
    let mut trace = TraceBuilder::default();
    trace
        .breaker(1_000, "client-1", "server-1", "closed", "open")
        .breaker(2_000, "client-2", "server-1", "closed", "open")
        .breaker(4_000, "client-1", "server-1", "open", "half_open") // 3s
        .breaker(4_500, "client-2", "server-1", "open", "half_open") // 2.5s
        .breaker(4_600, "client-2", "server-1", "half_open", "open")
        .breaker(4_700, "client-1", "server-1", "half_open", "open"); // never ends
    trace.breaker(6_600, "client-2", "server-1", "open", "half_open"); // 2s, inclusive
    let verdict = only(&s, &trace.build());
    assert!(verdict.pass, "{verdict}");
    assert_eq!(
        verdict.observed,
        "0 of 3 periods shorter; shortest 2s (client-2, opened at 4.6s)"
    );
    let flapping = TraceBuilder::default()
        .breaker(1_000, "client-1", "server-1", "closed", "open")
        .breaker(1_500, "client-1", "server-1", "open", "half_open")
        .build();
    let verdict = only(&s, &flapping);
    assert!(!verdict.pass);
    assert_eq!(
        verdict.observed,
        "1 of 1 periods shorter; shortest 500ms (client-1, opened at 1s)"
    );
    let never = TraceBuilder::default()
        .breaker(1_000, "client-1", "server-1", "closed", "open")
        .build();
    let verdict = only(&s, &never);
    assert!(!verdict.pass);
    assert_eq!(
        verdict.observed,
        "no open period ended in the window; last transition: open at 1s (client-1)"
    );
}

#[test]
fn retry_amplification_is_attempts_per_call_started_in_the_window() {
    // Proves attempts of in-window calls count even when sent later, and the
    // bound is inclusive.
    let s = resilient("[[expect]]\nkind = \"retry_amplification\"\nmax = 1.5\nfrom = \"1s\"\n");
    let mut trace = TraceBuilder::default();
    trace.call(0, "client-1", 0, "server-1", "Ok", 5); // before the window
    trace
        .start(1_000, "client-1", 1, "Echo.Echo")
        .attempt(1_000, "client-1", 1, "server-1")
        .attempt(1_100, "client-1", 1, "server-2")
        .end(1_200, "client-1", 1, "Ok", 200);
    trace.call(1_000, "client-2", 0, "server-3", "Ok", 5);
    let verdict = only(&s, &trace.build());
    assert!(verdict.pass, "{verdict}");
    assert_eq!(verdict.observed, "1.5000 (3 attempts for 2 calls)");
    trace
        .start(1_000, "client-1", 1, "Echo.Echo")
        .attempt(1_000, "client-1", 1, "server-1")
        .attempt(1_100, "client-1", 1, "server-2")
        .attempt(1_200, "client-1", 1, "server-3")
        .end(1_300, "client-1", 1, "Unavailable", 300);
    trace.call(1_000, "client-2", 0, "server-3", "Ok", 5);
    let verdict = only(&s, &trace.build());
    assert!(!verdict.pass);
    assert_eq!(verdict.observed, "2.0000 (4 attempts for 2 calls)");
    assert!(!only(&s, &Trace::default()).pass);
}

#[test]
fn executions_per_call_catches_a_call_run_twice() {
    // Proves server.executed events are counted per (client, call) across servers.
    let s = resilient("[[expect]]\nkind = \"executions_per_call\"\nmax = 1\n");
    let mut trace = TraceBuilder::default();
    trace
        .call(0, "client-1", 0, "server-1", "Ok", 5)
        .executed(1, "server-1", "client-1", 0)
        .call(0, "client-2", 0, "server-2", "Ok", 5)
        .executed(1, "server-2", "client-2", 0);
    let verdict = only(&s, &trace.build());
    assert!(verdict.pass, "{verdict}");
    assert_eq!(verdict.observed, "at most 1 (client-1#0) over 2 calls");
    trace
        .call(0, "client-1", 0, "server-1", "Unavailable", 5)
        .executed(1, "server-1", "client-1", 0)
        .executed(3, "server-2", "client-1", 0);
    let verdict = only(&s, &trace.build());
    assert!(!verdict.pass);
    assert_eq!(verdict.observed, "1 of 1 calls over (client-1#0 ran 2x)");
}

#[test]
fn key_affinity_counts_the_endpoints_that_answered_each_key() {
    // Proves a key answered by two endpoints fails max_endpoints = 1, failed calls
    // do not count, and no keyed call at all fails.
    let s = resilient("[[expect]]\nkind = \"key_affinity\"\n");
    let mut trace = TraceBuilder::default();
    trace
        .keyed(0, "client-1", 0, "k1", "server-1")
        .keyed(10, "client-2", 0, "k1", "server-1")
        .keyed(20, "client-1", 1, "k2", "server-3");
    trace
        .push(
            30,
            "client-1",
            EventKind::CallStart {
                call: 2,
                method: "Echo.Echo".into(),
                key: Some("k1".into()),
            },
        )
        .attempt(30, "client-1", 2, "server-2")
        .end_full(35, "client-1", 2, Some("server-2"), "Unavailable", false);
    let verdict = only(&s, &trace.build());
    assert!(verdict.pass, "{verdict}");
    assert_eq!(verdict.observed, "2 keys, at most 1 endpoints each");
    trace
        .keyed(0, "client-1", 0, "k1", "server-1")
        .keyed(10, "client-2", 0, "k1", "server-2");
    let verdict = only(&s, &trace.build());
    assert!(!verdict.pass);
    assert_eq!(
        verdict.observed,
        "1 of 1 keys spread wider (k1: server-1+server-2)"
    );
    assert!(!only(&s, &Trace::default()).pass);
}

#[test]
fn keys_moved_only_from_allows_moves_off_the_named_endpoint_only() {
    // Proves each key's last endpoint before `at` is compared with its first after:
    // moves off server-2 pass, a move off server-1 fails, and no key on both sides fails.
    let s = resilient(
        "[[expect]]\nkind = \"keys_moved_only_from\"\nendpoint = \"server-2\"\nat = \"15s\"\n",
    );
    let mut trace = TraceBuilder::default();
    trace
        .keyed(1_000, "client-1", 0, "k1", "server-1")
        .keyed(2_000, "client-1", 1, "k2", "server-3") // superseded by the later sighting
        .keyed(14_000, "client-1", 2, "k2", "server-2")
        .keyed(16_000, "client-1", 3, "k1", "server-1")
        .keyed(16_000, "client-2", 0, "k2", "server-3")
        .keyed(17_000, "client-2", 1, "k2", "server-1"); // later than the first after
    let verdict = only(&s, &trace.build());
    assert!(verdict.pass, "{verdict}");
    assert_eq!(
        verdict.observed,
        "2 keys seen on both sides, 1 moved, all from server-2"
    );
    trace
        .keyed(1_000, "client-1", 0, "k1", "server-1")
        .keyed(16_000, "client-1", 1, "k1", "server-3");
    let verdict = only(&s, &trace.build());
    assert!(!verdict.pass);
    assert_eq!(
        verdict.observed,
        "1 of 1 moved keys were not on server-2 (k1: server-1 -> server-3)"
    );
    let one_side = TraceBuilder::default()
        .keyed(1_000, "client-1", 0, "k1", "server-1")
        .build();
    assert!(!only(&s, &one_side).pass);
}

#[test]
fn handlers_end_by_deadline_checks_every_hop_against_the_callers_deadline() {
    // Proves a handler (forwarded hops included, named by the original call) must
    // end by call start + client timeout (1s) + slack, and one that never ends fails.
    let s = resilient("[[expect]]\nkind = \"handlers_end_by_deadline\"\nslack = \"20ms\"\n");
    let mut trace = TraceBuilder::default();
    trace
        .start(1_000, "client-1", 0, "Echo.Echo")
        .executed(1_003, "server-1", "client-1", 0)
        .executed(1_006, "server-2", "client-1", 0) // the forwarded hop
        .end(2_000, "client-1", 0, "DeadlineExceeded", 1_000)
        .done(2_010, "server-1", "client-1", 0)
        .done(2_020, "server-2", "client-1", 0); // exactly at the bound
    let verdict = only(&s, &trace.build());
    assert!(verdict.pass, "{verdict}");
    assert_eq!(
        verdict.observed,
        "2 handler runs, all in time; tightest margin 0ns"
    );
    trace
        .start(1_000, "client-1", 0, "Echo.Echo")
        .executed(1_003, "server-1", "client-1", 0)
        .executed(1_006, "server-2", "client-1", 0)
        .end(2_000, "client-1", 0, "DeadlineExceeded", 1_000)
        .done(2_010, "server-1", "client-1", 0)
        .done(2_500, "server-2", "client-1", 0);
    trace
        .start(1_000, "client-2", 0, "Echo.Echo")
        .executed(1_003, "server-3", "client-2", 0);
    trace.end(2_000, "client-2", 0, "DeadlineExceeded", 1_000);
    let verdict = only(&s, &trace.build());
    assert!(!verdict.pass);
    assert_eq!(
        verdict.observed,
        "1 ended after the deadline (client-1#0 on server-2 480ms late); 1 never ended (client-2#0 on server-3)"
    );
    assert!(!only(&s, &Trace::default()).pass);
}
