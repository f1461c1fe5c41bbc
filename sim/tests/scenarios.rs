//! Every scenario in `scenarios/` at every pinned seed, run twice in this process
//! and once in a separate `sim` process: the verdict must pass and all three
//! trace hashes must be identical. On a mismatch the first diverging trace line
//! is printed — determinism is the product, so a difference is a bug.

use std::path::{Path, PathBuf};
use std::process::Command;

use sim::{run, Scenario};

fn scenario_path(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(file)
}

/// Runs `file` at each pinned seed twice in-process and checks verdicts and hashes.
fn check_in_process(file: &str) -> Vec<(u64, String)> {
    let path = scenario_path(file);
    let scenario = Scenario::from_file(&path).unwrap_or_else(|e| panic!("{e:#}"));
    let mut hashes = Vec::new();
    for &seed in &scenario.seeds {
        let first = run(&scenario, seed).unwrap_or_else(|e| panic!("{e}"));
        let second = run(&scenario, seed).unwrap_or_else(|e| panic!("{e}"));
        if let Some((line, a, b)) = first.trace.first_difference(&second.trace) {
            panic!("{file} seed {seed}: two runs diverged at trace line {line}:\n  first:  {a}\n  second: {b}");
        }
        let failed: Vec<String> = first
            .verdicts
            .iter()
            .filter(|v| !v.pass)
            .map(|v| v.to_string())
            .collect();
        assert!(
            failed.is_empty(),
            "{file} seed {seed} failed:\n  {}\n  replay: cargo run -p sim -- replay scenarios/{file} --seed {seed}",
            failed.join("\n  ")
        );
        hashes.push((seed, first.hash()));
    }
    hashes
}

/// The trace hash a separate `sim` process reports for `file` at `seed`.
fn hash_in_another_process(file: &str, seed: u64) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_sim"))
        .args(["run", "--json", "--seed", &seed.to_string()])
        .arg(scenario_path(file))
        .output()
        .expect("the sim binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let json: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap_or_default())
        .unwrap_or_else(|e| panic!("sim --json printed {stdout:?}: {e}"));
    json["trace_hash"].as_str().unwrap_or_default().to_owned()
}

fn check(file: &str) {
    let hashes = check_in_process(file);
    let (seed, hash) = &hashes[0];
    assert_eq!(
        &hash_in_another_process(file, *seed),
        hash,
        "{file} seed {seed}: a separate process produced a different trace"
    );
}

/// `sim explore` runs seeds on parallel threads, which share process-wide state
/// (tokio's task-id counter among it). A run must not depend on it: the hashes
/// of runs made two at a time on separate threads equal those of runs made one
/// after another. Crash scenarios exercise the teardown order that once did.
#[test]
fn runs_on_parallel_threads_replay_exactly_as_sequential_runs() {
    let files = [
        "crash-restart.toml",
        "consistent-hash.toml",
        "registry-restart.toml",
    ];
    let scenarios: Vec<Scenario> = files
        .iter()
        .map(|f| Scenario::from_file(scenario_path(f)).unwrap_or_else(|e| panic!("{e:#}")))
        .collect();
    let jobs: Vec<(usize, u64)> = (0..scenarios.len())
        .flat_map(|i| [(i, 4), (i, 5)])
        .collect();
    let hash = |(i, seed): (usize, u64)| {
        run(&scenarios[i], seed)
            .map(|o| o.hash())
            .unwrap_or_else(|e| e.to_string())
    };
    let sequential: Vec<String> = jobs.iter().map(|&job| hash(job)).collect();
    #[allow(clippy::disallowed_methods)] // independent runs on threads, as `explore` does
    let parallel: Vec<String> = std::thread::scope(|scope| {
        let (left, right) = jobs.split_at(jobs.len() / 2);
        let a = scope.spawn(|| left.iter().map(|&job| hash(job)).collect::<Vec<_>>());
        let b = scope.spawn(|| right.iter().map(|&job| hash(job)).collect::<Vec<_>>());
        let mut out = a.join().expect("thread a");
        out.extend(b.join().expect("thread b"));
        out
    });
    for ((job, seq), par) in jobs.iter().zip(&sequential).zip(&parallel) {
        assert_eq!(
            seq, par,
            "{} seed {}: a run on a parallel thread differed",
            files[job.0], job.1
        );
    }
}

