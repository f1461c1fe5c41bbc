//! Scenario parsing and validation: the shipped files parse, defaults are the
//! documented ones, and each class of mistake names the right line with a hint.

use std::time::Duration;

use proptest::prelude::*;

use super::*;

/// A small valid scenario. Line numbers matter: tests append to it, and line 16
/// is the first appended line.
const BASE: &str = r#"name = "base"
description = "A fixture."
duration = "30s"

[[servers]]
group = "server"
replicas = 3

[[clients]]
group = "client"
replicas = 2
targets = ["server"]
rate = 100

# appended below
"#;

fn parse(text: &str) -> Result<Scenario, ScenarioError> {
    Scenario::from_str(text, "x.toml")
}

/// The error text for `BASE` with `replace` swapped in for `find`.
fn error_replacing(find: &str, replace: &str) -> String {
    assert!(BASE.contains(find), "fixture lacks {find:?}");
    match parse(&BASE.replacen(find, replace, 1)) {
        Ok(_) => panic!("expected an error after replacing {find:?} with {replace:?}"),
        Err(e) => e.to_string(),
    }
}

/// The error text for `BASE` plus `extra`.
fn error_appending(extra: &str) -> String {
    match parse(&format!("{BASE}{extra}")) {
        Ok(_) => panic!("expected an error appending {extra:?}"),
        Err(e) => e.to_string(),
    }
}

fn ok_appending(extra: &str) -> Scenario {
    match parse(&format!("{BASE}{extra}")) {
        Ok(s) => s,
        Err(e) => panic!("expected Ok appending {extra:?}, got {e:#}"),
    }
}

#[test]
fn every_shipped_scenario_parses() {
    // Proves each file in scenarios/ is valid, has pinned seeds and says what it proves.
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios");
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .expect("scenarios/ exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    assert!(
        paths.len() >= 6,
        "expected the six shipped scenarios, found {paths:?}"
    );
    for path in paths {
        let scenario = Scenario::from_file(&path).unwrap_or_else(|e| panic!("{e:#}"));
        assert!(!scenario.seeds.is_empty());
        assert!(
            scenario.description.len() > 100,
            "{} explains too little",
            scenario.name
        );
        assert!(
            !scenario.expectations.is_empty(),
            "{} expects nothing",
            scenario.name
        );
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        assert_eq!(
            scenario.name, stem,
            "a scenario's name matches its file name"
        );
    }
}

#[test]
fn minimal_file_gets_documented_defaults() {
    // Proves the defaults docs/SCENARIOS.md promises.
    let s = parse(BASE).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(s.seeds, vec![1]);
    assert_eq!(
        s.network.latency,
        LatencyRange {
            min: Duration::from_millis(1),
            max: Duration::from_millis(5)
        }
    );
    assert_eq!((s.network.loss, s.network.repair_rate), (0.0, 1.0));
    let hosts: Vec<&str> = s.server_hosts().map(|h| h.name.as_str()).collect();
    assert_eq!(hosts, ["server-1", "server-2", "server-3"]);
    let first = &s.servers[0].hosts[0];
    assert_eq!(first.weight, 1);
    assert_eq!(
        first.behaviour,
        Behaviour {
            latency: LatencyRange::fixed(Duration::from_millis(1)),
            error_rate: 0.0
        }
    );
    let client = &s.clients[0];
    assert_eq!(client.hosts, ["client-1", "client-2"]);
    assert_eq!(client.targets, ["server-1", "server-2", "server-3"]);
    assert_eq!(
        client.workload.load,
        Load::Open {
            rate_per_second: 100.0
        }
    );
    assert_eq!(
        client.workload.mix,
        [MethodWeight {
            method: "Echo.Echo".into(),
            weight: 1,
            idempotent: false
        }]
    );
    assert_eq!(client.workload.payload_bytes, 64);
    assert_eq!(
        (client.workload.start_at, client.workload.stop_at),
        (Duration::ZERO, Duration::from_secs(30))
    );
    assert_eq!(
        client.call,
        CallConfig {
            timeout: Duration::from_secs(1),
            codec: squall::Codec::MessagePack
        }
    );
    let second = Duration::from_secs(1);
    assert_eq!(
        client.connection,
        ConnectionConfig {
            connect_timeout: second,
            keepalive_interval: second,
            keepalive_timeout: second
        }
    );
    assert_eq!(s.time_limit(), Duration::from_secs(32));
}

