//! Client groups: load, endpoints, balancer and the resilience tables (checked
//! by core's own `validate()`), each mistake at its line.

use super::*;

#[test]
fn rate_and_concurrency_are_exclusive_and_one_is_required() {
    // Proves open and closed loop cannot be mixed, and a client must have a load.
    let error = error_replacing("rate = 100", "rate = 100\nconcurrency = 4");
    assert_eq!(error, "x.toml:13: both rate and concurrency are set (choose open loop (rate) or closed loop (concurrency))");
    let error = error_replacing("rate = 100", "");
    assert!(
        error.starts_with("x.toml:10: client group \"client\" sets neither rate nor concurrency"),
        "{error}"
    );
    let s =
        parse(&BASE.replace("rate = 100", "concurrency = 4")).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(s.clients[0].workload.load, Load::Closed { concurrency: 4 });
}

#[test]
fn resilience_defaults_are_no_retries_no_breaker_no_budget_no_hedge() {
    // Proves a client without resilience keys behaves like a plain client:
    // failfast, one attempt, nothing else — and methods are not idempotent.
    let s = parse(BASE).unwrap_or_else(|e| panic!("{e:#}"));
    let r = &s.clients[0].resilience;
    assert_eq!(r.fail_mode, squall::FailMode::FailFast);
    assert_eq!(r.retry.max_attempts, 1);
    assert_eq!(
        r.retry.retryable_codes,
        squall::RetryPolicy::default().retryable_codes
    );
    assert_eq!((&r.breaker, &r.budget, &r.hedge), (&None, &None, &None));
    assert!(!s.clients[0].workload.mix[0].idempotent);
}

#[test]
fn resilience_tables_fill_core_configs_over_their_defaults() {
    // Proves each key lands in core's field (renamed ones included) and unwritten
    // keys keep core's defaults.
    let s = parse(&BASE.replace(
        "rate = 100",
        concat!(
            "rate = 100\nfail_mode = \"failover\"\nidempotent = true\nbalancer = \"p2c_ewma\"\npool_size = 2\n",
            "[clients.retry]\nmax_attempts = 3\nbackoff = { initial = \"20ms\", max = \"200ms\", multiplier = 3, jitter = 0.2 }\ncodes = [\"Unavailable\"]\n",
            "[clients.breaker]\nconsecutive_failures = 0\nfailure_rate = 0.3\nwindow = 40\nslow_call = \"500ms\"\nopen = \"2s\"\n",
            "[clients.budget]\nratio = 0.1\n",
            "[clients.hedge]\ndelay = \"20ms\"\nmax_extra = 0.05\n",
        ),
    ))
    .unwrap_or_else(|e| panic!("{e:#}"));
    let client = &s.clients[0];
    assert_eq!(
        (client.balancer, client.pool_size),
        (squall::BalancerKind::P2cEwma, 2)
    );
    assert!(client.workload.mix[0].idempotent);
    let r = &client.resilience;
    assert_eq!(r.fail_mode, squall::FailMode::FailOver);
    assert_eq!(r.retry.max_attempts, 3);
    assert_eq!(
        r.retry.backoff,
        squall::Backoff {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(200),
            multiplier: 3.0,
            jitter: squall::Jitter::Proportional(0.2),
        }
    );
    assert_eq!(r.retry.retryable_codes.len(), 1);
    let breaker = r.breaker.clone().expect("breaker table");
    let defaults = squall::BreakerConfig::default();
    assert_eq!(breaker.consecutive_failures, None, "0 disables the rule");
    assert_eq!(
        (breaker.failure_rate_threshold, breaker.window_size),
        (0.3, 40)
    );
    assert_eq!(
        breaker.slow_call_threshold,
        Some(Duration::from_millis(500))
    );
    assert_eq!(breaker.open_base, Duration::from_secs(2));
    assert_eq!(
        (breaker.open_max, breaker.minimum_calls),
        (defaults.open_max, defaults.minimum_calls)
    );
    let budget = r.budget.expect("budget table");
    assert_eq!(
        (budget.retry_ratio, budget.ttl),
        (0.1, squall::BudgetConfig::default().ttl)
    );
    let hedge = r.hedge.expect("hedge table");
    assert_eq!(
        hedge.delay,
        squall::resilience::HedgeDelay::Fixed(Duration::from_millis(20))
    );
    assert_eq!(hedge.max_extra_ratio, 0.05);
}

