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
        "x.toml:19: host: \"client-1\" is a client (expected a server host or group)"
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
    fn mutated_scenarios_never_panic(file in 0usize..6, edits in proptest::collection::vec(mutation(), 1..4)) {
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
    for block in blocks {
        let text = BASE.replace("replicas = 2", "replicas = 1") + block;
        parse(&text).unwrap_or_else(|e| panic!("{e:#}"));
    }
}
