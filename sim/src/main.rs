//! `sim`: run, replay, check and explore squall scenarios.
//!
//! ```text
//! sim run scenarios/steady-state.toml            # default seed; verdict table
//! sim run scenarios/*.toml --seeds 1..20         # many seeds
//! sim replay scenarios/x.toml --seed 7 --kind call.end --host client-1
//! sim check scenarios/*.toml                     # validate only
//! sim explore scenarios/x.toml --seeds 200       # both cores; lists failing seeds
//! sim run scenarios/x.toml --real --time-scale 0.2 --compare  # real TCP vs simulation
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use sim::scenario::format_duration;
use sim::testing::{ExploreReport, SeedFailure};
use sim::{run, RealOptions, RunOutcome, Scenario, Shard, Simulation};

/// `println!` that ends the program quietly when stdout is closed (`sim replay | head`)
/// instead of panicking on the broken pipe.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        if writeln!(stdout, $($arg)*).is_err() {
            std::process::exit(0);
        }
    }};
}

#[derive(Parser, Debug)]
#[command(
    name = "sim",
    version,
    about = "Squall's deterministic simulation harness",
    after_help = "These commands run the built-in echo server and workload. Scenarios with \
code = \"user\" groups run your own code: run them from the test that plugs it in \
(cargo test -p your-crate; SQUALL_SEED=N replays, SQUALL_EXPLORE=N explores, \
SQUALL_SHARD=K/N shards). See docs/TESTING.md."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run scenarios and print a verdict table per run; exits 1 if any fails.
    Run(RunArgs),
    /// Run one scenario at one seed and print its trace (and the same hash as `run`).
    Replay(ReplayArgs),
    /// Validate scenario files without running them.
    Check {
        /// Scenario files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run one scenario at many seeds on every core; list the failing seeds.
    Explore(ExploreArgs),
    /// Write one run's timeline as a self-contained HTML page.
    Report {
        /// The scenario file.
        file: PathBuf,
        /// The seed (default: the scenario's first pinned seed).
        #[arg(long)]
        seed: Option<u64>,
        /// The page to write.
        #[arg(short, long, default_value = "run.html")]
        output: PathBuf,
    },
    /// Search for a smaller scenario that still fails the same expectation
    /// (fewer faults, replicas, clients; shorter; lighter) and write it.
    Shrink(ShrinkArgs),
    /// Merge the `explore --json` reports of the shards of one exploration;
    /// exits 1 if a seed failed or a shard is missing.
    Merge {
        /// Report files (one JSON report each).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Args, Debug)]
struct SeedArgs {
    /// Run this seed instead of the scenario's pinned ones.
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// Run a range of seeds, `A..B` (B excluded).
    #[arg(long, value_parser = parse_range)]
    seeds: Option<(u64, u64)>,
    /// Run every pinned seed of each scenario (default: only the first).
    #[arg(long, conflicts_with_all = ["seed", "seeds"])]
    all_pinned: bool,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Scenario files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    #[command(flatten)]
    seeds: SeedArgs,
    /// Machine-readable output: one JSON object per run, one per line.
    #[arg(long)]
    json: bool,
    /// Run over real TCP on loopback (a fault proxy per link, wall-clock
    /// time) instead of the simulation; not deterministic.
    #[arg(long)]
    real: bool,
    /// With --real: wall seconds per scenario second (0.1 runs a 30 s
    /// scenario in about 3 s; every latency and timeout is scaled alike).
    #[arg(long, default_value_t = 1.0, requires = "real")]
    time_scale: f64,
    /// With --real: run the simulation too and print both runs' verdicts side
    /// by side; exits 1 if any verdict differs.
    #[arg(long, requires = "real", conflicts_with = "json")]
    compare: bool,
}

#[derive(Args, Debug)]
struct ReplayArgs {
    /// The scenario file.
    file: PathBuf,
    /// The seed to replay (default: the scenario's first pinned seed).
    #[arg(long)]
    seed: Option<u64>,
    /// Only events on these hosts (repeatable).
    #[arg(long)]
    host: Vec<String>,
    /// Only events of these kinds: call.start, call.attempt, call.end,
    /// server.executed, server.done, host.crash, conn.open, conn.failed, fault, breaker, registry,
    /// endpoints, note (repeatable; a prefix such as `call` matches all `call.*`).
    #[arg(long)]
    kind: Vec<String>,
    /// Print events as JSON lines.
    #[arg(long)]
    json: bool,
    /// Print the trace of a fresh real-TCP run instead (not a replay: a real
    /// run is not deterministic, and its hash differs every time).
    #[arg(long)]
    real: bool,
    /// With --real: wall seconds per scenario second.
    #[arg(long, default_value_t = 1.0, requires = "real")]
    time_scale: f64,
}

#[derive(Args, Debug)]
struct ExploreArgs {
    /// The scenario file.
    file: PathBuf,
    /// How many seeds to run.
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 1)]
    start: u64,
    /// Worker threads (default: every core).
    #[arg(long)]
    threads: Option<usize>,
    /// Run only shard K of N of the seeds (`2/4`: the 2nd, 6th, 10th, …), so
    /// N processes or machines share one exploration; `sim merge` joins their
    /// `--json` reports.
    #[arg(long, value_parser = Shard::parse, default_value = "1/1")]
    shard: Shard,
    /// Machine-readable output (one JSON report; `sim merge` reads these).
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct ShrinkArgs {
    /// The failing scenario file.
    file: PathBuf,
    /// The seed it fails at.
    #[arg(long)]
    seed: u64,
    /// The expectation (verdict name) that must keep failing (default: the
    /// first failing one).
    #[arg(long)]
    expect: Option<String>,
    /// Where to write the shrunk scenario (default: FILE with `.shrunk.toml`).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Most simulation runs to spend.
    #[arg(long, default_value_t = 400)]
    runs_max: u64,
}

fn parse_range(text: &str) -> Result<(u64, u64), String> {
    let (a, b) = text
        .split_once("..")
        .ok_or_else(|| format!("{text:?} is not a range: write A..B, e.g. 1..20"))?;
    let a: u64 = a
        .trim()
        .parse()
        .map_err(|_| format!("{a:?} is not a seed"))?;
    let b: u64 = b
        .trim()
        .parse()
        .map_err(|_| format!("{b:?} is not a seed"))?;
    if b <= a {
        return Err(format!(
            "empty range {text}: the end is excluded, so B must exceed A"
        ));
    }
    if b - a > 1_000_000 {
        return Err("at most 1,000,000 seeds per range".into());
    }
    Ok((a, b))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => cmd_run(args),
        Command::Replay(args) => cmd_replay(args),
        Command::Check { files } => cmd_check(files),
        Command::Explore(args) => cmd_explore(args),
        Command::Merge { files } => cmd_merge(files),
        Command::Shrink(args) => cmd_shrink(args),
        Command::Report { file, seed, output } => cmd_report(file, seed, output),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

fn load(path: &PathBuf) -> Result<Scenario, String> {
    Scenario::from_file(path).map_err(|error| format!("{error:#}"))
}

/// The command that replays one run exactly.
fn replay_command(file: &str, seed: u64) -> String {
    format!("cargo run -p sim -- replay {file} --seed {seed}")
}

/// Wall-clock seconds since `start` — for speed reports only, never inside a run.
#[allow(clippy::disallowed_methods)]
fn wall_start() -> std::time::Instant {
    std::time::Instant::now()
}

fn cmd_run(args: RunArgs) -> Result<ExitCode, String> {
    let mut failed = 0;
    let mut runs = 0;
    for path in &args.files {
        let scenario = load(path)?;
        let file = path.display().to_string();
        let seeds: Vec<u64> = match (args.seeds.seed, args.seeds.seeds) {
            (Some(seed), _) => vec![seed],
            (None, Some((a, b))) => (a..b).collect(),
            (None, None) if args.seeds.all_pinned => scenario.seeds.clone(),
            (None, None) => vec![scenario.default_seed()],
        };
        for seed in seeds {
            if args.compare {
                runs += 1;
                if !cmd_compare(&file, &scenario, seed, args.time_scale)? {
                    failed += 1;
                }
                continue;
            }
            let start = wall_start();
            let outcome = if args.real {
                let options = RealOptions::scaled(args.time_scale);
                Simulation::new(scenario.clone()).run_real(seed, options)
            } else {
                run(&scenario, seed)
            }
            .map_err(|e| e.to_string())?;
            let wall = start.elapsed();
            runs += 1;
            if !outcome.passed() {
                failed += 1;
            }
            if args.json {
                out!("{}", run_json(&file, &outcome, wall));
            } else {
                print_verdicts(&file, &outcome, wall);
            }
        }
    }
    if args.compare {
        out!("{} agreed, {} differed", runs - failed, failed);
    } else if !args.json {
        out!("{} passed, {} failed", runs - failed, failed);
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Runs `scenario` at `seed` simulated and real, prints the comparison;
/// returns whether every verdict agreed.
fn cmd_compare(file: &str, scenario: &Scenario, seed: u64, scale: f64) -> Result<bool, String> {
    let simulation = Simulation::new(scenario.clone());
    let simulated = simulation.run(seed).map_err(|e| e.to_string())?;
    let start = wall_start();
    let real = simulation
        .run_real(seed, RealOptions::scaled(scale))
        .map_err(|e| e.to_string())?;
    let wall = start.elapsed();
    let comparison = sim::real::compare(&simulated, &real);
    let mark = if comparison.agrees() { "SAME" } else { "DIFF" };
    out!(
        "{mark} {file} (real: time scale {scale}, {:.1}s wall, {} events; sim trace={})",
        wall.as_secs_f64(),
        real.trace.events.len(),
        simulated.hash()
    );
    out!("{comparison}");
    Ok(comparison.agrees())
}

fn print_verdicts(file: &str, outcome: &RunOutcome, wall: Duration) {
    let mark = if outcome.passed() { "PASS" } else { "FAIL" };
    let calls = outcome
        .trace
        .events
        .iter()
        .filter(|e| e.kind.name() == "call.end")
        .count();
    out!(
        "{mark} {} seed={} trace={} ({} events, {} calls, {} simulated in {:.2}s wall, {:.0}x)",
        outcome.scenario,
        outcome.seed,
        outcome.hash(),
        outcome.trace.events.len(),
        calls,
        format_duration(outcome.simulated),
        wall.as_secs_f64(),
        outcome.simulated.as_secs_f64() / wall.as_secs_f64().max(1e-9),
    );
    for line in &outcome.under_test {
        out!("  under test: {line}");
    }
    let name_width = outcome
        .verdicts
        .iter()
        .map(|v| v.name.len())
        .max()
        .unwrap_or(0);
    let wanted_width = outcome
        .verdicts
        .iter()
        .map(|v| v.wanted.len())
        .max()
        .unwrap_or(0);
    for verdict in &outcome.verdicts {
        let mark = if verdict.pass { "ok  " } else { "FAIL" };
        let line = verdict
            .line
            .map(|l| format!("{file}:{l}"))
            .unwrap_or_default();
        out!(
            "  {mark} {:<name_width$}  wanted {:<wanted_width$}  observed {}  {line}",
            verdict.name,
            verdict.wanted,
            verdict.observed
        );
    }
    if !outcome.passed() && outcome.steps > 0 {
        out!("  replay: {}", replay_command(file, outcome.seed));
    } else if !outcome.passed() {
        out!(
            "  (a real-TCP run does not replay; the simulated run of this seed: {})",
            replay_command(file, outcome.seed)
        );
    }
}

fn run_json(file: &str, outcome: &RunOutcome, wall: Duration) -> serde_json::Value {
    let verdicts: Vec<_> = outcome
        .verdicts
        .iter()
        .map(|v| {
            serde_json::json!({
                "name": v.name, "wanted": v.wanted, "observed": v.observed,
                "pass": v.pass, "line": v.line,
            })
        })
        .collect();
    serde_json::json!({
        "file": file,
        "scenario": outcome.scenario,
        "seed": outcome.seed,
        "passed": outcome.passed(),
        "under_test": outcome.under_test,
        "trace_hash": outcome.hash(),
        "events": outcome.trace.events.len(),
        "steps": outcome.steps,
        "simulated_s": outcome.simulated.as_secs_f64(),
        "wall_s": wall.as_secs_f64(),
        "verdicts": verdicts,
        "replay": replay_command(file, outcome.seed),
    })
}

fn cmd_replay(args: ReplayArgs) -> Result<ExitCode, String> {
    let scenario = load(&args.file)?;
    let seed = args.seed.unwrap_or_else(|| scenario.default_seed());
    let outcome = if args.real {
        Simulation::new(scenario.clone()).run_real(seed, RealOptions::scaled(args.time_scale))
    } else {
        run(&scenario, seed)
    }
    .map_err(|e| e.to_string())?;
    for event in &outcome.trace.events {
        let host_ok = args.host.is_empty() || args.host.iter().any(|h| h == &event.host);
        let name = event.kind.name();
        let kind_ok = args.kind.is_empty()
            || args
                .kind
                .iter()
                .any(|k| name == k || name.starts_with(&format!("{k}.")));
        if host_ok && kind_ok {
            if args.json {
                let json = serde_json::json!({
                    "at_us": event.at.as_micros() as u64, "host": event.host,
                    "kind": name, "event": event.kind.to_string(),
                });
                out!("{json}");
            } else {
                out!("{event}");
            }
        }
    }
    let mark = if outcome.passed() { "PASS" } else { "FAIL" };
    out!(
        "{mark} {} seed={} trace={}",
        outcome.scenario,
        seed,
        outcome.hash()
    );
    for verdict in outcome.verdicts.iter().filter(|v| !v.pass) {
        out!("  {verdict}");
    }
    Ok(if outcome.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn cmd_check(files: Vec<PathBuf>) -> Result<ExitCode, String> {
    let mut bad = 0;
    for path in &files {
        match Scenario::from_file(path) {
            Ok(scenario) => out!(
                "ok   {}: {} ({} servers, {} clients, {} faults, {} expectations)",
                path.display(),
                scenario.name,
                scenario.server_hosts().count(),
                scenario.client_hosts().count(),
                scenario.faults.len(),
                scenario.expectations.len()
            ),
            Err(error) => {
                bad += 1;
                out!("{error:#}");
            }
        }
    }
    Ok(if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn cmd_explore(args: ExploreArgs) -> Result<ExitCode, String> {
    let scenario = load(&args.file)?;
    let file = args.file.display().to_string();
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .clamp(1, 64);
    let end = args.start.saturating_add(args.seeds);
    let seeds: Vec<u64> = args.shard.seeds(args.start..end).collect();
    let next = AtomicU64::new(0);
    let failures = Mutex::new(Vec::new());
    let progress = indicatif::ProgressBar::new(seeds.len() as u64);
    if args.json {
        progress.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    progress.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} seeds  {per_sec}  eta {eta}  {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let start = wall_start();
    // Independent runs on separate threads: each run is itself single-threaded
    // and deterministic; only which thread runs which seed varies.
    #[allow(clippy::disallowed_methods)]
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(&seed) = seeds.get(i) else { break };
                let result = match run(&scenario, seed) {
                    Ok(outcome) if outcome.passed() => None,
                    Ok(outcome) => Some(SeedFailure {
                        seed,
                        failed: outcome
                            .verdicts
                            .iter()
                            .filter(|v| !v.pass)
                            .map(|v| v.to_string())
                            .collect::<Vec<_>>(),
                    }),
                    Err(error) => Some(SeedFailure {
                        seed,
                        failed: vec![error.to_string()],
                    }),
                };
                if let Some(failure) = result {
                    let mut failures = failures.lock().unwrap_or_else(|p| p.into_inner());
                    failures.push(failure);
                    progress.set_message(format!("{} failing", failures.len()));
                }
                progress.inc(1);
            });
        }
    });
    progress.finish_and_clear();
    let wall = start.elapsed();
    let mut failing = failures.into_inner().unwrap_or_else(|p| p.into_inner());
    failing.sort();
    let report = ExploreReport {
        scenario: scenario.name.clone(),
        start: args.start,
        end,
        shards: vec![args.shard],
        runs: seeds.len() as u64,
        failing,
    };
    let per_minute = report.runs as f64 / wall.as_secs_f64().max(1e-9) * 60.0;
    if args.json {
        let mut json = serde_json::to_value(&report).map_err(|e| e.to_string())?;
        json["file"] = serde_json::json!(file);
        json["threads"] = serde_json::json!(threads);
        json["wall_s"] = serde_json::json!(wall.as_secs_f64());
        json["seeds_per_minute"] = serde_json::json!(per_minute);
        json["replay"] = report
            .failing
            .iter()
            .map(|f| serde_json::json!(replay_command(&file, f.seed)))
            .collect();
        out!("{json}");
    } else {
        out!(
            "{}: {} seeds (shard {}/{}) on {threads} threads in {:.1}s ({per_minute:.0} seeds/min); {} failing",
            scenario.name,
            report.runs,
            args.shard.index,
            args.shard.count,
            wall.as_secs_f64(),
            report.failing.len()
        );
        print_failures(&file, &report);
    }
    Ok(if report.failing.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_failures(file: &str, report: &ExploreReport) {
    for failure in &report.failing {
        out!("  seed {}: {}", failure.seed, failure.failed.join("; "));
        out!("    replay: {}", replay_command(file, failure.seed));
    }
}

fn cmd_merge(files: Vec<PathBuf>) -> Result<ExitCode, String> {
    let mut reports = Vec::new();
    let mut file = String::new();
    for path in &files {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        let json: serde_json::Value = serde_json::from_str(text.trim())
            .map_err(|e| format!("{}: not an `explore --json` report: {e}", path.display()))?;
        if let Some(f) = json["file"].as_str() {
            file = f.to_owned();
        }
        let report: ExploreReport = serde_json::from_value(json)
            .map_err(|e| format!("{}: not an `explore --json` report: {e}", path.display()))?;
        reports.push(report);
    }
    let merged = ExploreReport::merge(reports)?;
    let complete = merged.is_complete();
    out!(
        "{}: seeds {}..{}, {} of {} shards, {} runs; {} failing{}",
        merged.scenario,
        merged.start,
        merged.end,
        merged.shards.len(),
        merged.shards.first().map_or(0, |s| s.count),
        merged.runs,
        merged.failing.len(),
        if complete {
            ""
        } else {
            " (INCOMPLETE: shards missing)"
        }
    );
    print_failures(&file, &merged);
    Ok(if merged.failing.is_empty() && complete {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn cmd_shrink(args: ShrinkArgs) -> Result<ExitCode, String> {
    let file = args.file.display().to_string();
    let text = std::fs::read_to_string(&args.file).map_err(|e| format!("{file}: {e}"))?;
    let options = sim::shrink::ShrinkOptions {
        seed: args.seed,
        expect: args.expect,
        runs_max: args.runs_max.clamp(1, 100_000),
        ..sim::shrink::ShrinkOptions::default()
    };
    let mut kept = 0;
    let shrunk = sim::shrink::shrink(&text, &file, &options, &sim::Simulation::new, &mut |step| {
        kept += 1;
        out!("  kept {kept}: {step}");
    })?;
    let output = args
        .output
        .unwrap_or_else(|| args.file.with_extension("shrunk.toml"));
    std::fs::write(&output, &shrunk.text).map_err(|e| format!("{}: {e}", output.display()))?;
    out!(
        "{}: still fails {:?} at seed {} after {} edits ({} runs); wrote {}",
        file,
        shrunk.expect,
        shrunk.seed,
        shrunk.steps.len(),
        shrunk.runs,
        output.display()
    );
    out!(
        "  replay: cargo run -p sim -- run {} --seed {}",
        output.display(),
        shrunk.seed
    );
    Ok(ExitCode::SUCCESS)
}

fn cmd_report(file: PathBuf, seed: Option<u64>, output: PathBuf) -> Result<ExitCode, String> {
    let scenario = load(&file)?;
    let seed = seed.unwrap_or_else(|| scenario.default_seed());
    let outcome = run(&scenario, seed).map_err(|e| e.to_string())?;
    let page = sim::report::html(&scenario, &outcome);
    std::fs::write(&output, page).map_err(|e| format!("{}: {e}", output.display()))?;
    out!(
        "{} {} seed={seed} trace={}: wrote {}",
        if outcome.passed() { "PASS" } else { "FAIL" },
        outcome.scenario,
        outcome.hash(),
        output.display()
    );
    Ok(ExitCode::SUCCESS)
}
