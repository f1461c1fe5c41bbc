//! The fault timeline: kinds and their keys, times, and the sequence rules
//! (no crash of a host that is down).

use super::*;

#[test]
fn misspelled_fault_kind_suggests_the_kind() {
    // Proves the example from the house style, word for word.
    let error = error_appending(
        "[[faults]]\nat = \"5s\"\nkind = \"partiton\"\nbetween = [\"client-1\", \"server-1\"]\n",
    );
    assert_eq!(
        error,
        "x.toml:18: unknown fault kind \"partiton\" (did you mean \"partition\"?)"
    );
}

#[test]
fn fault_after_the_end_is_rejected() {
    // Proves a fault the run would never reach is an error, not silently skipped.
    let error =
        error_appending("[[faults]]\nat = \"31s\"\nkind = \"crash\"\nhost = \"server-1\"\n");
    assert_eq!(error, "x.toml:17: fault at 31s is after the end of the scenario (30s) (move it earlier or lengthen duration)");
}

#[test]
fn faults_are_sorted_stably_by_time() {
    // Proves out-of-order faults are fine and same-time faults keep file order.
    let s = ok_appending(concat!(
        "[[faults]]\nat = \"20s\"\nkind = \"restart\"\nhost = \"server-1\"\n",
        "[[faults]]\nat = \"10s\"\nkind = \"partition\"\nbetween = [\"client\", \"server-1\"]\n",
        "[[faults]]\nat = \"10s\"\nkind = \"crash\"\nhost = \"server-1\"\n",
    ));
    let order: Vec<&str> = s.faults.iter().map(|f| f.description.as_str()).collect();
    assert_eq!(
        order,
        [
            "partition client server-1",
            "crash server-1",
            "restart server-1"
        ]
    );
    assert_eq!(s.faults[0].line, 20);
    let FaultAction::Partition { links } = &s.faults[0].action else {
        panic!("{:?}", s.faults[0])
    };
    let pairs: Vec<(&str, &str)> = links
        .iter()
        .map(|l| (l.from.as_str(), l.to.as_str()))
        .collect();
    assert_eq!(
        pairs,
        [("client-1", "server-1"), ("client-2", "server-1")],
        "groups expand to every host"
    );
}

#[test]
fn crashing_a_host_that_is_down_is_rejected() {
    // Proves the timeline is checked as a sequence: a second crash names the first.
    let error = error_appending(concat!(
        "[[faults]]\nat = \"5s\"\nkind = \"crash\"\nhost = \"server-1\"\n",
        "[[faults]]\nat = \"6s\"\nkind = \"silent_death\"\nhost = \"server\"\n",
    ));
    assert_eq!(error, "x.toml:20: server-1 is crashed at 6s but is already down since 5s (line 16) (restart it first, or remove one of the crashes)");
}

#[test]
fn fault_keys_must_fit_the_kind() {
    // Proves a key another kind takes is refused with this kind's keys, and a needed key is asked for.
    let error = error_appending(
        "[[faults]]\nat = \"5s\"\nkind = \"crash\"\nbetween = [\"client-1\", \"server-1\"]\n",
    );
    assert_eq!(
        error,
        "x.toml:19: fault kind \"crash\" does not take \"between\" (crash takes: host)"
    );
    let error = error_appending("[[faults]]\nat = \"5s\"\nkind = \"link_latency\"\nbetween = [\"client-1\", \"server-1\"]\n");
    assert_eq!(
        error,
        "x.toml:18: fault kind \"link_latency\" needs \"latency\" (add latency = \"200ms\")"
    );
    let error = error_appending(
        "[[faults]]\nat = \"5s\"\nkind = \"partition\"\nbetween = [\"client-1\"]\n",
    );
    assert!(
        error.starts_with("x.toml:19: between has 1 name, not 2"),
        "{error}"
    );
}

#[test]
fn leave_is_a_stop_in_the_crash_sequence() {
    // Proves leave parses with a registry, and a crash after a leave (without a
    // restart) is refused like a double crash.
    let s = with_registry("[[faults]]\nat = \"5s\"\nkind = \"leave\"\nhost = \"server-1\"\n")
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(
        s.faults[0].action,
        FaultAction::Leave {
            hosts: vec!["server-1".into()]
        }
    );
    let error = with_registry(concat!(
        "[[faults]]\nat = \"5s\"\nkind = \"leave\"\nhost = \"server-1\"\n",
        "[[faults]]\nat = \"6s\"\nkind = \"crash\"\nhost = \"server-1\"\n",
    ))
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(
        error.starts_with("x.toml:20: server-1 is crashed at 6s but is already down since 5s"),
        "{error}"
    );
}