#[test]
fn discovery_without_a_registry_is_rejected_with_a_hint() {
    // Proves service on a client or a server needs [registry], and so do leave
    // and naming the registry host.
    let error = error_replacing("targets = [\"server\"]", "service = \"echo\"");
    assert_eq!(error, "x.toml:12: service \"echo\" is discovered through a registry, but there is none (add a [registry] table (ttl = \"3s\"), or call static targets = [\"server\"])");
    let error = error_replacing("replicas = 3", "replicas = 3\nservice = \"kv\"");
    assert!(
        error.starts_with("x.toml:8: service is set but there is no registry"),
        "{error}"
    );
    let error = error_appending("[[faults]]\nat = \"5s\"\nkind = \"leave\"\nhost = \"server-1\"\n");
    assert!(
        error.starts_with("x.toml:18: leave deregisters from the registry, but there is none"),
        "{error}"
    );
    let error = error_appending(
        "[[faults]]\nat = \"5s\"\nkind = \"partition\"\nbetween = [\"registry\", \"client\"]\n",
    );
    assert_eq!(
        error,
        "x.toml:19: between: there is no registry host (add a [registry] table to run one)"
    );
}

#[test]
fn targets_and_service_are_exclusive_and_one_is_required() {
    // Proves a client names exactly one source of endpoints, and the service must exist.
    let error = error_replacing("rate = 100", "rate = 100\nservice = \"echo\"");
    assert!(
        error.starts_with("x.toml:12: both targets and service are set"),
        "{error}"
    );
    let error = error_replacing("targets = [\"server\"]\n", "");
    assert!(
        error.starts_with("x.toml:10: client group \"client\" sets neither targets nor service"),
        "{error}"
    );
    let error = with_registry("")
        .map(|_| ())
        .and_then(|()| {
            let text = BASE.replace("targets = [\"server\"]", "service = \"ecoh\"");
            parse(&format!("{text}[registry]\n")).map(|_| ())
        })
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        "x.toml:12: no server group registers service \"ecoh\" (did you mean \"echo\"?)"
    );
}

#[test]
fn unknown_balancer_and_fail_mode_suggest_or_list_names() {
    // Proves the did-you-mean for close typos and the full list otherwise.
    let error = error_replacing("rate = 100", "rate = 100\nbalancer = \"round_robn\"");
    assert_eq!(
        error,
        "x.toml:14: unknown balancer \"round_robn\" (did you mean \"round_robin\"?)"
    );
    let error = error_replacing("rate = 100", "rate = 100\nbalancer = \"fastest\"");
    assert_eq!(error, "x.toml:14: unknown balancer \"fastest\" (expected one of: round_robin, weighted_round_robin, random, consistent_hash, least_outstanding, p2c_ewma)");
    let error = error_replacing("rate = 100", "rate = 100\nfail_mode = \"failback\"");
    assert!(
        error.starts_with("x.toml:14: unknown fail_mode \"failback\""),
        "{error}"
    );
}

#[test]
fn balancer_settings_are_range_checked() {
    // Proves consistent_hash needs keys, and hash_keys / pool_size have limits.
    let error = error_replacing("rate = 100", "rate = 100\nbalancer = \"consistent_hash\"");
    assert!(
        error.starts_with("x.toml:14: consistent_hash without hash_keys"),
        "{error}"
    );
    let error = error_replacing("rate = 100", "rate = 100\nhash_keys = 0");
    assert_eq!(
        error,
        "x.toml:14: hash_keys = 0 is out of range (hash_keys must be 1..=100000)"
    );
    let error = error_replacing("rate = 100", "rate = 100\npool_size = 65");
    assert_eq!(
        error,
        "x.toml:14: pool_size = 65 is out of range (pool_size must be 1..=64)"
    );
}

