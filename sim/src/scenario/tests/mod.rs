//! Scenario parsing and validation: the shipped files parse, defaults are the
//! documented ones, and each class of mistake names the right line with a hint.
//! This file holds the fixture, the whole-file tests (shipped scenarios, docs
//! examples, random edits) and the shared value types; each section of the file
//! format has its own module.

use std::time::Duration;

use proptest::prelude::*;

use super::*;

mod clients;
mod expectations;
mod faults;
mod regressions;
mod topology;

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
    assert_eq!(first.behaviour, Behaviour::fixed(Duration::from_millis(1)));
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
