//! Real-TCP mode: scenarios run over loopback through the per-link fault
//! proxies, in scaled wall-clock time, and their expectations are evaluated
//! on a trace of the same format. These runs take wall time (a few seconds
//! each) and are not deterministic, so the checks are on what must hold on
//! any machine.

use std::time::Duration;

use sim::trace::EventKind;
use sim::{RealOptions, Scenario, Simulation};

/// Two echo servers, one client at 100 calls/s failing over on errors; the
/// client's link to server-1 is partitioned from 2s to 4s.
const PARTITIONED: &str = r#"
name = "real-partition"
description = "A partition applied by the real-mode proxy."
duration = "6s"
seeds = [1]

[network]
latency = { min = "1ms", max = "2ms" }

[[servers]]
group = "server"
replicas = 2
latency = { min = "1ms", max = "2ms" }

[[clients]]
group = "client"
replicas = 1
targets = ["server"]
rate = 100
method = "Echo.Echo"
timeout = "1s"

[clients.connection]
connect_timeout = "300ms"
keepalive_interval = "200ms"
keepalive_timeout = "200ms"

[[faults]]
at = "2s"
kind = "partition"
between = ["client-1", "server-1"]

[[faults]]
at = "4s"
kind = "heal"
between = ["client-1", "server-1"]

[[expect]]
name = "healthy before the partition"
kind = "success_rate"
min = 0.99
to = "1.9s"
"#;

fn executed_on(trace: &sim::trace::Trace, host: &str, from: Duration, to: Duration) -> usize {
    trace
        .events
        .iter()
        .filter(|e| e.host == host && e.at >= from && e.at < to)
        .filter(|e| matches!(e.kind, EventKind::Executed { .. }))
        .count()
}

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

#[test]
fn the_proxy_partitions_a_link_so_the_cut_off_server_executes_nothing_until_the_heal() {
    let scenario = Scenario::from_str(PARTITIONED, "real-partition.toml").unwrap();
    let outcome = Simulation::new(scenario)
        .run_real(1, RealOptions::scaled(0.5))
        .unwrap();
    let trace = &outcome.trace;
    assert!(outcome.passed(), "{:#?}", outcome.verdicts);
    // Bytes already past the proxy at 2s land within a latency or two.
    let before = executed_on(trace, "server-1", ms(500), ms(1_900));
    let during = executed_on(trace, "server-1", ms(2_100), ms(3_900));
    let after = executed_on(trace, "server-1", ms(4_600), ms(6_000));
    assert!(
        before > 30,
        "server-1 served before the partition: {before}"
    );
    assert_eq!(during, 0, "server-1 executed calls through a partition");
    assert!(after > 30, "server-1 served again after the heal: {after}");
    // The other server kept serving throughout.
    assert!(executed_on(trace, "server-2", ms(2_100), ms(3_900)) > 30);
    // The client saw the cut: a call on the partitioned link failed (by
    // keepalive or timeout) or a connect to server-1 did not complete.
    let noticed = trace.events.iter().any(|e| {
        e.at >= ms(2_000)
            && e.at < ms(4_000)
            && match &e.kind {
                EventKind::CallEnd {
                    endpoint, outcome, ..
                } => endpoint.as_deref() == Some("server-1") && outcome != "Ok",
                EventKind::ConnectFailed { peer, .. } => peer == "server-1",
                _ => false,
            }
    });
    assert!(noticed, "no failure on the partitioned link was traced");
}

/// One echo server and one client at 100 calls/s for 4s of scenario time.
const STEADY: &str = r#"
name = "real-steady"
description = "A steady run over real TCP."
duration = "4s"
seeds = [1]

[network]
latency = { min = "1ms", max = "2ms" }

[[servers]]
group = "server"
replicas = 1
latency = { min = "1ms", max = "2ms" }

[[clients]]
group = "client"
replicas = 1
targets = ["server"]
rate = 100
method = "Echo.Echo"
timeout = "1s"

[[expect]]
kind = "success_rate"
min = 0.99
"#;

