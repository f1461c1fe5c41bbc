//! Regression tests for validation bugs found by unseen scenarios (issue 13,
//! finding 4): each failed before its fix.

use super::*;

/// Two faults on `client-1 <-> server-1` appended to `BASE` (lines 16-19 and 20-23).
fn two_faults(first: &str, second: &str) -> Result<Scenario, ScenarioError> {
    parse(&format!(
        "{BASE}[[faults]]\nat = \"5s\"\n{first}\n[[faults]]\nat = \"6s\"\n{second}\n"
    ))
}

#[test]
fn partition_oneway_on_a_held_link_is_rejected_naming_the_hold() {
    // Proves the documented "hold and a one-way partition on one link are
    // unsupported" is enforced in both orders, at the later fault, with the undo.
    let hold = "kind = \"hold\"\nbetween = [\"client-1\", \"server-1\"]";
    let oneway = "kind = \"partition_oneway\"\nfrom = \"server-1\"\nto = \"client-1\"";
    let error = two_faults(hold, oneway).unwrap_err().to_string();
    assert_eq!(
        error,
        "x.toml:20: partition_oneway at 6s: the link server-1 <-> client-1 is held since line 16; \
         hold and a one-way partition on one link are unsupported by turmoil \
         (add a kind = \"release\" fault before this one, or use a two-way partition; \
         see the fidelity gaps in docs/SCENARIOS.md)"
    );
    let error = two_faults(oneway, hold).unwrap_err().to_string();
    assert!(
        error.starts_with("x.toml:21: hold at 6s: the link client-1 <-> server-1 is partitioned one way since line 16"),
        "{error}"
    );
    assert!(error.contains("kind = \"heal_oneway\""), "{error}");
}

#[test]
fn hold_and_oneway_partition_are_accepted_once_apart() {
    // Proves the check is about overlap only: a release (or heal_oneway, or a
    // two-way heal) in between, or another link, is fine.
    let release =
        "[[faults]]\nat = \"5s\"\nkind = \"release\"\nbetween = [\"client-1\", \"server-1\"]\n";
    let text = format!(
        "{BASE}[[faults]]\nat = \"1s\"\nkind = \"hold\"\nbetween = [\"client-1\", \"server-1\"]\n\
         {release}[[faults]]\nat = \"6s\"\nkind = \"partition_oneway\"\nfrom = \"client-1\"\nto = \"server-1\"\n"
    );
    parse(&text).unwrap();
    let other_link = two_faults(
        "kind = \"hold\"\nbetween = [\"client-1\", \"server-1\"]",
        "kind = \"partition_oneway\"\nfrom = \"client-1\"\nto = \"server-2\"",
    );
    other_link.unwrap();
    let text = format!(
        "{BASE}[[faults]]\nat = \"1s\"\nkind = \"partition_oneway\"\nfrom = \"client\"\nto = \"server\"\n\
         [[faults]]\nat = \"2s\"\nkind = \"heal\"\nbetween = [\"server\", \"client\"]\n\
         [[faults]]\nat = \"3s\"\nkind = \"hold\"\nbetween = [\"client-1\", \"server-1\"]\n"
    );
    parse(&text).unwrap();
}

#[test]
fn durations_with_spaces_are_rejected_with_the_fixed_text() {
    // Proves "10 s" and " 10s" are refused as the docs say, not read as 10s.
    let error = error_replacing("duration = \"30s\"", "duration = \"10 s\"");
    assert_eq!(
        error,
        "x.toml:3: invalid duration \"10 s\": no spaces allowed (write \"10s\")"
    );
    let error = error_replacing("duration = \"30s\"", "duration = \" 10s\"");
    assert_eq!(
        error,
        "x.toml:3: invalid duration \" 10s\": no spaces allowed (write \"10s\")"
    );
    let error =
        error_appending("[[faults]]\nat = \"5 s\"\nkind = \"crash\"\nhost = \"server-1\"\n");
    assert!(
        error.starts_with("x.toml:17: invalid duration \"5 s\""),
        "{error}"
    );
}

