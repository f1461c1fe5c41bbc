//! Expectations: kinds, typed values, windows, filters that must match a call.

use super::*;

#[test]
fn misspelled_expectation_kind_suggests_the_kind() {
    // Proves expectation kinds get the same treatment as fault kinds.
    let error = error_appending("[[expect]]\nkind = \"sucess_rate\"\nmin = 0.9\n");
    assert_eq!(
        error,
        "x.toml:17: unknown expectation kind \"sucess_rate\" (did you mean \"success_rate\"?)"
    );
}

#[test]
fn percentile_outside_zero_to_hundred_is_rejected() {
    // Proves percentiles live in (0, 100] and 100 is accepted as the maximum.
    let error = error_appending("[[expect]]\nkind = \"latency\"\npercentile = 0\nmax = \"1s\"\n");
    assert!(
        error.starts_with("x.toml:18: percentile 0 is out of range"),
        "{error}"
    );
    let error =
        error_appending("[[expect]]\nkind = \"latency\"\npercentile = 100.5\nmax = \"1s\"\n");
    assert!(
        error.starts_with("x.toml:18: percentile 100.5 is out of range"),
        "{error}"
    );
    let s = ok_appending("[[expect]]\nkind = \"latency\"\npercentile = 100\nmax = \"1s\"\n");
    assert!(matches!(
        s.expectations[0].check,
        Check::Latency {
            percentile: 100.0,
            ..
        }
    ));
}

#[test]
fn expectation_values_are_typed_per_kind() {
    // Proves min/max mean a duration for latency and a fraction for success_rate.
    let error = error_appending("[[expect]]\nkind = \"latency\"\npercentile = 99\nmax = 20\n");
    assert_eq!(
        error,
        "x.toml:19: max must be a duration, got 20 (e.g. max = \"50ms\")"
    );
    let error = error_appending("[[expect]]\nkind = \"success_rate\"\nmin = 99.9\n");
    assert_eq!(
        error,
        "x.toml:18: min = 99.9 is out of range (min is a fraction from 0 to 1; 0.999 means 99.9%)"
    );
    let error = error_appending(
        "[[expect]]\nkind = \"success_rate\"\nmin = 0.9\nendpoint = \"server-1\"\n",
    );
    assert!(
        error
            .starts_with("x.toml:19: expectation kind \"success_rate\" does not take \"endpoint\""),
        "{error}"
    );
}

#[test]
fn expectation_windows_are_checked() {
    // Proves an empty window, a window past the end and a windowless no_calls are errors.
    let error = error_appending(
        "[[expect]]\nkind = \"success_rate\"\nmin = 0.9\nfrom = \"10s\"\nto = \"5s\"\n",
    );
    assert!(
        error.starts_with("x.toml:20: empty window: to 5s is not after from 10s"),
        "{error}"
    );
    let error = error_appending("[[expect]]\nkind = \"success_rate\"\nmin = 0.9\nto = \"40s\"\n");
    assert!(
        error.starts_with("x.toml:19: to 40s is after the end of the scenario (30s)"),
        "{error}"
    );
    let error = error_appending("[[expect]]\nkind = \"no_calls\"\nendpoint = \"server-1\"\n");
    assert!(
        error.starts_with("x.toml:17: no_calls needs a window: from and to"),
        "{error}"
    );
}

#[test]
fn expectation_method_must_be_called_by_some_client() {
    // Proves a misspelled method filter is caught instead of matching nothing.
    let error =
        error_appending("[[expect]]\nkind = \"success_rate\"\nmin = 0.9\nmethod = \"Echo.Eho\"\n");
    assert_eq!(
        error,
        "x.toml:19: no client calls method \"Echo.Eho\" (did you mean \"Echo.Echo\"?)"
    );
}

/// `BASE` whose client has a breaker and hash keys, plus `extra`.
fn ok_resilient(extra: &str) -> Result<Scenario, ScenarioError> {
    let text = BASE.replace("rate = 100", "rate = 100\nhash_keys = 50");
    parse(&format!("{text}[clients.breaker]\n{extra}"))
}

#[test]
fn new_expectation_kinds_parse_with_their_defaults() {
    // Proves each new kind's keys and defaults (breaker_opened min 1, key_affinity
    // max_endpoints 1).
    let s = ok_resilient(concat!(
        "[[expect]]\nkind = \"breaker_opened\"\nendpoint = \"server-1\"\n",
        "[[expect]]\nkind = \"breaker_closed\"\nendpoint = \"server-1\"\nfrom = \"10s\"\n",
        "[[expect]]\nkind = \"breaker_min_open\"\nendpoint = \"server-1\"\nmin = \"2s\"\n",
        "[[expect]]\nkind = \"retry_amplification\"\nmax = 1.2\n",
        "[[expect]]\nkind = \"executions_per_call\"\nmax = 1\n",
        "[[expect]]\nkind = \"key_affinity\"\nto = \"15s\"\n",
        "[[expect]]\nkind = \"keys_moved_only_from\"\nendpoint = \"server-2\"\nat = \"15s\"\n",
        "[[expect]]\nkind = \"handlers_end_by_deadline\"\nslack = \"20ms\"\n",
    ))
    .unwrap_or_else(|e| panic!("{e:#}"));
    let checks: Vec<&Check> = s.expectations.iter().map(|e| &e.check).collect();
    assert_eq!(
        checks,
        [
            &Check::BreakerOpened {
                endpoint: "server-1".into(),
                min: 1
            },
            &Check::BreakerClosed {
                endpoint: "server-1".into()
            },
            &Check::BreakerMinOpen {
                endpoint: "server-1".into(),
                min: Duration::from_secs(2)
            },
            &Check::RetryAmplification { max: 1.2 },
            &Check::ExecutionsPerCall { max: 1 },
            &Check::KeyAffinity { max_endpoints: 1 },
            &Check::KeysMovedOnlyFrom {
                endpoint: "server-2".into(),
                at: Duration::from_secs(15)
            },
            &Check::HandlersEndByDeadline {
                slack: Duration::from_millis(20)
            },
        ]
    );
    assert_eq!(
        s.expectations[6].name,
        "keys_moved_only_from endpoint=server-2 at=15s"
    );
}

