//! Test ergonomics: one call in a plain `#[test]` runs a [`Simulation`] over its
//! scenario's pinned seeds (each twice: the trace hashes must match), can
//! explore further seeds on every core, and on failure panics with the verdict
//! table and an instruction that replays the run from the user's own crate:
//!
//! ```text
//! kv-partition seed 17 FAILED (user code: server group kv: kv_example::router, …)
//!   FAIL invariant: no stale reads  wanted holds  observed 3 stale reads; first: …
//!   replay: SQUALL_SEED=17 SQUALL_TRACE=all cargo test -p kv-example kv_survives_partition -- --exact --nocapture
//! ```
//!
//! Environment (all optional): `SQUALL_SEED=N` runs only seed N and prints its
//! verdicts; `SQUALL_TRACE=all` (or a comma list of kind prefixes, `call,kv`)
//! also prints the trace; `SQUALL_EXPLORE=N` explores N seeds beyond the pinned
//! ones; `SQUALL_SHARD=K/N` takes every N-th of those seeds, starting with the
//! K-th, so N CI jobs or machines share one exploration.

use std::fmt::Write as _;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::simulation::Simulation;
use crate::world::RunOutcome;

/// One of N slices of a seed range: shard `index` (1-based) of `count` takes
/// the seeds at positions `index - 1`, `index - 1 + count`, … of the range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// 1..=count.
    pub index: u64,
    /// At least 1.
    pub count: u64,
}

impl Shard {
    /// The whole range.
    pub const ALL: Shard = Shard { index: 1, count: 1 };

    /// Parses `K/N` (`1/4`): 1 ≤ K ≤ N ≤ 10,000.
    pub fn parse(text: &str) -> Result<Shard, String> {
        let (k, n) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not a shard: write K/N, e.g. 2/4"))?;
        let parse = |s: &str| {
            s.trim()
                .parse::<u64>()
                .map_err(|_| format!("{text:?}: {s:?} is not a number"))
        };
        let (index, count) = (parse(k)?, parse(n)?);
        if count == 0 || count > 10_000 || index == 0 || index > count {
            return Err(format!(
                "{text:?}: want 1 <= K <= N <= 10000 (shard K of N)"
            ));
        }
        Ok(Shard { index, count })
    }

    /// The seeds of `range` this shard takes.
    pub fn seeds(&self, range: Range<u64>) -> impl Iterator<Item = u64> {
        let (skip, step) = ((self.index - 1) as usize, self.count as usize);
        range.skip(skip).step_by(step)
    }
}

/// One failing seed of an exploration.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SeedFailure {
    /// The seed.
    pub seed: u64,
    /// Each failed verdict (`FAIL name: wanted …, observed …`) or the run error.
    pub failed: Vec<String>,
}

/// What an exploration found. Reports of the shards of one range merge into
/// the report of the whole range ([`ExploreReport::merge`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ExploreReport {
    /// The scenario's name.
    pub scenario: String,
    /// The range explored (before sharding).
    pub start: u64,
    /// End of the range, excluded.
    pub end: u64,
    /// The shards this report covers.
    pub shards: Vec<Shard>,
    /// Seeds run.
    pub runs: u64,
    /// The failing seeds, sorted.
    pub failing: Vec<SeedFailure>,
}

impl ExploreReport {
    /// The union of several shards' reports (of the same scenario and range).
    pub fn merge(
        reports: impl IntoIterator<Item = ExploreReport>,
    ) -> Result<ExploreReport, String> {
        let mut merged: Option<ExploreReport> = None;
        for report in reports {
            match &mut merged {
                None => merged = Some(report),
                Some(m) => {
                    if (m.scenario.as_str(), m.start, m.end)
                        != (report.scenario.as_str(), report.start, report.end)
                    {
                        return Err(format!(
                            "cannot merge {} seeds {}..{} with {} seeds {}..{}",
                            m.scenario, m.start, m.end, report.scenario, report.start, report.end
                        ));
                    }
                    if report.shards.iter().any(|s| m.shards.contains(s)) {
                        return Err("the same shard appears in two reports".into());
                    }
                    m.shards.extend(report.shards);
                    m.runs += report.runs;
                    m.failing.extend(report.failing);
                }
            }
        }
        let mut merged = merged.ok_or("no reports to merge")?;
        merged.shards.sort_by_key(|s| (s.count, s.index));
        merged.failing.sort();
        Ok(merged)
    }

    /// Whether every shard of the range is present.
    pub fn is_complete(&self) -> bool {
        self.shards.first().is_some_and(|s| {
            (1..=s.count).all(|k| {
                self.shards.contains(&Shard {
                    index: k,
                    count: s.count,
                })
            })
        })
    }
}

