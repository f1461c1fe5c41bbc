//! Shrinking: from a failing run, a smaller scenario that still fails the same
//! expectation — fewer faults, fewer replicas, shorter, lighter — written as a
//! valid scenario file with the seed and the replay command.
//!
//! The search is greedy and deterministic (delta debugging without the
//! partitions): candidates are edits of the scenario's TOML document, tried in
//! a fixed order; a candidate is kept when it still validates and fails the
//! target expectation at one of a fixed list of seeds (the original seed
//! first). It repeats until no edit is kept or the run budget is spent. Same
//! input, same output: no wall clock, no randomness.
//!
//! Edits, in order: drop one fault; drop one expectation other than the
//! target; drop a whole group; halve a group's `replicas`; halve the
//! `duration` (faults past the new end dropped); halve a client's `rate` or
//! `concurrency`; move a fault later, halving its distance to the next fault
//! or the end (narrower fault windows).

use std::fmt::Write as _;

use toml::{Table, Value};

use crate::scenario::{format_duration, parse_duration, Scenario};
use crate::simulation::Simulation;

/// How a shrink runs.
#[derive(Clone, Debug)]
pub struct ShrinkOptions {
    /// The failing seed.
    pub seed: u64,
    /// The expectation (verdict name) that must keep failing; `None`: the
    /// first failing verdict at `seed`.
    pub expect: Option<String>,
    /// Extra seeds a candidate may fail at (after `seed`).
    pub other_seeds: Vec<u64>,
    /// Most runs in total (each candidate costs up to `1 + other_seeds.len()`).
    pub runs_max: u64,
}

impl Default for ShrinkOptions {
    fn default() -> ShrinkOptions {
        ShrinkOptions {
            seed: 1,
            expect: None,
            other_seeds: vec![1, 2, 3],
            runs_max: 400,
        }
    }
}

/// What a shrink found.
#[derive(Clone, Debug)]
pub struct Shrunk {
    /// The expectation that keeps failing.
    pub expect: String,
    /// The seed the smallest scenario fails at.
    pub seed: u64,
    /// The smallest scenario, as TOML (a header comment, then the document).
    pub text: String,
    /// Edits kept, in order (`dropped fault 3 (crash server-2)`, …).
    pub steps: Vec<String>,
    /// Runs made.
    pub runs: u64,
}

/// Shrinks `text` (a scenario file named `path`) with the code `build` plugs
/// in (`Simulation::new` for the built-in echo). `progress` hears each kept edit.
pub fn shrink(
    text: &str,
    path: &str,
    options: &ShrinkOptions,
    build: &dyn Fn(Scenario) -> Simulation,
    progress: &mut dyn FnMut(&str),
) -> Result<Shrunk, String> {
    let mut document: Table = toml::from_str(text).map_err(|e| format!("{path}: {e}"))?;
    let scenario = Scenario::from_str(text, path).map_err(|e| format!("{e:#}"))?;
    let outcome = build(scenario)
        .run(options.seed)
        .map_err(|e| e.to_string())?;
    let failing: Vec<&str> = outcome
        .verdicts
        .iter()
        .filter(|v| !v.pass)
        .map(|v| v.name.as_str())
        .collect();
    let expect = match &options.expect {
        Some(name) if failing.contains(&name.as_str()) => name.clone(),
        Some(name) => {
            return Err(format!(
                "{name:?} does not fail at seed {}; failing: {}",
                options.seed,
                if failing.is_empty() {
                    "none".to_owned()
                } else {
                    failing.join(", ")
                }
            ))
        }
        None => failing
            .first()
            .map(|s| (*s).to_owned())
            .ok_or_else(|| format!("seed {} passes: nothing to shrink", options.seed))?,
    };
    let mut seeds = vec![options.seed];
    seeds.extend(options.other_seeds.iter().filter(|&&s| s != options.seed));
    let mut search = Search {
        path,
        expect: &expect,
        seeds,
        build,
        runs: 1,
        runs_max: options.runs_max,
        seed: options.seed,
    };
    let mut steps = Vec::new();
    'fixpoint: loop {
        for (edit, candidate) in candidates(&document, &expect) {
            if search.runs >= search.runs_max {
                break 'fixpoint;
            }
            if search.still_fails(&candidate) {
                progress(&edit);
                steps.push(edit);
                document = candidate;
                continue 'fixpoint;
            }
        }
        break;
    }
    let (runs, seed) = (search.runs, search.seed);
    let body = toml::to_string(&document).map_err(|e| e.to_string())?;
    let mut header = String::new();
    let _ = writeln!(
        header,
        "# Shrunk by `sim shrink` from {path} (seed {}).",
        options.seed
    );
    let _ = writeln!(
        header,
        "# Still fails {expect:?} at seed {}, after {} edits:",
        seed,
        steps.len()
    );
    for step in &steps {
        let _ = writeln!(header, "#   - {step}");
    }
    let _ = writeln!(
        header,
        "# Replay: cargo run -p sim -- run THIS_FILE --seed {seed}"
    );
    let _ = writeln!(
        header,
        "# (name and description kept; edit them before committing it as a scenario)"
    );
    Ok(Shrunk {
        expect,
        seed,
        text: format!("{header}\n{body}"),
        steps,
        runs,
    })
}

/// The candidate runner.
struct Search<'a> {
    path: &'a str,
    expect: &'a str,
    seeds: Vec<u64>,
    build: &'a dyn Fn(Scenario) -> Simulation,
    runs: u64,
    runs_max: u64,
    /// The seed the last kept candidate failed at.
    seed: u64,
}