#[test]
fn unknown_key_names_its_line_and_suggests_the_key() {
    // Proves a misspelled key is an error at its own line with a did-you-mean.
    assert_eq!(
        error_replacing("replicas = 3", "replicsa = 3"),
        "x.toml:7: unknown key \"replicsa\" (did you mean \"replicas\"?)"
    );
    assert_eq!(
        error_appending("[network]\nlattency = \"2ms\"\n"),
        "x.toml:17: unknown key \"lattency\" (did you mean \"latency\"?)"
    );
}

#[test]
fn unknown_key_far_from_any_lists_the_keys() {
    // Proves an unrelated key gets the list of valid keys instead of a bad guess.
    let error = error_appending("[network]\nbandwidth = 3\n");
    assert!(
        error.starts_with(
            "x.toml:17: unknown key \"bandwidth\" (expected one of: latency, loss, repair_rate)"
        ),
        "{error}"
    );
}

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
fn misspelled_expectation_kind_suggests_the_kind() {
    // Proves expectation kinds get the same treatment as fault kinds.
    let error = error_appending("[[expect]]\nkind = \"sucess_rate\"\nmin = 0.9\n");
    assert_eq!(
        error,
        "x.toml:17: unknown expectation kind \"sucess_rate\" (did you mean \"success_rate\"?)"
    );
}

#[test]
fn bad_duration_is_rejected_with_the_units() {
    // Proves "10 parsecs" and a bare number are refused at their line, with what to write.
    let error = error_replacing("duration = \"30s\"", "duration = \"10 parsecs\"");
    assert_eq!(error, "x.toml:3: invalid duration \"10 parsecs\": unknown unit \"parsecs\" (units: us, ms, s, m for minutes, h)");
    let error = error_replacing("duration = \"30s\"", "duration = 30");
    assert!(
        error.starts_with("x.toml:3: invalid type: integer `30`, expected a duration string"),
        "{error}"
    );
    let error = error_replacing("duration = \"30s\"", "duration = \"0s\"");
    assert!(
        error.starts_with("x.toml:3: duration must be above zero"),
        "{error}"
    );
}

#[test]
fn references_to_unknown_hosts_are_rejected_with_a_hint() {
    // Proves a fault, a target and an expectation naming a missing host each fail at their line.
    let error = error_appending("[[faults]]\nat = \"5s\"\nkind = \"crash\"\nhost = \"srever-1\"\n");
    assert_eq!(
        error,
        "x.toml:19: host: unknown host or group \"srever-1\" (did you mean \"server-1\"?)"
    );
    let error = error_appending("[[faults]]\nat = \"5s\"\nkind = \"crash\"\nhost = \"server-4\"\n");
    assert_eq!(error, "x.toml:19: host: unknown host or group \"server-4\" (group \"server\" has 3 hosts: server-1..server-3)");
    let error = error_replacing("targets = [\"server\"]", "targets = [\"servers\"]");
    assert_eq!(
        error,
        "x.toml:12: targets: unknown host or group \"servers\" (did you mean \"server\"?)"
    );
    let error =
        error_appending("[[expect]]\nkind = \"call_count\"\nendpoint = \"server-7\"\nmin = 1\n");
    assert!(
        error.starts_with("x.toml:18: endpoint: unknown host or group \"server-7\""),
        "{error}"
    );
}

