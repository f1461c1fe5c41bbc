//! A simulated and a real run of one scenario, verdict by verdict: what each
//! observed, and whether their verdicts agree.

use std::fmt;

use crate::world::RunOutcome;

/// One expectation (or invariant) in both runs.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The verdict's name.
    pub name: String,
    /// The bound.
    pub wanted: String,
    /// What the simulated run observed (`-` if it has no such verdict).
    pub simulated: String,
    /// What the real run observed (`-` if it has no such verdict).
    pub real: String,
    /// The simulated verdict (`None`: missing).
    pub simulated_pass: Option<bool>,
    /// The real verdict (`None`: missing).
    pub real_pass: Option<bool>,
}

impl Row {
    /// Whether both runs reached the same verdict.
    pub fn agrees(&self) -> bool {
        self.simulated_pass.is_some() && self.simulated_pass == self.real_pass
    }
}

/// Every verdict of a simulated and a real run of the same scenario and seed.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    /// The scenario's name.
    pub scenario: String,
    /// The seed both ran with.
    pub seed: u64,
    /// One row per verdict, in the simulated run's order (then any the real
    /// run alone has).
    pub rows: Vec<Row>,
}

impl Comparison {
    /// Whether every verdict agrees.
    pub fn agrees(&self) -> bool {
        self.rows.iter().all(Row::agrees)
    }

    /// The rows whose verdicts differ.
    pub fn disagreements(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|r| !r.agrees())
    }
}

/// Lines up `simulated`'s and `real`'s verdicts by name.
pub fn compare(simulated: &RunOutcome, real: &RunOutcome) -> Comparison {
    let mut rows: Vec<Row> = simulated
        .verdicts
        .iter()
        .map(|s| {
            let r = real.verdicts.iter().find(|r| r.name == s.name);
            Row {
                name: s.name.clone(),
                wanted: s.wanted.clone(),
                simulated: s.observed.clone(),
                real: r.map_or_else(|| "-".to_owned(), |r| r.observed.clone()),
                simulated_pass: Some(s.pass),
                real_pass: r.map(|r| r.pass),
            }
        })
        .collect();
    for r in &real.verdicts {
        if !simulated.verdicts.iter().any(|s| s.name == r.name) {
            rows.push(Row {
                name: r.name.clone(),
                wanted: r.wanted.clone(),
                simulated: "-".to_owned(),
                real: r.observed.clone(),
                simulated_pass: None,
                real_pass: Some(r.pass),
            });
        }
    }
    Comparison {
        scenario: simulated.scenario.clone(),
        seed: simulated.seed,
        rows,
    }
}

fn mark(pass: Option<bool>) -> &'static str {
    match pass {
        Some(true) => "ok",
        Some(false) => "FAIL",
        None => "-",
    }
}

impl fmt::Display for Comparison {
    /// A table: one line per verdict, `DIFF` where the verdicts disagree.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let differ = self.disagreements().count();
        writeln!(
            f,
            "{} seed={}: {} verdicts, {} agree, {} differ",
            self.scenario,
            self.seed,
            self.rows.len(),
            self.rows.len() - differ,
            differ
        )?;
        let width = self.rows.iter().map(|r| r.name.len()).max().unwrap_or(0);
        for row in &self.rows {
            let agreement = if row.agrees() { "same" } else { "DIFF" };
            writeln!(
                f,
                "  {agreement} {:<width$}  wanted {}\n         sim  {:<4} {}\n         real {:<4} {}",
                row.name,
                row.wanted,
                mark(row.simulated_pass),
                row.simulated,
                mark(row.real_pass),
                row.real,
            )?;
        }
        Ok(())
    }
}