impl Search<'_> {
    fn still_fails(&mut self, candidate: &Table) -> bool {
        let Ok(text) = toml::to_string(candidate) else {
            return false;
        };
        let Ok(scenario) = Scenario::from_str(&text, self.path) else {
            return false;
        };
        let simulation = (self.build)(scenario);
        if simulation.validate().is_err() {
            return false;
        }
        for &seed in &self.seeds {
            if self.runs >= self.runs_max {
                return false;
            }
            self.runs += 1;
            let Ok(outcome) = simulation.run(seed) else {
                continue;
            };
            if outcome
                .verdicts
                .iter()
                .any(|v| !v.pass && v.name == self.expect)
            {
                self.seed = seed;
                return true;
            }
        }
        false
    }
}

fn array<'t>(document: &'t Table, key: &str) -> &'t [Value] {
    document
        .get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn with_array(document: &Table, key: &str, f: impl FnOnce(&mut Vec<Value>)) -> Table {
    let mut copy = document.clone();
    if let Some(Value::Array(items)) = copy.get_mut(key) {
        f(items);
        if items.is_empty() {
            copy.remove(key);
        }
    }
    copy
}

fn describe(value: &Value) -> String {
    let field = |k: &str| {
        value
            .get(k)
            .map(|v| v.to_string().trim_matches('"').to_owned())
    };
    [
        field("kind"),
        field("host"),
        field("group"),
        field("name"),
        field("at"),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" ")
}

fn duration_of(value: Option<&Value>) -> Option<std::time::Duration> {
    value
        .and_then(Value::as_str)
        .and_then(|s| parse_duration(s).ok())
}

/// Every single edit of `document`, in the fixed order of the module docs.
fn candidates(document: &Table, expect: &str) -> Vec<(String, Table)> {
    let mut out = Vec::new();
    for (i, fault) in array(document, "faults").iter().enumerate() {
        out.push((
            format!("dropped fault {} ({})", i + 1, describe(fault)),
            with_array(document, "faults", |f| {
                f.remove(i);
            }),
        ));
    }
    for (i, entry) in array(document, "expect").iter().enumerate() {
        let name = entry.get("name").and_then(Value::as_str);
        if name == Some(expect) || array(document, "expect").len() == 1 {
            continue;
        }
        out.push((
            format!("dropped expectation {} ({})", i + 1, describe(entry)),
            with_array(document, "expect", |e| {
                e.remove(i);
            }),
        ));
    }
    for key in ["clients", "servers"] {
        for (i, group) in array(document, key).iter().enumerate() {
            out.push((
                format!("dropped {key} group {}", describe(group)),
                with_array(document, key, |g| {
                    g.remove(i);
                }),
            ));
            let replicas = group
                .get("replicas")
                .and_then(Value::as_integer)
                .unwrap_or(1);
            if replicas > 1 {
                out.push((
                    format!(
                        "{key} group {}: replicas {replicas} -> {}",
                        describe(group),
                        replicas / 2
                    ),
                    with_array(document, key, |g| {
                        g[i]["replicas"] = Value::Integer(replicas / 2);
                    }),
                ));
            }
        }
    }
    if let Some(duration) = duration_of(document.get("duration")) {
        let half = duration / 2;
        if half >= std::time::Duration::from_secs(1) {
            let mut copy = document.clone();
            copy.insert("duration".into(), Value::String(format_duration(half)));
            let copy = with_array(&copy, "faults", |faults| {
                faults.retain(|f| duration_of(f.get("at")).is_some_and(|at| at <= half));
            });
            out.push((
                format!(
                    "duration {} -> {}",
                    format_duration(duration),
                    format_duration(half)
                ),
                copy,
            ));
        }
    }
    for (i, group) in array(document, "clients").iter().enumerate() {
        for key in ["rate", "concurrency"] {
            let Some(value) = group.get(key) else {
                continue;
            };
            let number = value
                .as_float()
                .or_else(|| value.as_integer().map(|n| n as f64));
            let Some(number) = number.filter(|n| *n >= 2.0) else {
                continue;
            };
            let halved = if value.is_integer() {
                Value::Integer((number / 2.0) as i64)
            } else {
                Value::Float(number / 2.0)
            };
            out.push((
                format!(
                    "client group {}: {key} {number} -> {number_half}",
                    describe(group),
                    number_half = number / 2.0
                ),
                with_array(document, "clients", |g| {
                    g[i][key] = halved;
                }),
            ));
        }
    }
    let end = duration_of(document.get("duration")).unwrap_or_default();
    let faults = array(document, "faults");
    for (i, fault) in faults.iter().enumerate() {
        let Some(at) = duration_of(fault.get("at")) else {
            continue;
        };
        let next = faults
            .iter()
            .filter_map(|f| duration_of(f.get("at")))
            .filter(|&t| t > at)
            .min()
            .unwrap_or(end);
        let later = at + (next.saturating_sub(at)) / 2;
        let later = std::time::Duration::from_millis(later.as_millis() as u64);
        if later.saturating_sub(at) < std::time::Duration::from_millis(100) {
            continue;
        }
        out.push((
            format!(
                "fault {} ({}) later: {} -> {}",
                i + 1,
                describe(fault),
                format_duration(at),
                format_duration(later)
            ),
            with_array(document, "faults", |f| {
                f[i]["at"] = Value::String(format_duration(later));
            }),
        ));
    }
    out
}