#[test]
fn new_expectation_kinds_refuse_what_cannot_be_checked() {
    // Proves breaker kinds need a breaker and take no method, key kinds need hash
    // keys, single-endpoint kinds refuse groups, and bounds are range-checked.
    let error = error_appending("[[expect]]\nkind = \"breaker_opened\"\nendpoint = \"server-1\"\n");
    assert!(
        error.starts_with(
            "x.toml:17: breaker_opened: no client it looks at has a [clients.breaker]"
        ),
        "{error}"
    );
    let error = error_appending("[[expect]]\nkind = \"key_affinity\"\n");
    assert!(
        error.starts_with("x.toml:17: key_affinity: no client it looks at sends hash keys"),
        "{error}"
    );
    let fails = |extra: &str| ok_resilient(extra).map(|_| ()).unwrap_err().to_string();
    let error = fails(
        "[[expect]]\nkind = \"breaker_closed\"\nendpoint = \"server-1\"\nmethod = \"Echo.Echo\"\n",
    );
    assert!(
        error.starts_with("x.toml:21: breaker_closed takes no method"),
        "{error}"
    );
    let error = fails("[[expect]]\nkind = \"breaker_opened\"\nendpoint = \"server\"\n");
    assert_eq!(error, "x.toml:20: breaker_opened follows one server host, not the group \"server\" (name one of: server-1, server-2, server-3; add an expectation per host)");
    let error = fails("[[expect]]\nkind = \"retry_amplification\"\nmax = 0.5\n");
    assert!(
        error.starts_with("x.toml:20: max = 0.5 is out of range"),
        "{error}"
    );
    let error = fails("[[expect]]\nkind = \"executions_per_call\"\nmax = 0\n");
    assert!(
        error.starts_with("x.toml:20: max must be a whole number ≥ 1, got 0"),
        "{error}"
    );
    let error = fails("[[expect]]\nkind = \"key_affinity\"\nmax_endpoints = 0\n");
    assert!(
        error.starts_with("x.toml:20: max_endpoints = 0 is out of range"),
        "{error}"
    );
    let error = fails("[[expect]]\nkind = \"keys_moved_only_from\"\nendpoint = \"server-1\"\nat = \"15s\"\nto = \"10s\"\n");
    assert!(
        error.starts_with("x.toml:21: at 15s is not inside the window and the run"),
        "{error}"
    );
    let error = fails("[[expect]]\nkind = \"handlers_end_by_deadline\"\n");
    assert!(
        error.starts_with(
            "x.toml:19: expectation kind \"handlers_end_by_deadline\" needs \"slack\""
        ),
        "{error}"
    );
}

#[test]
fn success_rate_takes_bounds_in_both_directions_and_needs_one() {
    // Proves an upper bound is accepted (to show a fault had an effect), a
    // bare success_rate is refused, and an impossible pair is refused.
    let s = ok_appending("[[expect]]\nkind = \"success_rate\"\nmax = 0.9\n");
    assert_eq!(
        s.expectations[0].check,
        Check::SuccessRate {
            min: 0.0,
            max: Some(0.9)
        }
    );
    let error = error_appending("[[expect]]\nkind = \"success_rate\"\n");
    assert!(error.contains("success_rate needs a bound"), "{error}");
    let error = error_appending("[[expect]]\nkind = \"success_rate\"\nmin = 0.9\nmax = 0.5\n");
    assert!(error.contains("min 0.9 is above max 0.5"), "{error}");
}

#[test]
fn failed_calls_bounds_and_the_may_have_executed_filter_parse() {
    // Proves failed_calls takes min and/or max, and any expectation may filter
    // calls by may_have_executed.
    let s =
        ok_appending("[[expect]]\nkind = \"failed_calls\"\nmin = 1\nmay_have_executed = false\n");
    assert_eq!(
        s.expectations[0].check,
        Check::FailedCalls {
            min: Some(1),
            max: None
        }
    );
    assert_eq!(s.expectations[0].filter.may_have_executed, Some(false));
    let error = error_appending("[[expect]]\nkind = \"failed_calls\"\n");
    assert!(error.contains("failed_calls needs a bound"), "{error}");
}