#[test]
fn hosts_of_the_wrong_role_are_rejected() {
    // Proves clients cannot crash, be targets or be endpoints, and servers are not clients.
    let error = error_appending("[[faults]]\nat = \"5s\"\nkind = \"crash\"\nhost = \"client-1\"\n");
    assert_eq!(
        error,
        "x.toml:19: host: \"client-1\" is a client (expected a server host or group, or the registry)"
    );
    let error =
        error_appending("[[expect]]\nkind = \"success_rate\"\nmin = 0.9\nclient = \"server\"\n");
    assert_eq!(
        error,
        "x.toml:19: client: \"server\" is a server (expected a client host or group)"
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
        error.starts_with("x.toml:19: between names 1 hosts"),
        "{error}"
    );
}

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
fn fractions_outside_zero_to_one_are_rejected() {
    // Proves loss and error rates are fractions, NaN included.
    let error = error_appending("[network]\nloss = 1.5\n");
    assert_eq!(
        error,
        "x.toml:17: loss = 1.5 is out of range (loss is a fraction from 0 to 1; 0.05 means 5%)"
    );
    let error = error_replacing("replicas = 3", "replicas = 3\nerror_rate = nan");
    assert!(
        error.starts_with("x.toml:8: error_rate = NaN is out of range"),
        "{error}"
    );
    let error = error_replacing("replicas = 3", "replicas = 3\nerror_rate = -0.1");
    assert!(
        error.starts_with("x.toml:8: error_rate = -0.1 is out of range"),
        "{error}"
    );
}

#[test]
fn replicas_outside_the_limit_are_rejected() {
    // Proves 0 and 101 replicas are errors with the allowed range.
    assert_eq!(
        error_replacing("replicas = 3", "replicas = 0"),
        "x.toml:7: replicas = 0 is out of range (replicas must be 1..=100)"
    );
    assert_eq!(
        error_replacing("replicas = 3", "replicas = 101"),
        "x.toml:7: replicas = 101 is out of range (replicas must be 1..=100)"
    );
}

#[test]
fn percentile_outside_zero_to_hundred_is_rejected() {
    // Proves percentiles live in (0, 100] and 100 is accepted as the maximum.
    let error = error_appending("[[expect]]\nkind = \"latency\"\npercentile = 0\nmax = \"1s\"\n");
    assert!(
        error.starts_with("x.toml:18: percentile 0 is out of range"),
        "{error}"
    );
    let error =
        error_appending("[[expect]]\nkind = \"latency\"\npercentile = 100.5\nmax = \"1s\"\n");
    assert!(
        error.starts_with("x.toml:18: percentile 100.5 is out of range"),
        "{error}"
    );
    let s = ok_appending("[[expect]]\nkind = \"latency\"\npercentile = 100\nmax = \"1s\"\n");
    assert!(matches!(
        s.expectations[0].check,
        Check::Latency {
            percentile: 100.0,
            ..
        }
    ));
}

#[test]
fn expectation_values_are_typed_per_kind() {
    // Proves min/max mean a duration for latency and a fraction for success_rate.
    let error = error_appending("[[expect]]\nkind = \"latency\"\npercentile = 99\nmax = 20\n");
    assert_eq!(
        error,
        "x.toml:19: max must be a duration, got 20 (e.g. max = \"50ms\")"
    );
    let error = error_appending("[[expect]]\nkind = \"success_rate\"\nmin = 99.9\n");
    assert_eq!(
        error,
        "x.toml:18: min = 99.9 is out of range (min is a fraction from 0 to 1; 0.999 means 99.9%)"
    );
    let error = error_appending(
        "[[expect]]\nkind = \"success_rate\"\nmin = 0.9\nendpoint = \"server-1\"\n",
    );
    assert!(
        error
            .starts_with("x.toml:19: expectation kind \"success_rate\" does not take \"endpoint\""),
        "{error}"
    );
}

