//! A simulated run emits the same metrics as production: install a recorder
//! for the run (`metrics::with_local_recorder`; a run is single-threaded) and
//! render it like a scrape. Latencies are virtual time, so a run's metrics
//! replay exactly with its seed. Run with `cargo test -p squall-e2e --features metrics`.
#![cfg(feature = "metrics")]

use std::collections::BTreeMap;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

/// The samples of a rendered scrape, by series (comments skipped).
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
            (series.to_owned(), value.parse().expect("a number"))
        })
        .collect()
}

/// Runs steady-state at `seed` with a fresh Prometheus recorder; its samples.
fn run_with_metrics(simulation: &sim::Simulation, seed: u64) -> BTreeMap<String, f64> {
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_duration_seconds".to_owned()),
            squall_e2e::prometheus::DURATION_BUCKETS_SECONDS,
        )
        .expect("buckets")
        .build_recorder();
    let handle = recorder.handle();
    let outcome = metrics::with_local_recorder(&recorder, || simulation.run(seed)).expect("run");
    assert!(
        outcome.verdicts.iter().all(|verdict| verdict.pass),
        "steady-state passes"
    );
    samples(&handle.render())
}

#[test]
fn a_simulated_run_emits_the_production_metrics_and_they_replay() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scenarios/steady-state.toml"
    );
    let simulation = sim::Simulation::from_file(path).expect("scenario");
    let first = run_with_metrics(&simulation, 1);
    let ok_calls = |side: &str| {
        first
            .get(&format!(
                "rpc_{side}_calls_total{{method=\"Echo.Echo\",code=\"Ok\"}}"
            ))
            .copied()
    };
    let served = ok_calls("server").expect("servers counted Echo.Echo calls");
    assert!(
        served > 1000.0,
        "a 32 s run at its rate makes thousands: {served}"
    );
    assert_eq!(
        ok_calls("client"),
        Some(served),
        "every call the clients saw succeed, a server served"
    );
    assert!(
        first
            .keys()
            .any(|series| series
                .starts_with("rpc_server_duration_seconds_bucket{method=\"Echo.Echo\"")),
        "latency buckets, in virtual time"
    );
    let second = run_with_metrics(&simulation, 1);
    assert_eq!(first, second, "the same seed gives the same metrics");
}