/// Scenarios whose groups say `code = "user"` run the user's code, plugged in
/// by the crate that owns it; the echo-only harness must refuse them before
/// the run (a scenario about a user's service must not pass on the echo).
const USER_CODE_SCENARIOS: [(&str, &str); 3] = [
    ("kv-partition.toml", "examples/kv"),
    ("kv-crash-restart.toml", "examples/kv"),
    ("kv-registry-crash.toml", "examples/kv"),
];

#[test]
fn user_code_scenarios_are_refused_without_the_users_code() {
    for (file, owner) in USER_CODE_SCENARIOS {
        let scenario = Scenario::from_file(scenario_path(file)).unwrap_or_else(|e| panic!("{e:#}"));
        let error = run(&scenario, 1).expect_err(file).to_string();
        assert!(
            error.contains("runs the user's") && error.contains(file),
            "{file} (run by {owner}): {error}"
        );
    }
}

macro_rules! scenarios {
    ($($test:ident => $file:literal),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                check($file);
            }
        )*

        /// Every file in scenarios/ has a test above (a new scenario cannot be
        /// forgotten), and every test names an existing file.
        #[test]
        fn every_scenario_file_is_tested() {
            let listed: std::collections::BTreeSet<&str> = [$($file),*]
                .into_iter()
                .chain(USER_CODE_SCENARIOS.iter().map(|(file, _)| *file))
                .collect();
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
            let on_disk: std::collections::BTreeSet<String> = std::fs::read_dir(&dir)
                .expect("scenarios/ exists")
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.ends_with(".toml"))
                .collect();
            let on_disk: std::collections::BTreeSet<&str> = on_disk.iter().map(String::as_str).collect();
            assert_eq!(listed, on_disk, "add the new scenario to sim/tests/scenarios.rs");
        }
    };
}

scenarios! {
    steady_state_serves_every_call_and_spreads_load_evenly => "steady-state.toml",
    latency_spike_raises_p99_without_errors => "latency-spike.toml",
    partition_fails_calls_fast_and_recovers_after_heal => "partition-heal.toml",
    crash_costs_no_calls_and_the_restarted_server_rejoins => "crash-restart.toml",
    silent_death_is_detected_by_keepalive => "silent-death.toml",
    lossy_link_is_survived => "lossy-link.toml",
    round_robin_shares_three_equal_instances_evenly => "balance-round-robin.toml",
    p2c_ewma_shares_three_equal_instances_evenly => "balance-p2c.toml",
    smooth_weighted_round_robin_gives_weights_3_1_1_their_share => "weighted.toml",
    consistent_hash_keeps_keys_and_moves_only_the_dead_instances_keys => "consistent-hash.toml",
    p2c_ewma_steers_away_from_a_slow_instance => "slow-instance-p2c.toml",
    least_outstanding_steers_away_from_a_slow_instance => "slow-instance-least-outstanding.toml",
    round_robin_keeps_feeding_a_slow_instance => "slow-instance-round-robin.toml",
    a_joining_instance_gets_traffic_within_one_watch => "join.toml",
    a_crashed_instance_is_evicted_after_its_ttl => "ttl-eviction.toml",
    clients_keep_serving_while_the_registry_is_partitioned => "registry-partition.toml",
    failover_hides_a_crash_without_the_breaker => "failover-crash.toml",
    the_breaker_opens_on_a_failing_server_and_a_probe_closes_it => "breaker-recovery.toml",
    the_retry_budget_prevents_a_retry_storm_in_a_total_outage => "total-outage.toml",
    a_non_idempotent_call_is_executed_at_most_once => "non-idempotent.toml",
    hedging_cuts_the_tail_of_a_gray_failure_within_budget => "hedging.toml",
    the_breaker_does_not_flap_on_a_flapping_link => "flapping.toml",
    a_spent_deadline_stops_the_second_hop => "deadline-two-hop.toml",
    servers_re_register_after_the_registry_restarts => "registry-restart.toml",
    an_overloaded_server_slows_sheds_and_fails_with_its_own_codes => "overload.toml",
    a_forwarding_hop_with_its_own_retries_hides_a_backend_crash => "forward-failover.toml",
    a_per_attempt_timeout_retries_past_a_stuck_server => "attempt-timeout.toml",
    a_call_that_ran_then_lost_its_reply_still_reports_may_have_executed => "lost-reply-then-deadline.toml",
}