#[test]
fn expectation_windows_are_checked() {
    // Proves an empty window, a window past the end and a windowless no_calls are errors.
    let error = error_appending(
        "[[expect]]\nkind = \"success_rate\"\nmin = 0.9\nfrom = \"10s\"\nto = \"5s\"\n",
    );
    assert!(
        error.starts_with("x.toml:20: empty window: to 5s is not after from 10s"),
        "{error}"
    );
    let error = error_appending("[[expect]]\nkind = \"success_rate\"\nmin = 0.9\nto = \"40s\"\n");
    assert!(
        error.starts_with("x.toml:19: to 40s is after the end of the scenario (30s)"),
        "{error}"
    );
    let error = error_appending("[[expect]]\nkind = \"no_calls\"\nendpoint = \"server-1\"\n");
    assert!(
        error.starts_with("x.toml:17: no_calls needs a window: from and to"),
        "{error}"
    );
}

#[test]
fn expectation_method_must_be_called_by_some_client() {
    // Proves a misspelled method filter is caught instead of matching nothing.
    let error =
        error_appending("[[expect]]\nkind = \"success_rate\"\nmin = 0.9\nmethod = \"Echo.Eho\"\n");
    assert_eq!(
        error,
        "x.toml:19: no client calls method \"Echo.Eho\" (did you mean \"Echo.Echo\"?)"
    );
}

#[test]
fn missing_required_key_says_why_it_is_required() {
    // Proves a scenario without a description is refused with the reason descriptions exist.
    let error = parse(&BASE.replace("description = \"A fixture.\"\n", ""))
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("missing key \"description\" (every scenario says what it proves"),
        "{error}"
    );
}

#[test]
fn group_names_must_be_unique_and_plain() {
    // Proves host-name clashes and names turmoil cannot use are refused.
    let error = error_appending("[[servers]]\ngroup = \"client\"\n");
    assert_eq!(error, "x.toml:17: group \"client\": the name \"client\" is already taken (every group and host name must be unique; rename the group)");
    let error = error_appending("[[servers]]\ngroup = \"Server_B\"\n");
    assert!(
        error.starts_with("x.toml:17: invalid group name \"Server_B\""),
        "{error}"
    );
    let error = error_appending("[[servers]]\ngroup = \"registry\"\n");
    assert!(
        error.starts_with("x.toml:17: group name \"registry\" is reserved"),
        "{error}"
    );
}

#[test]
fn per_host_overrides_apply_to_one_host_only() {
    // Proves [servers.hosts.server-2] changes server-2 and nothing else, and a bad host name is refused.
    let s = parse(&BASE.replace(
        "replicas = 3",
        "replicas = 3\n[servers.hosts.server-2]\nerror_rate = 0.5\nweight = 3",
    ))
    .unwrap_or_else(|e| panic!("{e:#}"));
    let rates: Vec<(f64, u32)> = s
        .server_hosts()
        .map(|h| (h.behaviour.error_rate, h.weight))
        .collect();
    assert_eq!(rates, [(0.0, 1), (0.5, 3), (0.0, 1)]);
    let error = error_replacing(
        "replicas = 3",
        "replicas = 3\n[servers.hosts.server-5]\nweight = 3",
    );
    assert!(
        error.starts_with("x.toml:8: [servers.hosts.server-5]: no such host in group \"server\""),
        "{error}"
    );
}

#[test]
fn unreadable_file_names_the_path() {
    // Proves from_file reports a missing file as an error naming it, not a panic.
    let error = Scenario::from_file("scenarios/does-not-exist.toml").unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("scenarios/does-not-exist.toml: cannot read the file"),
        "{error}"
    );
    assert_eq!(error.line, None);
}

/// One random edit of a valid file.
#[derive(Debug, Clone)]
enum Mutation {
    DeleteLine(usize),
    SwapAdjacentChars(usize),
    InsertBytes(usize, Vec<u8>),
    DuplicateLine(usize),
    ReplaceNumber(usize, i64),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::DeleteLine),
        any::<usize>().prop_map(Mutation::SwapAdjacentChars),
        (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, b)| Mutation::InsertBytes(at, b)),
        any::<usize>().prop_map(Mutation::DuplicateLine),
        (any::<usize>(), any::<i64>()).prop_map(|(at, n)| Mutation::ReplaceNumber(at, n)),
    ]
}

