//! `sim shrink` on a planted failure: an expectation that only one fault can
//! break, buried among faults that cannot touch it, shrinks to that fault.

use sim::shrink::{shrink, ShrinkOptions};
use sim::{Scenario, Simulation};

const PLANTED: &str = r#"
name = "planted"
description = "client-1 must never fail; only server-2 failing every call at 6s breaks that"
duration = "12s"
seeds = [1]

[[servers]]
group = "server"
replicas = 3

[[clients]]
group = "client"
replicas = 2
targets = ["server"]
rate = 40
timeout = "500ms"

# Irrelevant: they touch only client-2's links.
[[faults]]
at = "2s"
kind = "link_latency"
between = ["client-2", "server-3"]
latency = "20ms"

[[faults]]
at = "3s"
kind = "partition"
between = ["client-2", "server-1"]

[[faults]]
at = "5s"
kind = "heal"
between = ["client-2", "server-1"]

[[faults]]
at = "7s"
kind = "link_latency"
between = ["client-2", "server-3"]
latency = "1ms"

# The cause.
[[faults]]
at = "6s"
kind = "server_behaviour"
host = "server-2"
error_rate = 1.0

[[expect]]
name = "client-1 never fails"
kind = "success_rate"
client = "client-1"
min = 1.0

[[expect]]
kind = "latency"
percentile = 50
max = "1s"
"#;

#[test]
fn a_planted_failure_among_irrelevant_faults_shrinks_to_its_cause() {
    let options = ShrinkOptions {
        seed: 1,
        expect: Some("client-1 never fails".into()),
        other_seeds: vec![],
        runs_max: 200,
    };
    let shrunk = shrink(
        PLANTED,
        "planted.toml",
        &options,
        &Simulation::new,
        &mut |_| {},
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let scenario = Scenario::from_str(&shrunk.text, "shrunk.toml")
        .unwrap_or_else(|e| panic!("the shrunk scenario is invalid: {e:#}\n{}", shrunk.text));
    let faults: Vec<&str> = scenario
        .faults
        .iter()
        .map(|f| f.description.as_str())
        .collect();
    assert_eq!(
        faults,
        ["server_behaviour server-2 error_rate=1"],
        "{}",
        shrunk.text
    );
    assert_eq!(scenario.client_hosts().count(), 1, "{}", shrunk.text);
    assert_eq!(scenario.expectations.len(), 1, "{}", shrunk.text);
    assert!(scenario.duration <= std::time::Duration::from_secs(12));
    // It still fails, at the seed it names.
    let outcome = Simulation::new(scenario).run(shrunk.seed).unwrap();
    assert!(
        outcome
            .verdicts
            .iter()
            .any(|v| !v.pass && v.name == "client-1 never fails"),
        "{}",
        shrunk.text
    );
    assert!(shrunk.text.contains("# Replay: cargo run -p sim -- run"));
}

#[test]
fn shrinking_a_passing_run_is_refused() {
    let passing = PLANTED.replace("error_rate = 1.0", "error_rate = 0.0");
    let options = ShrinkOptions {
        seed: 1,
        expect: Some("client-1 never fails".into()),
        other_seeds: vec![],
        runs_max: 10,
    };
    let error = shrink(&passing, "p.toml", &options, &Simulation::new, &mut |_| {}).unwrap_err();
    assert!(error.contains("does not fail at seed 1"), "{error}");
}