#[test]
fn a_scaled_real_run_keeps_the_scenario_rate_and_records_scenario_time() {
    let scenario = Scenario::from_str(STEADY, "real-steady.toml").unwrap();
    // 0.25: the 6s run limit (4s + timeout + 1s) takes 1.5s of wall time.
    let outcome = Simulation::new(scenario)
        .run_real(1, RealOptions::scaled(0.25))
        .unwrap();
    assert!(outcome.passed(), "{:#?}", outcome.verdicts);
    let calls = outcome
        .trace
        .events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::CallEnd { .. }))
        .count();
    // 4s at 100/s is 400 calls in scenario time (Poisson: sd 20).
    assert!((300..=500).contains(&calls), "{calls} calls");
    // Times are scenario times: the run covers its 6s limit, not 1.5s.
    assert!(outcome.simulated >= ms(6_000), "{:?}", outcome.simulated);
    assert!(outcome.simulated < ms(7_000), "{:?}", outcome.simulated);
    let first = &outcome.trace.events[0];
    assert!(
        matches!(&first.kind, EventKind::Note { text } if text.contains("mode=real")),
        "{first:?}"
    );
}

#[test]
fn a_time_scale_out_of_bounds_is_refused_before_anything_runs() {
    let scenario = Scenario::from_str(STEADY, "real-steady.toml").unwrap();
    let error = Simulation::new(scenario)
        .run_real(1, RealOptions::scaled(0.001))
        .unwrap_err();
    assert_eq!(error.at, None);
    assert!(error.message.contains("time scale"), "{}", error.message);
}

#[test]
fn a_comparison_marks_exactly_the_verdicts_that_differ() {
    let scenario = Scenario::from_str(STEADY, "real-steady.toml").unwrap();
    let simulation = Simulation::new(scenario);
    let simulated = simulation.run(1).unwrap();
    let mut other = simulation.run(1).unwrap();
    let same = sim::real::compare(&simulated, &other);
    assert!(same.agrees(), "{same}");
    other.verdicts[0].pass = !other.verdicts[0].pass;
    let differ = sim::real::compare(&simulated, &other);
    let names: Vec<&str> = differ.disagreements().map(|r| r.name.as_str()).collect();
    assert_eq!(names, [simulated.verdicts[0].name.as_str()]);
    assert!(differ.to_string().contains("DIFF"), "{differ}");
}

/// Two servers answering in 100 ms, one client at 50 calls/s failing fast
/// (no retries), so calls are in flight on server-1 when FAULT hits it at 2s.
fn dying(fault: &str) -> Scenario {
    let text = format!(
        r#"
name = "real-{fault}"
description = "server-1 dies at 2s with calls in flight."
duration = "4s"
seeds = [1]

[network]
latency = {{ min = "1ms", max = "2ms" }}

[[servers]]
group = "server"
replicas = 2
latency = "100ms"

[[clients]]
group = "client"
replicas = 1
targets = ["server"]
rate = 50
method = "Echo.Echo"
timeout = "2s"

[clients.connection]
connect_timeout = "300ms"
keepalive_interval = "300ms"
keepalive_timeout = "300ms"

[[faults]]
at = "2s"
kind = "{fault}"
host = "server-1"
"#
    );
    Scenario::from_str(&text, "real-dying.toml").unwrap_or_else(|e| panic!("{e:#}"))
}

/// When each call on server-1 that failed ended.
fn failures_on_server_1(outcome: &sim::RunOutcome) -> Vec<Duration> {
    outcome
        .trace
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::CallEnd {
                endpoint, outcome, ..
            } if endpoint.as_deref() == Some("server-1") && outcome != "Ok" => Some(e.at),
            _ => None,
        })
        .collect()
}

#[test]
fn a_crash_closes_the_hosts_sockets_so_its_calls_fail_at_once_but_a_silent_death_waits_for_keepalive(
) {
    let options = RealOptions::scaled(0.5);
    let crashed = Simulation::new(dying("crash"))
        .run_real(1, options.clone())
        .unwrap();
    let failed = failures_on_server_1(&crashed);
    assert!(!failed.is_empty(), "no call was in flight at the crash");
    // The FIN reaches the client within a few milliseconds of the crash.
    assert!(
        failed.iter().all(|at| *at >= ms(2_000) && *at < ms(2_150)),
        "crash: calls failed at {failed:?}"
    );
    let died = Simulation::new(dying("silent_death"))
        .run_real(1, options)
        .unwrap();
    let failed = failures_on_server_1(&died);
    assert!(!failed.is_empty(), "no call was in flight at the death");
    // No FIN: the client learns only when keepalive (300ms + 300ms) gives up.
    assert!(
        failed.iter().all(|at| *at >= ms(2_300)),
        "silent death: calls failed at {failed:?} (a FIN got through?)"
    );
    assert!(executed_on(&died.trace, "server-1", ms(2_050), ms(4_000)) == 0);
}