/// Applies a mutation; bytes that are not UTF-8 are replaced (the parser takes &str).
fn apply(text: &str, mutation: &Mutation) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    match mutation {
        Mutation::DeleteLine(i) => {
            let i = i % lines.len();
            lines.remove(i);
        }
        Mutation::DuplicateLine(i) => {
            let i = i % lines.len();
            lines.insert(i, lines[i].clone());
        }
        Mutation::SwapAdjacentChars(i) => {
            let mut chars: Vec<char> = text.chars().collect();
            let i = i % (chars.len() - 1);
            chars.swap(i, i + 1);
            return chars.into_iter().collect();
        }
        Mutation::InsertBytes(i, bytes) => {
            let mut raw = text.as_bytes().to_vec();
            let i = i % raw.len();
            raw.splice(i..i, bytes.iter().copied());
            return String::from_utf8_lossy(&raw).into_owned();
        }
        Mutation::ReplaceNumber(i, n) => {
            let digits: Vec<usize> = text
                .char_indices()
                .filter(|(_, c)| c.is_ascii_digit())
                .map(|(i, _)| i)
                .collect();
            let at = digits[i % digits.len()];
            return format!("{}{n}{}", &text[..at], &text[at + 1..]);
        }
    }
    lines.join("\n")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn mutated_scenarios_never_panic(file in 0usize..64, edits in proptest::collection::vec(mutation(), 1..4)) {
        // Proves from_str returns Ok or Err — never panics — on damaged versions of every shipped file.
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../scenarios");
        let mut paths: Vec<_> = std::fs::read_dir(dir).expect("scenarios/ exists").filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        let original = std::fs::read_to_string(&paths[file % paths.len()]).expect("readable");
        let mut text = original;
        for edit in &edits {
            text = apply(&text, edit);
        }
        match Scenario::from_str(&text, "mutated.toml") {
            Ok(s) => prop_assert!(!s.seeds.is_empty()),
            Err(e) => prop_assert!(e.to_string().starts_with("mutated.toml")),
        }
    }
}

#[test]
fn complete_example_in_the_docs_parses() {
    // Proves docs/SCENARIOS.md's complete example is a valid scenario, so the docs cannot rot silently.
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/SCENARIOS.md"))
            .expect("docs exist");
    let start = docs
        .find("```toml\nname = ")
        .expect("the docs open with a complete example")
        + "```toml\n".len();
    let len = docs[start..]
        .find("```")
        .expect("the example block is closed");
    let scenario = parse(&docs[start..start + len]).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(scenario.name, "partition-heal");
}

#[test]
fn fault_and_expectation_examples_in_the_docs_parse() {
    // Proves every [[faults]] and [[expect]] example block in the docs is valid against a 3-server fixture.
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/SCENARIOS.md"))
            .expect("docs exist");
    let blocks: Vec<&str> = docs
        .split("```toml\n")
        .skip(1)
        .filter_map(|rest| rest.split_once("```").map(|(block, _)| block))
        .filter(|block| block.starts_with("[[faults]]") || block.starts_with("[[expect]]"))
        .collect();
    assert_eq!(blocks.len(), 2, "one faults block and one expect block");
    // A client with hash keys and a breaker, and a registry: what leave, the
    // breaker kinds and the key kinds need.
    let fixture = BASE.replace("replicas = 2", "replicas = 1").replace(
        "rate = 100",
        "rate = 100\nhash_keys = 50\n[clients.breaker]\n[registry]",
    );
    for block in blocks {
        parse(&format!("{fixture}{block}")).unwrap_or_else(|e| panic!("{e:#}\n{block}"));
    }
}

