//! The example store over real TCP (`Simulation::run_real`): the same router
//! and workload, plugged in through the same API, on loopback through the
//! harness's fault proxies. A real run is not deterministic, so what is
//! asserted is the store's safety property, which must hold however the
//! timing falls; the comparison with the simulated run is printed (run with
//! `--nocapture`) and recorded in `docs/FIDELITY.md`.

use kv_example::{simulation, KvConfig};
use sim::RealOptions;

fn compare_over_real_tcp(file: &str) {
    let sim = simulation(file, KvConfig::default());
    let seed = sim.scenario().default_seed();
    let simulated = sim.run(seed).unwrap_or_else(|e| panic!("{e}"));
    let real = sim
        .run_real(seed, RealOptions::scaled(0.5))
        .unwrap_or_else(|e| panic!("{e}"));
    println!("{}", sim::real::compare(&simulated, &real));
    let stale = real
        .verdicts
        .iter()
        .find(|v| v.name == "invariant: no stale reads")
        .expect("the invariant is evaluated in real mode");
    assert!(stale.pass, "a stale read over real TCP: {}", stale.observed);
}

#[test]
fn reads_stay_fresh_over_real_tcp_while_a_replica_is_partitioned() {
    compare_over_real_tcp("kv-partition.toml");
}

#[test]
fn reads_stay_fresh_over_real_tcp_across_a_replica_crash_and_restart() {
    compare_over_real_tcp("kv-crash-restart.toml");
}

#[test]
fn reads_stay_fresh_over_real_tcp_while_the_registry_is_away() {
    compare_over_real_tcp("kv-registry-crash.toml");
}
