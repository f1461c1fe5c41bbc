//! The example store under faults: each scenario at its pinned seeds, each
//! seed twice with identical traces (`Simulation::test`), and the planted bug
//! caught by exploring seeds.
//!
//! Replay any run: `SQUALL_SEED=N SQUALL_TRACE=all cargo test -p kv-example TEST -- --exact --nocapture`.

use kv_example::{simulation, KvConfig};
use sim::testing::replay_instruction;
use sim::Shard;

#[test]
fn reads_stay_fresh_while_a_replica_is_partitioned_from_its_peers() {
    simulation("kv-partition.toml", KvConfig::default()).test();
}

#[test]
fn a_replica_that_lost_its_memory_recovers_before_it_serves() {
    simulation("kv-crash-restart.toml", KvConfig::default()).test();
}

#[test]
fn clients_keep_their_replica_set_while_the_registry_is_away_during_a_crash() {
    simulation("kv-registry-crash.toml", KvConfig::default()).test();
}

/// The planted bug — acknowledging a put before it is replicated — must be
/// caught: some seed among the first 5 of the partition scenario fails the
/// "no stale reads" invariant. With `SQUALL_SEED` set, this test replays that
/// seed of the buggy store instead (and fails, showing the stale read).
#[test]
fn acknowledging_writes_before_replicating_them_is_caught() {
    let buggy = KvConfig {
        ack_before_replicate: true,
        ..KvConfig::default()
    };
    let sim = simulation("kv-partition.toml", buggy);
    if std::env::var("SQUALL_SEED").is_ok() {
        sim.test();
        return;
    }
    let report = sim.explore(1..6, Shard::ALL, 2);
    let caught: Vec<_> = report
        .failing
        .iter()
        .filter(|f| {
            f.failed
                .iter()
                .any(|v| v.contains("invariant: no stale reads"))
        })
        .collect();
    let first = caught
        .first()
        .unwrap_or_else(|| panic!("the planted bug went unnoticed over 5 seeds: {report:?}"));
    eprintln!(
        "caught at {} of 5 seeds; first seed {}: {}\n  replay: {}",
        caught.len(),
        first.seed,
        first.failed.join("; "),
        replay_instruction(
            "acknowledging_writes_before_replicating_them_is_caught",
            first.seed
        )
    );
}

/// A scenario about the user's service must not pass on the built-in echo:
/// without the store plugged in, the run is refused before it starts, naming
/// the file, the line and what to do.
#[test]
fn the_kv_scenarios_refuse_to_run_without_the_store() {
    for file in [
        "kv-partition.toml",
        "kv-crash-restart.toml",
        "kv-registry-crash.toml",
    ] {
        let bare = sim::Simulation::from_file(kv_example::scenario_path(file)).unwrap();
        let error = bare
            .validate()
            .expect_err("the echo must not stand in")
            .to_string();
        assert!(error.contains(&format!("{file}:")), "{error}");
        assert!(error.contains("runs the user's router"), "{error}");
    }
}

/// A scenario that calls a method the plugged-in router does not serve is
/// rejected before the run, with the line and the methods served.
#[test]
fn a_method_the_store_does_not_serve_is_rejected_with_the_methods_it_does() {
    let text = std::fs::read_to_string(kv_example::scenario_path("kv-partition.toml"))
        .unwrap()
        .replace(r#"method = "KV.Get""#, r#"method = "KV.Gett""#);
    let scenario = sim::Scenario::from_str(&text, "typo.toml").unwrap();
    let config = KvConfig::default();
    let sim = sim::Simulation::new(scenario)
        .server("kv", move |env: &sim::ServerEnv| {
            kv_example::replica::router(env, config)
        })
        .client("client", kv_example::workload::run);
    let error = sim
        .validate()
        .expect_err("KV.Gett is not served")
        .to_string();
    assert!(error.starts_with("typo.toml:"), "{error}");
    assert!(error.contains("\"KV.Gett\""), "{error}");
    assert!(error.contains("KV.Get, KV.Put"), "{error}");
    assert!(error.contains("did you mean \"KV.Get\""), "{error}");
}