#[test]
fn quoted_numbers_name_the_key_and_show_it_unquoted() {
    // Proves `rate = "100"` (and the same mistake on any numeric or boolean key)
    // says which key, what it must be, and the fix, instead of "expected f64".
    let error = error_replacing("rate = 100", "rate = \"100\"");
    assert_eq!(
        error,
        "x.toml:13: \"rate\" must be a number, not the string \"100\" (write rate = 100, without quotes)"
    );
    let error = error_replacing("replicas = 3", "replicas = \"3\"");
    assert_eq!(
        error,
        "x.toml:7: \"replicas\" must be a whole number, not the string \"3\" (write replicas = 3, without quotes)"
    );
    let error = error_replacing(
        "rate = 100",
        "rate = 100\nmix = [{ method = \"Echo.Echo\", weight = \"3\" }]",
    );
    assert!(
        error.starts_with("x.toml:14: \"weight\" must be a whole number, not the string \"3\""),
        "{error}"
    );
    let error = error_replacing("rate = 100", "rate = 100\nidempotent = \"true\"");
    assert_eq!(
        error,
        "x.toml:14: \"idempotent\" must be true or false, not the string \"true\" (write idempotent = true, without quotes)"
    );
    let error = error_appending("[[faults]]\nat = \"5s\"\nkind = \"loss\"\nrate = \"0.05\"\n");
    assert!(
        error.starts_with("x.toml:19: \"rate\" must be a number, not the string \"0.05\""),
        "{error}"
    );
    let error = error_replacing("rate = 100", "rate = \"fast\"");
    assert_eq!(
        error,
        "x.toml:13: \"rate\" must be a number, not the string \"fast\" (write a number, without quotes)"
    );
}

#[test]
fn counts_in_messages_use_the_singular_for_one() {
    // Proves "names 1 hosts" / "has 1 hosts" read as English.
    let error = error_appending(
        "[[faults]]\nat = \"5s\"\nkind = \"partition\"\nbetween = [\"client-1\"]\n",
    );
    assert!(
        error.starts_with("x.toml:19: between has 1 name, not 2 ("),
        "{error}"
    );
    let error = error_appending(
        "[[faults]]\nat = \"5s\"\nkind = \"partition\"\nbetween = [\"client-1\", \"server\", \"server-1\"]\n",
    );
    assert!(
        error.starts_with("x.toml:19: between has 3 names, not 2 ("),
        "{error}"
    );
    let error = error_replacing("targets = [\"server\"]", "targets = [\"client-3\"]");
    assert_eq!(
        error,
        "x.toml:12: targets: unknown host or group \"client-3\" (group \"client\" has 2 hosts: client-1..client-2)"
    );
    let text = BASE.replacen("replicas = 3", "replicas = 1", 1);
    let error = parse(&format!(
        "{text}[[faults]]\nat = \"5s\"\nkind = \"crash\"\nhost = \"server-2\"\n"
    ))
    .unwrap_err()
    .to_string();
    assert_eq!(
        error,
        "x.toml:19: host: unknown host or group \"server-2\" (group \"server\" has 1 host: server-1)"
    );
}

#[test]
fn quoted_numbers_in_expectation_bounds_name_the_key_and_show_it_unquoted() {
    // Proves min/max, which take any TOML value and are typed per kind, treat a
    // quoted number like every other numeric key does.
    let error = error_appending("[[expect]]\nkind = \"success_rate\"\nmin = \"0.99\"\n");
    assert_eq!(
        error,
        "x.toml:18: \"min\" must be a fraction from 0 to 1, not the string \"0.99\" (write min = 0.99, without quotes)"
    );
    let error = error_appending("[[expect]]\nkind = \"max_failed_calls\"\nmax = \"3\"\n");
    assert_eq!(
        error,
        "x.toml:18: \"max\" must be a whole number ≥ 0, not the string \"3\" (write max = 3, without quotes)"
    );
    let error = error_appending("[[expect]]\nkind = \"max_failed_calls\"\nmax = \"few\"\n");
    assert!(
        error.starts_with("x.toml:18: max must be a whole number ≥ 0, got \"few\""),
        "{error}"
    );
}
