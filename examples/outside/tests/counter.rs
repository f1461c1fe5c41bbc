//! The counter when replies are lost, from a crate outside the squall workspace.

use counter_outside::{counted_once, router, workload};
use sim::{ServerEnv, Simulation};

fn simulation(dedup: bool) -> Simulation {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scenarios/counter-lost-replies.toml"
    );
    Simulation::from_file(path)
        .unwrap_or_else(|e| panic!("{e:#}"))
        .server("counter", move |env: &ServerEnv| router(env, dedup))
        .client("client", workload)
        .invariant("each add counted once", counted_once)
}

#[test]
fn retried_adds_are_counted_once_when_replies_are_lost() {
    simulation(true).test();
}

#[test]
fn without_idempotency_ids_a_retried_add_is_counted_twice() {
    let report = simulation(false).explore(1..4, sim::Shard::ALL, 1);
    assert!(
        report
            .failing
            .iter()
            .any(|f| f.failed.iter().any(|v| v.contains("each add counted once"))),
        "double counting went unnoticed: {report:?}"
    );
}