/// How [`Simulation::test_with`] runs.
#[derive(Clone, Debug)]
pub struct TestOptions {
    /// Seeds to run twice each (default: the scenario's pinned seeds).
    pub seeds: Option<Vec<u64>>,
    /// Seeds to explore beyond them (default: `SQUALL_EXPLORE`, else 0).
    pub explore: u64,
    /// First explored seed (default: one past the largest pinned seed).
    pub explore_start: Option<u64>,
    /// This process's share of the explored seeds (default: `SQUALL_SHARD`, else all).
    pub shard: Shard,
    /// Threads for exploring (default: every core).
    pub threads: usize,
    /// Run each pinned seed twice and compare trace hashes (default true).
    pub determinism: bool,
    /// The name in replay instructions (default: the running test's name).
    pub test_name: Option<String>,
}

impl TestOptions {
    /// Defaults, with `SQUALL_EXPLORE` and `SQUALL_SHARD` applied.
    ///
    /// # Panics
    /// When either variable is malformed: a test run with a typo in its
    /// configuration must not silently test less.
    pub fn from_env() -> TestOptions {
        let explore = std::env::var("SQUALL_EXPLORE").ok().map(|v| {
            v.trim()
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("SQUALL_EXPLORE={v:?}: want a number of seeds"))
        });
        let shard = std::env::var("SQUALL_SHARD")
            .ok()
            .map(|v| Shard::parse(&v).unwrap_or_else(|e| panic!("SQUALL_SHARD: {e}")));
        TestOptions {
            seeds: None,
            explore: explore.unwrap_or(0),
            explore_start: None,
            shard: shard.unwrap_or(Shard::ALL),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            determinism: true,
            test_name: None,
        }
    }
}

/// The running test's name, from libtest's thread name.
fn current_test_name() -> String {
    match std::thread::current().name() {
        Some(name) if name != "main" => name.to_owned(),
        _ => "<test name>".to_owned(),
    }
}

/// The command that replays `seed` of the running test from the user's crate.
pub fn replay_instruction(test_name: &str, seed: u64) -> String {
    let package = std::env::var("CARGO_PKG_NAME").unwrap_or_else(|_| "<your package>".into());
    format!(
        "SQUALL_SEED={seed} SQUALL_TRACE=all cargo test -p {package} {test_name} -- --exact --nocapture"
    )
}

/// The verdict table of `outcome`, as `sim run` prints it.
pub fn verdict_table(outcome: &RunOutcome) -> String {
    let mut out = String::new();
    let mark = if outcome.passed() { "PASS" } else { "FAIL" };
    let _ = writeln!(
        out,
        "{mark} {} seed={} trace={} ({} events)",
        outcome.scenario,
        outcome.seed,
        outcome.hash(),
        outcome.trace.events.len()
    );
    for line in &outcome.under_test {
        let _ = writeln!(out, "  under test: {line}");
    }
    let width = outcome
        .verdicts
        .iter()
        .map(|v| v.name.len())
        .max()
        .unwrap_or(0);
    for v in &outcome.verdicts {
        let mark = if v.pass { "ok  " } else { "FAIL" };
        let _ = writeln!(
            out,
            "  {mark} {:<width$}  wanted {}  observed {}",
            v.name, v.wanted, v.observed
        );
    }
    out
}

fn failed_verdicts(outcome: &RunOutcome) -> Vec<String> {
    outcome
        .verdicts
        .iter()
        .filter(|v| !v.pass)
        .map(|v| v.to_string())
        .collect()
}

/// Prints the events whose kind starts with one of `SQUALL_TRACE`'s prefixes.
fn print_trace(outcome: &RunOutcome, filter: &str) {
    let prefixes: Vec<&str> = filter
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    let all = prefixes.iter().any(|p| *p == "all" || *p == "1");
    for event in &outcome.trace.events {
        let name = event.kind.name();
        if all
            || prefixes
                .iter()
                .any(|p| name == *p || name.starts_with(&format!("{p}.")))
        {
            eprintln!("{event}");
        }
    }
}

impl Simulation {
    /// Runs `seed` twice and compares the traces: `Err` names the first
    /// diverging line. Determinism is the product: a difference is a bug.
    pub fn check_determinism(&self, seed: u64) -> Result<RunOutcome, String> {
        let first = self.run(seed).map_err(|e| e.to_string())?;
        let second = self.run(seed).map_err(|e| e.to_string())?;
        match first.trace.first_difference(&second.trace) {
            None => Ok(first),
            Some((line, a, b)) => Err(format!(
                "{} seed {seed}: two runs diverged at trace line {line}:\n  first:  {a}\n  second: {b}",
                first.scenario
            )),
        }
    }