#[test]
fn topology_examples_in_the_docs_parse() {
    // Proves every [registry], [[servers]] and [[clients]] example block in the
    // docs is valid: servers next to a discovering client, clients next to three
    // servers and a registry.
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/SCENARIOS.md"))
            .expect("docs exist");
    let blocks: Vec<&str> = docs
        .split("```toml\n")
        .skip(1)
        .filter_map(|rest| rest.split_once("```").map(|(block, _)| block))
        .collect();
    let head = "name = \"t\"\ndescription = \"docs\"\nduration = \"30s\"\n";
    let mut checked = 0;
    for block in blocks {
        let text = if block.starts_with("[registry]") {
            format!("{BASE}{block}")
        } else if block.starts_with("[[servers]]") {
            format!("{head}[registry]\n{block}[[clients]]\ngroup = \"c\"\nservice = \"echo\"\nrate = 1\n")
        } else if block.starts_with("[[clients]]") {
            format!("{head}[registry]\n[[servers]]\ngroup = \"server\"\nreplicas = 3\n{block}")
        } else {
            continue;
        };
        parse(&text).unwrap_or_else(|e| panic!("{e:#}\n{text}"));
        checked += 1;
    }
    assert!(checked >= 6, "found only {checked} topology examples");
}

/// `BASE` with a `[registry]` table and the client discovering `echo`, plus `extra`.
fn with_registry(extra: &str) -> Result<Scenario, ScenarioError> {
    let text = BASE.replace("targets = [\"server\"]", "service = \"echo\"");
    parse(&format!("{text}{extra}\n[registry]\n"))
}