#[test]
fn fail_mode_must_agree_with_max_attempts() {
    // Proves failfast with retries, and failover without them, are both refused.
    let error = error_appending("[clients.retry]\nmax_attempts = 3\n");
    assert!(
        error.starts_with(
            "x.toml:16: max_attempts = 3 but fail_mode is failfast, which never retries"
        ),
        "{error}"
    );
    let error = error_replacing("rate = 100", "rate = 100\nfail_mode = \"failover\"");
    assert!(
        error.starts_with("x.toml:14: fail_mode failover retries, but max_attempts is 1"),
        "{error}"
    );
}

/// `BASE` whose client fails over with three attempts, plus `table`.
fn retrying(table: &str) -> String {
    let text = BASE.replace(
        "rate = 100",
        "rate = 100\nfail_mode = \"failover\"\nidempotent = true",
    );
    match parse(&format!("{text}[clients.retry]\nmax_attempts = 3\n{table}")) {
        Ok(_) => panic!("expected an error for {table:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn retry_keys_are_checked_at_their_line() {
    // Proves max_attempts' range, code names, jitter values and backoff order
    // (core's validate(), reported at the key) are each refused where written.
    let error = error_replacing(
        "rate = 100",
        "rate = 100\nfail_mode = \"failover\"\n[clients.retry]\nmax_attempts = 11",
    );
    assert_eq!(
        error,
        "x.toml:16: max_attempts = 11 is out of range (max_attempts must be 1..=10)"
    );
    assert_eq!(
        retrying("codes = [\"Unavailabel\"]\n"),
        "x.toml:20: unknown status code \"Unavailabel\" (did you mean \"Unavailable\"?)"
    );
    assert!(retrying("codes = [\"Ok\"]\n").starts_with("x.toml:20: Ok is not a failure"));
    assert!(retrying("codes = []\n").starts_with("x.toml:20: codes is empty"));
    assert!(retrying("backoff = { jitter = \"ful\" }\n")
        .starts_with("x.toml:20: unknown jitter \"ful\" (did you mean \"full\"?"),);
    let error = retrying("backoff = { initial = \"2s\", max = \"1s\" }\n");
    assert!(
        error.starts_with("x.toml:20: [clients.retry] backoff.initial: 2s is above max (1s)"),
        "{error}"
    );
}

#[test]
fn breaker_budget_and_hedge_are_checked_by_core_validate() {
    // Proves cross-field rules live in core and are reported at the file's key.
    let error = retrying("[clients.breaker]\nwindow = 10\nminimum_calls = 20\n");
    assert!(
        error.starts_with(
            "x.toml:22: [clients.breaker] minimum_calls: 20 is outside 1..=window_size (10)"
        ),
        "{error}"
    );
    let error = retrying("[clients.breaker]\nopen = \"10s\"\nopen_max = \"5s\"\n");
    assert!(
        error.starts_with("x.toml:22: [clients.breaker] open_max:"),
        "{error}"
    );
    let error = retrying("[clients.budget]\nttl = \"500ms\"\n");
    assert!(
        error.starts_with("x.toml:21: [clients.budget] ttl: 500ms is outside [1s, 60s]"),
        "{error}"
    );
    let error = retrying("[clients.hedge]\npercentile = 0\n");
    assert!(
        error.starts_with("x.toml:21: percentile 0 is out of range"),
        "{error}"
    );
    let error = retrying("[clients.hedge]\ndelay = \"20ms\"\npercentile = 95\n");
    assert!(
        error.starts_with("x.toml:21: both delay and percentile are set"),
        "{error}"
    );
}

#[test]
fn budget_without_retries_and_hedge_without_idempotent_methods_are_refused() {
    // Proves the two configurations that would silently do nothing are errors.
    let error = error_appending("[clients.budget]\nratio = 0.1\n");
    assert!(
        error.starts_with("x.toml:16: a retry budget without retries bounds nothing"),
        "{error}"
    );
    let error = error_appending("[clients.hedge]\ndelay = \"20ms\"\n");
    assert!(
        error.starts_with("x.toml:16: hedging sends a second copy: declare the method idempotent"),
        "{error}"
    );
    let error = error_replacing(
        "rate = 100",
        "rate = 100\nidempotent = true\nmix = [{ method = \"Echo.Echo\" }]",
    );
    assert!(
        error.starts_with("x.toml:14: idempotent at the client level applies to `method`"),
        "{error}"
    );
}