    /// Runs every seed of `seeds` that `shard` takes, on `threads` threads
    /// (each run is single-threaded and deterministic; only which thread runs
    /// which seed varies), and reports the failing ones.
    pub fn explore(&self, seeds: Range<u64>, shard: Shard, threads: usize) -> ExploreReport {
        let list: Vec<u64> = shard.seeds(seeds.clone()).collect();
        let next = AtomicU64::new(0);
        let failing = Mutex::new(Vec::new());
        let work = || loop {
            let i = next.fetch_add(1, Ordering::Relaxed) as usize;
            let Some(&seed) = list.get(i) else { break };
            let failed = match self.run(seed) {
                Ok(outcome) if outcome.passed() => continue,
                Ok(outcome) => failed_verdicts(&outcome),
                Err(error) => vec![error.to_string()],
            };
            failing
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(SeedFailure { seed, failed });
        };
        // Independent runs on separate threads, as `sim explore` does.
        #[allow(clippy::disallowed_methods)]
        std::thread::scope(|scope| {
            for _ in 0..threads.clamp(1, 64) {
                scope.spawn(work);
            }
        });
        let mut failing = failing.into_inner().unwrap_or_else(|p| p.into_inner());
        failing.sort();
        ExploreReport {
            scenario: self.scenario.name.clone(),
            start: seeds.start,
            end: seeds.end,
            shards: vec![shard],
            runs: list.len() as u64,
            failing,
        }
    }

    /// [`Simulation::test_with`] with [`TestOptions::from_env`].
    pub fn test(&self) {
        self.test_with(TestOptions::from_env());
    }

    /// The whole test of a plain `#[test]`: see the module docs.
    ///
    /// # Panics
    /// When a run fails, two runs of one seed differ, or the plug-ins do not
    /// fit the scenario — with the verdicts and the replay instruction.
    pub fn test_with(&self, options: TestOptions) {
        if let Err(error) = self.validate() {
            panic!("{error}");
        }
        let test_name = options.test_name.clone().unwrap_or_else(current_test_name);
        if let Ok(seed) = std::env::var("SQUALL_SEED") {
            let seed: u64 = seed
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("SQUALL_SEED={seed:?}: want a seed number"));
            let outcome = self.run(seed).unwrap_or_else(|e| panic!("{e}"));
            if let Ok(filter) = std::env::var("SQUALL_TRACE") {
                print_trace(&outcome, &filter);
            }
            eprint!("{}", verdict_table(&outcome));
            assert!(
                outcome.passed(),
                "{} seed {seed} failed (replayed)",
                outcome.scenario
            );
            return;
        }
        let seeds = options
            .seeds
            .clone()
            .unwrap_or_else(|| self.scenario.seeds.clone());
        for &seed in &seeds {
            let outcome = if options.determinism {
                self.check_determinism(seed)
                    .unwrap_or_else(|e| panic!("{e}"))
            } else {
                self.run(seed).unwrap_or_else(|e| panic!("{e}"))
            };
            if !outcome.passed() {
                panic!(
                    "{} seed {seed} failed:\n{}  replay: {}",
                    outcome.scenario,
                    verdict_table(&outcome),
                    replay_instruction(&test_name, seed)
                );
            }
        }
        if options.explore > 0 {
            let start = options
                .explore_start
                .unwrap_or_else(|| seeds.iter().max().map_or(1, |m| m + 1));
            let end = start.saturating_add(options.explore);
            let report = self.explore(start..end, options.shard, options.threads);
            if !report.failing.is_empty() {
                let mut message = format!(
                    "{}: {} of {} explored seeds failed:\n",
                    report.scenario,
                    report.failing.len(),
                    report.runs
                );
                for failure in report.failing.iter().take(10) {
                    let _ = writeln!(
                        message,
                        "  seed {}: {}\n    replay: {}",
                        failure.seed,
                        failure.failed.join("; "),
                        replay_instruction(&test_name, failure.seed)
                    );
                }
                panic!("{message}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_the_seed_range() {
        let all: Vec<u64> = (1..=3)
            .flat_map(|k| {
                Shard { index: k, count: 3 }
                    .seeds(10..20)
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut sorted = all.clone();
        sorted.sort();
        assert_eq!(sorted, (10..20).collect::<Vec<_>>());
        assert_eq!(Shard::parse("2/3"), Ok(Shard { index: 2, count: 3 }));
        assert!(Shard::parse("0/3").is_err());
        assert!(Shard::parse("4/3").is_err());
        assert!(Shard::parse("3").is_err());
    }

    #[test]
    fn shard_reports_merge_into_the_whole_range() {
        let report = |index, failing: Vec<u64>| ExploreReport {
            scenario: "s".into(),
            start: 1,
            end: 11,
            shards: vec![Shard { index, count: 2 }],
            runs: 5,
            failing: failing
                .into_iter()
                .map(|seed| SeedFailure {
                    seed,
                    failed: vec!["x".into()],
                })
                .collect(),
        };
        let merged = ExploreReport::merge([report(2, vec![8]), report(1, vec![3])]).unwrap();
        assert!(merged.is_complete());
        assert_eq!(merged.runs, 10);
        assert_eq!(
            merged.failing.iter().map(|f| f.seed).collect::<Vec<_>>(),
            [3, 8]
        );
        assert!(ExploreReport::merge([report(1, vec![]), report(1, vec![])]).is_err());
        let half = ExploreReport::merge([report(1, vec![])]).unwrap();
        assert!(!half.is_complete());
    }
}
