//! Regression tests for harness defects found by scenarios no one here wrote
//! (issue 13). Each failed before its fix.

use sim::{run, Scenario};

fn passes(text: &str) -> Result<(), String> {
    let scenario = Scenario::from_str(text, "inline.toml").map_err(|e| format!("{e:#}"))?;
    for seed in &scenario.seeds {
        let outcome = run(&scenario, *seed).map_err(|e| e.to_string())?;
        let failed: Vec<String> = outcome
            .verdicts
            .iter()
            .filter(|v| !v.pass)
            .map(|v| v.to_string())
            .collect();
        if !failed.is_empty() {
            return Err(format!("seed {seed}: {}", failed.join("; ")));
        }
    }
    Ok(())
}

/// Before: the silent death's partition stayed after `restart`, so every
/// connect to the restarted host was refused for the rest of the run.
#[test]
fn a_restart_after_a_silent_death_brings_the_host_back() {
    let text = r#"
name = "silent-death-restart"
description = "a silently dead server that restarts serves again"
duration = "10s"
seeds = [1, 2]

[[servers]]
group = "server"
replicas = 2

[[clients]]
group = "client"
targets = ["server"]
rate = 100
timeout = "1s"

[clients.connection]
keepalive_interval = "200ms"
keepalive_timeout = "200ms"

[[faults]]
at = "2s"
kind = "silent_death"
host = "server-2"

[[faults]]
at = "4s"
kind = "restart"
host = "server-2"

[[expect]]
name = "the restarted server is called again"
kind = "call_count"
endpoint = "server-2"
min = 50
from = "6s"
"#;
    passes(text).unwrap();
}

/// A silent death's partitions are undone by a restart, but links the
/// timeline partitioned itself stay partitioned until their own heal.
#[test]
fn a_restart_keeps_the_timelines_own_partitions() {
    let text = r#"
name = "silent-death-restart-partitioned"
description = "a restart does not heal a partition the timeline made"
duration = "10s"
seeds = [1]

[[servers]]
group = "server"
replicas = 2

[[clients]]
group = "client"
targets = ["server"]
rate = 100
timeout = "1s"

[[faults]]
at = "1s"
kind = "partition"
between = ["client-1", "server-2"]

[[faults]]
at = "2s"
kind = "silent_death"
host = "server-2"

[[faults]]
at = "4s"
kind = "restart"
host = "server-2"

[[expect]]
name = "the explicit partition still holds"
kind = "no_calls"
endpoint = "server-2"
from = "6s"
to = "10s"
"#;
    passes(text).unwrap();
}

/// Before: a handler killed by its server's crash recorded no `server.done`
/// and `handlers_end_by_deadline` reported it as "never ended" — a false
/// failure in any two-hop scenario with a backend crash.
#[test]
fn a_handler_killed_by_a_crash_ends_at_the_crash() {
    let text = r#"
name = "two-hop-backend-crash"
description = "backend handlers killed by a crash ended at the crash"
duration = "6s"
seeds = [1, 2]

[[servers]]
group = "frontend"
replicas = 1
latency = "1ms"
forward_to = ["backend"]

[[servers]]
group = "backend"
replicas = 1
latency = { min = "200ms", max = "300ms" }

[[clients]]
group = "client"
targets = ["frontend"]
rate = 50
timeout = "1s"

[[faults]]
at = "2s"
kind = "crash"
host = "backend-1"

[[expect]]
kind = "handlers_end_by_deadline"
slack = "20ms"

[[expect]]
name = "the crash killed handlers mid-run"
kind = "event"
text = "host.crash"
on = "backend-1"
"#;
    passes(text).unwrap();
}

/// Before: only refused connects were traced; a connect the caller gave up on
/// (its connect timeout, under `hold`) left no trace at all.
#[test]
fn a_connect_that_times_out_is_traced() {
    let text = r#"
name = "connect-timeout-traced"
description = "a held link makes reconnects time out, and the trace shows it"
duration = "6s"
seeds = [1]

[[servers]]
group = "server"
replicas = 2

[[clients]]
group = "client"
targets = ["server"]
rate = 50
timeout = "1s"

[clients.connection]
connect_timeout = "200ms"
keepalive_interval = "200ms"
keepalive_timeout = "200ms"

[[faults]]
at = "2s"
kind = "hold"
between = ["client-1", "server-1"]

[[faults]]
at = "5s"
kind = "release"
between = ["client-1", "server-1"]

[[expect]]
name = "the reconnect's timeout is in the trace"
kind = "event"
text = "conn.failed peer=server-1 reason=\"TimedOut"
on = "client-1"
from = "2s"
to = "5s"
"#;
    passes(text).unwrap();
}

/// Before: each Poisson gap was slept on its own, and the 1 ms tick rounded
/// every sleep up, so `rate = 200` delivered about 182 calls/s (10 s gave
/// ~1,825 attempts). Arrivals now go out at their scheduled times: 10 s at 200
/// calls/s is 2,000 expected (a Poisson count's spread is ±45; the bounds are
/// ±5%, and the seeds are pinned, so this cannot flake).
#[test]
fn an_open_loop_client_delivers_its_configured_rate() {
    let text = r#"
name = "open-loop-rate"
description = "rate = 200 for 10 s delivers ~2000 calls"
duration = "10s"
seeds = [1, 2, 3]

[[servers]]
group = "server"
replicas = 1

[[clients]]
group = "client"
targets = ["server"]
rate = 200
timeout = "1s"

[[expect]]
name = "the rate is the rate"
kind = "call_count"
endpoint = "server-1"
min = 1900
max = 2100
"#;
    passes(text).unwrap();
}