#[test]
fn registry_and_discovery_get_documented_defaults() {
    // Proves [registry] defaults (ttl 3s, heartbeat ttl/3, watch 2s), the default
    // service "echo", balancer round_robin, pool 1, no keys, start_at 0, and that
    // the registry host becomes nameable in faults.
    let s = with_registry(
        "[[faults]]\nat = \"5s\"\nkind = \"partition\"\nbetween = [\"registry\", \"client\"]\n",
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(
        s.registry,
        Some(RegistryConfig {
            ttl: Duration::from_secs(3),
            heartbeat: Duration::from_secs(1),
            watch_timeout: Duration::from_secs(2),
        })
    );
    assert_eq!(s.servers[0].service, "echo");
    assert_eq!(s.servers[0].forward, None);
    assert_eq!(s.servers[0].hosts[2].start_at, Duration::ZERO);
    let client = &s.clients[0];
    assert_eq!(client.service.as_deref(), Some("echo"));
    assert!(client.targets.is_empty());
    assert_eq!(client.balancer, squall::BalancerKind::RoundRobin);
    assert_eq!((client.pool_size, client.hash_keys), (1, None));
    assert_eq!(s.instances_of("echo").count(), 3);
    let FaultAction::Partition { links } = &s.faults[0].action else {
        panic!("{:?}", s.faults[0])
    };
    assert_eq!(links[0].from, REGISTRY_HOST);
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
fn registry_timings_are_checked() {
    // Proves a heartbeat that is not below the ttl, and a ttl past the limit, are refused.
    let error = error_appending("[registry]\nttl = \"2s\"\nheartbeat = \"2s\"\n");
    assert_eq!(error, "x.toml:18: heartbeat 2s is not below ttl 2s (every lease would lapse between renewals; use heartbeat = ttl / 3)");
    let error = error_appending("[registry]\nttl = \"5m\"\n");
    assert!(
        error.starts_with("x.toml:17: ttl 300s is above the 60s limit"),
        "{error}"
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

#[test]
fn forwarding_targets_must_exist_and_must_not_loop() {
    // Proves forward_to is resolved like targets, cannot name its own group,
    // cannot form a cycle, and its companion keys need it.
    let two_groups = "[[servers]]\ngroup = \"backend\"\n";
    let error = error_replacing("replicas = 3", "replicas = 3\nforward_to = [\"bakend\"]");
    assert!(
        error.starts_with("x.toml:8: forward_to: unknown host or group \"bakend\""),
        "{error}"
    );
    let error = error_replacing("replicas = 3", "replicas = 3\nforward_to = [\"server-2\"]");
    assert!(
        error.starts_with("x.toml:8: forward_to: \"server-2\" is in this group"),
        "{error}"
    );
    let cyclic = BASE.replace("replicas = 3", "replicas = 3\nforward_to = [\"backend\"]")
        + two_groups
        + "forward_to = [\"server\"]\n";
    let error = parse(&cyclic).map(|_| ()).unwrap_err().to_string();
    assert!(
        error.starts_with("x.toml:8: forwarding from \"server\" leads back to it"),
        "{error}"
    );
    let error = error_replacing(
        "replicas = 3",
        "replicas = 3\nforward_method = \"Echo.Echo\"",
    );
    assert!(
        error.starts_with("x.toml:8: forward_method is set but forward_to is not"),
        "{error}"
    );
    let chain = BASE.replace(
        "replicas = 3",
        "replicas = 3\nforward_to = [\"backend\"]\nforward_timeout = \"300ms\"",
    ) + two_groups;
    let s = parse(&chain).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(
        s.servers[0].forward,
        Some(Forward {
            targets: vec!["backend-1".into()],
            method: "Echo.Echo".into(),
            timeout: Some(Duration::from_millis(300)),
        })
    );
}

#[test]
fn start_at_must_be_inside_the_run_and_precede_lifecycle_faults() {
    // Proves a server that would start at the end is refused, a per-host start_at
    // overrides the group's, and crashing a server before it starts is an error.
    let error = error_replacing("replicas = 3", "replicas = 3\nstart_at = \"30s\"");
    assert!(
        error.starts_with("x.toml:8: start_at 30s is not before the end of the scenario (30s)"),
        "{error}"
    );
    let late = BASE.replace(
        "replicas = 3",
        "replicas = 3\n[servers.hosts.server-3]\nstart_at = \"10s\"",
    );
    let s = parse(&late).unwrap_or_else(|e| panic!("{e:#}"));
    let starts: Vec<Duration> = s.server_hosts().map(|h| h.start_at).collect();
    assert_eq!(
        starts,
        [Duration::ZERO, Duration::ZERO, Duration::from_secs(10)]
    );
    let error = parse(&format!(
        "{late}[[faults]]\nat = \"5s\"\nkind = \"crash\"\nhost = \"server-3\"\n"
    ))
    .map(|_| ())
    .unwrap_err()
    .to_string();
    assert!(
        error.starts_with(
            "x.toml:18: server-3 only starts at 10s (start_at), so it cannot be acted on at 5s"
        ),
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

/// `BASE` whose client has a breaker and hash keys, plus `extra`.
fn ok_resilient(extra: &str) -> Result<Scenario, ScenarioError> {
    let text = BASE.replace("rate = 100", "rate = 100\nhash_keys = 50");
    parse(&format!("{text}[clients.breaker]\n{extra}"))
}

#[test]
fn new_expectation_kinds_parse_with_their_defaults() {
    // Proves each new kind's keys and defaults (breaker_opened min 1, key_affinity
    // max_endpoints 1).
    let s = ok_resilient(concat!(
        "[[expect]]\nkind = \"breaker_opened\"\nendpoint = \"server-1\"\n",
        "[[expect]]\nkind = \"breaker_closed\"\nendpoint = \"server-1\"\nfrom = \"10s\"\n",
        "[[expect]]\nkind = \"breaker_min_open\"\nendpoint = \"server-1\"\nmin = \"2s\"\n",
        "[[expect]]\nkind = \"retry_amplification\"\nmax = 1.2\n",
        "[[expect]]\nkind = \"executions_per_call\"\nmax = 1\n",
        "[[expect]]\nkind = \"key_affinity\"\nto = \"15s\"\n",
        "[[expect]]\nkind = \"keys_moved_only_from\"\nendpoint = \"server-2\"\nat = \"15s\"\n",
        "[[expect]]\nkind = \"handlers_end_by_deadline\"\nslack = \"20ms\"\n",
    ))
    .unwrap_or_else(|e| panic!("{e:#}"));
    let checks: Vec<&Check> = s.expectations.iter().map(|e| &e.check).collect();
    assert_eq!(
        checks,
        [
            &Check::BreakerOpened {
                endpoint: "server-1".into(),
                min: 1
            },
            &Check::BreakerClosed {
                endpoint: "server-1".into()
            },
            &Check::BreakerMinOpen {
                endpoint: "server-1".into(),
                min: Duration::from_secs(2)
            },
            &Check::RetryAmplification { max: 1.2 },
            &Check::ExecutionsPerCall { max: 1 },
            &Check::KeyAffinity { max_endpoints: 1 },
            &Check::KeysMovedOnlyFrom {
                endpoint: "server-2".into(),
                at: Duration::from_secs(15)
            },
            &Check::HandlersEndByDeadline {
                slack: Duration::from_millis(20)
            },
        ]
    );
    assert_eq!(
        s.expectations[6].name,
        "keys_moved_only_from endpoint=server-2 at=15s"
    );
}

#[test]
fn new_expectation_kinds_refuse_what_cannot_be_checked() {
    // Proves breaker kinds need a breaker and take no method, key kinds need hash
    // keys, single-endpoint kinds refuse groups, and bounds are range-checked.
    let error = error_appending("[[expect]]\nkind = \"breaker_opened\"\nendpoint = \"server-1\"\n");
    assert!(
        error.starts_with(
            "x.toml:17: breaker_opened: no client it looks at has a [clients.breaker]"
        ),
        "{error}"
    );
    let error = error_appending("[[expect]]\nkind = \"key_affinity\"\n");
    assert!(
        error.starts_with("x.toml:17: key_affinity: no client it looks at sends hash keys"),
        "{error}"
    );
    let fails = |extra: &str| ok_resilient(extra).map(|_| ()).unwrap_err().to_string();
    let error = fails(
        "[[expect]]\nkind = \"breaker_closed\"\nendpoint = \"server-1\"\nmethod = \"Echo.Echo\"\n",
    );
    assert!(
        error.starts_with("x.toml:21: breaker_closed takes no method"),
        "{error}"
    );
    let error = fails("[[expect]]\nkind = \"breaker_opened\"\nendpoint = \"server\"\n");
    assert_eq!(error, "x.toml:20: breaker_opened follows one server host, not the group \"server\" (name one of: server-1, server-2, server-3; add an expectation per host)");
    let error = fails("[[expect]]\nkind = \"retry_amplification\"\nmax = 0.5\n");
    assert!(
        error.starts_with("x.toml:20: max = 0.5 is out of range"),
        "{error}"
    );
    let error = fails("[[expect]]\nkind = \"executions_per_call\"\nmax = 0\n");
    assert!(
        error.starts_with("x.toml:20: max must be a whole number ≥ 1, got 0"),
        "{error}"
    );
    let error = fails("[[expect]]\nkind = \"key_affinity\"\nmax_endpoints = 0\n");
    assert!(
        error.starts_with("x.toml:20: max_endpoints = 0 is out of range"),
        "{error}"
    );
    let error = fails("[[expect]]\nkind = \"keys_moved_only_from\"\nendpoint = \"server-1\"\nat = \"15s\"\nto = \"10s\"\n");
    assert!(
        error.starts_with("x.toml:21: at 15s is not inside the window and the run"),
        "{error}"
    );
    let error = fails("[[expect]]\nkind = \"handlers_end_by_deadline\"\n");
    assert!(
        error.starts_with(
            "x.toml:19: expectation kind \"handlers_end_by_deadline\" needs \"slack\""
        ),
        "{error}"
    );
}
