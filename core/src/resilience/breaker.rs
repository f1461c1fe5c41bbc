//! A per-endpoint circuit breaker: stop sending to an endpoint that keeps
//! failing, give it time to recover, then let a few probe calls decide.
//!
//! ```text
//!            consecutive failures ≥ N
//!            or failure rate ≥ threshold            now ≥ open_until
//!  ┌────────┐  (after minimum_calls)      ┌──────┐  (lazily, on the   ┌──────────┐
//!  │ Closed │ ──────────────────────────▶ │ Open │  next try_acquire  │ HalfOpen │
//!  └────────┘                             └──────┘  or poll) ───────▶ └──────────┘
//!      ▲                                     ▲                           │    │
//!      │        every probe succeeded        │      any probe failed     │    │
//!      └─────────────────────────────────────┼───────────────────────────┘    │
//!                                            └────────────────────────────────┘
//! ```
//!
//! The open period is an exponential backoff over consecutive trips with *equal
//! jitter* (see [`BreakerConfig::open_base`]), so a fleet of clients that tripped
//! together does not probe together. No other transition exists: the breaker never
//! goes from closed to half-open or from open straight to closed, which
//! `CircuitBreaker::transition` asserts.
//!
//! # Stale results
//!
//! [`CircuitBreaker::try_acquire`] hands out a [`Permit`] stamped with the breaker's
//! *generation*, which changes on every transition. A result reported with a permit
//! from an earlier generation is dropped: a slow call admitted while closed that
//! fails after the breaker went half-open must not be mistaken for a failed probe
//! (nor a late success for a good one). Probes are therefore exactly the permits
//! issued in the current half-open period.
//!
//! A probe whose result never comes (a permit dropped unreported, an endpoint
//! that accepts and never answers) is presumed failed once `open_max` has passed
//! since the last probe was admitted, so half-open cannot be held forever.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use rand::Rng as _;
use tokio::time::Instant;

use super::{duration_nanos, ConfigError};
use crate::rng::Rng;
use crate::status::{Code, Status};

/// The largest sliding window accepted: bounds the breaker's memory per endpoint.
pub const WINDOW_SIZE_LIMIT: u32 = 10_000;
/// The longest open period accepted: beyond an hour an endpoint is better removed
/// from the registry than left tripped.
pub const OPEN_MAX_LIMIT: Duration = Duration::from_secs(3600);
/// The most half-open probes accepted.
pub const HALF_OPEN_PROBES_LIMIT: u32 = 100;
/// Transitions kept for [`CircuitBreaker::take_transitions`]; older ones are dropped
/// (and counted) if nobody takes them.
pub const TRANSITIONS_KEPT_MAX: usize = 64;

/// How a [`CircuitBreaker`] decides to trip, how long it stays open and how it
/// probes. Defaults and their sources are in `docs/RESILIENCE.md`.
#[derive(Clone, Debug, PartialEq)]
pub struct BreakerConfig {
    /// Trip after this many failures in a row, whatever the window says; `None`
    /// disables the rule. Default 5 (Finagle failure accrual): a dead endpoint is
    /// cut off after five calls even when traffic is too thin to fill the window.
    pub consecutive_failures: Option<u32>,
    /// Trip when failures / calls in the window reach this fraction, in (0, 1].
    /// Default 0.5 (Hystrix, resilience4j).
    pub failure_rate_threshold: f64,
    /// How many of the most recent calls the failure rate is computed over
    /// (count-based ring). Default 20: small enough to react within a second at
    /// modest rates, large enough that one failure is not 10%.
    pub window_size: u32,
    /// The failure rate is not judged until the window holds this many calls, in
    /// 1..=`window_size`. Default 10: two failures out of three calls say little.
    pub minimum_calls: u32,
    /// A call at least this slow counts as a failure even if it succeeded; `None`
    /// (the default) disables it. A hung endpoint that answers after 30 s is as
    /// useless as a dead one (resilience4j's slow-call rule).
    pub slow_call_threshold: Option<Duration>,
    /// The ceiling of the first open period. Each open period is drawn with equal
    /// jitter: `ceiling / 2 + U(0, ceiling / 2)`, where the ceiling doubles on each
    /// consecutive trip (re-opening from half-open) up to [`open_max`](Self::open_max)
    /// and returns to `open_base` once the breaker closes. Default 5 s (Hystrix's
    /// sleep window), so the first open lasts 2.5–5 s.
    pub open_base: Duration,
    /// The largest ceiling an open period can reach. Default 60 s (resilience4j's
    /// open duration): a flapping endpoint is retried at least once a minute.
    pub open_max: Duration,
    /// How many probe calls half-open admits; all must succeed to close, any
    /// failure re-opens. Default 3: one probe (Hystrix, Finagle) closes on a single
    /// lucky sample — an endpoint failing half its calls closes half the time —
    /// while three close it only 1/8 of the time; resilience4j's 10 sends up to
    /// ten calls at an endpoint that is probably still down.
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> BreakerConfig {
        BreakerConfig {
            consecutive_failures: Some(5),
            failure_rate_threshold: 0.5,
            window_size: 20,
            minimum_calls: 10,
            slow_call_threshold: None,
            open_base: Duration::from_secs(5),
            open_max: Duration::from_secs(60),
            half_open_probes: 3,
        }
    }
}

impl BreakerConfig {
    /// Checks every field against its documented range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.consecutive_failures == Some(0) {
            return Err(ConfigError::new(
                "consecutive_failures",
                "must be at least 1 (or absent to disable the rule)",
            ));
        }
        let rate = self.failure_rate_threshold;
        if !(rate > 0.0 && rate <= 1.0) {
            return Err(ConfigError::new(
                "failure_rate_threshold",
                format!("{rate} is not a fraction in (0, 1]; 0.5 means half the calls"),
            ));
        }
        if self.window_size == 0 || self.window_size > WINDOW_SIZE_LIMIT {
            return Err(ConfigError::new(
                "window_size",
                format!("{} is outside 1..={WINDOW_SIZE_LIMIT}", self.window_size),
            ));
        }
        if self.minimum_calls == 0 || self.minimum_calls > self.window_size {
            return Err(ConfigError::new(
                "minimum_calls",
                format!(
                    "{} is outside 1..=window_size ({})",
                    self.minimum_calls, self.window_size
                ),
            ));
        }
        if self.slow_call_threshold == Some(Duration::ZERO) {
            return Err(ConfigError::new(
                "slow_call_threshold",
                "zero would make every call slow; leave it absent to disable",
            ));
        }
        self.validate_open()?;
        if self.half_open_probes == 0 || self.half_open_probes > HALF_OPEN_PROBES_LIMIT {
            return Err(ConfigError::new(
                "half_open_probes",
                format!(
                    "{} is outside 1..={HALF_OPEN_PROBES_LIMIT}",
                    self.half_open_probes
                ),
            ));
        }
        Ok(())
    }

    /// Checks `open_base` and `open_max`.
    fn validate_open(&self) -> Result<(), ConfigError> {
        if self.open_base.is_zero() {
            return Err(ConfigError::new("open_base", "must be positive"));
        }
        if self.open_max < self.open_base || self.open_max > OPEN_MAX_LIMIT {
            return Err(ConfigError::new(
                "open_max",
                format!(
                    "{:?} is outside open_base ({:?})..={OPEN_MAX_LIMIT:?}",
                    self.open_max, self.open_base
                ),
            ));
        }
        Ok(())
    }
}

/// The breaker's state as the outside world sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BreakerState {
    /// Calls flow; outcomes are recorded.
    Closed,
    /// Calls are refused until the open period ends.
    Open,
    /// A few probe calls are admitted to decide between closed and open.
    HalfOpen,
}

impl BreakerState {
    /// The state's name in traces and scenario files (`half_open`).
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a transition happened, for the trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TransitionReason {
    /// Closed → open: `consecutive_failures` failures in a row.
    ConsecutiveFailures,
    /// Closed → open: the window's failure rate reached the threshold.
    FailureRate,
    /// Open → half-open: the open period ended.
    OpenElapsed,
    /// Half-open → closed: every probe succeeded.
    ProbesSucceeded,
    /// Half-open → open: a probe failed (or was slow).
    ProbeFailed,
    /// Half-open → open: a probe had no verdict `open_max` after it was admitted.
    ProbeLost,
}

impl TransitionReason {
    /// The reason as written in traces (`consecutive_failures`).
    pub fn as_str(self) -> &'static str {
        match self {
            TransitionReason::ConsecutiveFailures => "consecutive_failures",
            TransitionReason::FailureRate => "failure_rate",
            TransitionReason::OpenElapsed => "open_elapsed",
            TransitionReason::ProbesSucceeded => "probes_succeeded",
            TransitionReason::ProbeFailed => "probe_failed",
            TransitionReason::ProbeLost => "probe_lost",
        }
    }
}

impl fmt::Display for TransitionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One state change, recorded for the trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The state left.
    pub from: BreakerState,
    /// The state entered.
    pub to: BreakerState,
    /// When it happened (the `now` of the call that caused it).
    pub at: Instant,
    /// Why it happened.
    pub reason: TransitionReason,
    /// For a transition to open: how long the breaker stays open (jitter included),
    /// so a trace can show when probing will resume. `None` otherwise.
    pub open_for: Option<Duration>,
}

/// Permission to make one call, from [`CircuitBreaker::try_acquire`].
///
/// Hand it back with exactly one of `on_success`, `on_failure` or `on_ignored`; it
/// is not `Clone`, so a call cannot be reported twice. It remembers the breaker
/// generation it was issued in, so a late result cannot corrupt a later state's
/// accounting (see the module docs).
#[must_use = "report the call's outcome with this permit, or a half-open probe slot leaks"]
#[derive(Debug, PartialEq, Eq)]
pub struct Permit {
    /// The breaker generation (count of transitions) when the permit was issued.
    generation: u64,
    /// Whether this call is a half-open probe.
    probe: bool,
}

impl Permit {
    /// Whether this call is a half-open probe (useful to tag it in the trace).
    pub fn is_probe(&self) -> bool {
        self.probe
    }
}

/// A call was refused by the breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("circuit breaker {state}: call refused{}", match .retry_after {
    Some(wait) => format!(", retry after {wait:?}"),
    None => ", probes in flight".to_string(),
})]
pub struct BreakerOpen {
    /// The state that refused: open, or half-open with every probe slot taken.
    pub state: BreakerState,
    /// How long until the breaker admits a call again: the rest of the open period,
    /// or `None` when half-open probes are in flight and their verdict decides.
    pub retry_after: Option<Duration>,
}

/// What a finished call says about the endpoint's health.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BreakerOutcome {
    /// The endpoint answered coherently, even if the answer was an error that is the
    /// caller's fault (InvalidArgument, NotFound, …).
    Success,
    /// The endpoint is unhealthy: see [`counts_as_breaker_failure`].
    Failure,
    /// The outcome says nothing about the endpoint (the caller cancelled).
    Ignored,
}

impl BreakerOutcome {
    /// Classifies a failed call's status.
    ///
    /// Failures: Unavailable (unreachable, reset, shutting down), DeadlineExceeded
    /// (a hung endpoint looks exactly like this; Hystrix counts timeouts too),
    /// Internal and Unknown (the handler broke), DataLoss, and ResourceExhausted —
    /// in squall that code means the server is shedding or at its in-flight limit,
    /// and the breaker exists precisely to steer load away from such an endpoint.
    /// Ignored: Cancelled (the caller gave up). Everything else — InvalidArgument,
    /// NotFound, AlreadyExists, PermissionDenied, FailedPrecondition, Aborted,
    /// OutOfRange, Unimplemented, Unauthenticated — is the caller's fault or the
    /// application's business and proves the endpoint is up: a success.
    pub fn of_status(status: &Status) -> BreakerOutcome {
        match status.code() {
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Internal
            | Code::Unknown
            | Code::DataLoss
            | Code::ResourceExhausted => BreakerOutcome::Failure,
            Code::Cancelled => BreakerOutcome::Ignored,
            Code::Ok
            | Code::InvalidArgument
            | Code::NotFound
            | Code::AlreadyExists
            | Code::PermissionDenied
            | Code::FailedPrecondition
            | Code::Aborted
            | Code::OutOfRange
            | Code::Unimplemented
            | Code::Unauthenticated => BreakerOutcome::Success,
        }
    }
}

/// Whether a call that failed with `status` counts against the endpoint's breaker
/// (see [`BreakerOutcome::of_status`] for the table and the reasons).
pub fn counts_as_breaker_failure(status: &Status) -> bool {
    BreakerOutcome::of_status(status) == BreakerOutcome::Failure
}

/// The breaker's internal state, with the data each state needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Recording outcomes in the window.
    Closed,
    /// Refusing calls until `until`.
    Open {
        /// When the open period ends.
        until: Instant,
    },
    /// Admitting probes.
    HalfOpen {
        /// Probe permits outstanding or reported as success (ignored ones are returned).
        admitted: u32,
        /// Probes that succeeded.
        succeeded: u32,
        /// When the latest probe was admitted (or half-open began): an outstanding
        /// probe with no verdict `open_max` after this is presumed lost.
        last_admitted: Instant,
    },
}

impl Phase {
    /// The public name of this phase.
    fn state(self) -> BreakerState {
        match self {
            Phase::Closed => BreakerState::Closed,
            Phase::Open { .. } => BreakerState::Open,
            Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

/// A circuit breaker for one endpoint. Pure: time and randomness are inputs.
#[derive(Debug)]
pub struct CircuitBreaker {
    /// Thresholds and durations, validated at construction.
    config: BreakerConfig,
    /// Draws the jitter of each open period (equal jitter).
    rng: Rng,
    /// Current state and its data.
    phase: Phase,
    /// Incremented on every transition; stamps permits so stale results are dropped.
    generation: u64,
    /// Outcomes of the most recent calls while closed (`true` = failure), at most
    /// `window_size`, oldest first.
    window: VecDeque<bool>,
    /// Failures in `window`, kept so the rate costs O(1) per call.
    window_failures: u32,
    /// Failures in a row while closed.
    consecutive_failures: u32,
    /// Trips since the breaker last closed: the exponent of the open period.
    trips: u32,
    /// Transitions not yet taken by [`CircuitBreaker::take_transitions`].
    transitions: VecDeque<Transition>,
    /// Transitions dropped because nobody took them in time.
    transitions_dropped: u64,
}

impl CircuitBreaker {
    /// A closed breaker.
    ///
    /// # Panics
    /// If `config` fails [`BreakerConfig::validate`] (a programmer error: validate
    /// configs from files before building).
    pub fn new(config: BreakerConfig, rng: Rng) -> CircuitBreaker {
        if let Err(error) = config.validate() {
            panic!("invalid circuit breaker config: {error}");
        }
        let window = VecDeque::with_capacity(config.window_size as usize);
        CircuitBreaker {
            config,
            rng,
            phase: Phase::Closed,
            generation: 0,
            window,
            window_failures: 0,
            consecutive_failures: 0,
            trips: 0,
            transitions: VecDeque::new(),
            transitions_dropped: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// The current state. An open breaker whose period has ended still reports
    /// `Open` until the next [`try_acquire`](Self::try_acquire) or
    /// [`poll`](Self::poll) moves it.
    pub fn state(&self) -> BreakerState {
        self.phase.state()
    }

    /// When the current open period ends, if open.
    pub fn open_until(&self) -> Option<Instant> {
        match self.phase {
            Phase::Open { until } => Some(until),
            Phase::Closed | Phase::HalfOpen { .. } => None,
        }
    }

    /// Performs the lazy time-driven transitions: open → half-open once the open
    /// period has ended, and half-open → open once outstanding probes are presumed
    /// lost (no verdict `open_max` after the last was admitted).
    pub fn poll(&mut self, now: Instant) {
        if let Phase::Open { until } = self.phase {
            if now >= until {
                let probing = Phase::HalfOpen {
                    admitted: 0,
                    succeeded: 0,
                    last_admitted: now,
                };
                self.transition(probing, now, TransitionReason::OpenElapsed, None);
            }
        }
        if self.probes_lost(now) {
            self.trip(now, TransitionReason::ProbeLost);
        }
    }

    /// Whether half-open has probes outstanding with no verdict for `open_max`
    /// since the last was admitted. A permit dropped unreported (a caller bug, a
    /// cancelled future without a guard) or an endpoint that accepts and never
    /// answers would otherwise hold half-open forever; such a probe counts as failed.
    fn probes_lost(&self, now: Instant) -> bool {
        match self.phase {
            Phase::HalfOpen {
                admitted,
                succeeded,
                last_admitted,
            } => {
                admitted > succeeded
                    && now.saturating_duration_since(last_admitted) >= self.config.open_max
            }
            Phase::Closed | Phase::Open { .. } => false,
        }
    }

    /// Admits a call, or refuses it with how long to wait. Performs the lazy
    /// open → half-open transition; in half-open, takes a probe slot.
    pub fn try_acquire(&mut self, now: Instant) -> Result<Permit, BreakerOpen> {
        self.poll(now);
        let generation = self.generation;
        match &mut self.phase {
            Phase::Closed => Ok(Permit {
                generation,
                probe: false,
            }),
            Phase::Open { until } => Err(BreakerOpen {
                state: BreakerState::Open,
                retry_after: Some(until.saturating_duration_since(now)),
            }),
            Phase::HalfOpen {
                admitted,
                last_admitted,
                ..
            } => {
                if *admitted < self.config.half_open_probes {
                    *admitted += 1;
                    *last_admitted = now;
                    Ok(Permit {
                        generation,
                        probe: true,
                    })
                } else {
                    Err(BreakerOpen {
                        state: BreakerState::HalfOpen,
                        retry_after: None,
                    })
                }
            }
        }
    }

    /// Whether [`try_acquire`](Self::try_acquire) would admit a call now, without
    /// changing anything: balancers use it to skip endpoints.
    pub fn is_available(&self, now: Instant) -> bool {
        match self.phase {
            Phase::Closed => true,
            Phase::Open { until } => now >= until,
            Phase::HalfOpen { admitted, .. } => {
                admitted < self.config.half_open_probes && !self.probes_lost(now)
            }
        }
    }

    /// Records a call that succeeded after `latency` (a failure if it was slow).
    pub fn on_success(&mut self, permit: Permit, now: Instant, latency: Duration) {
        let slow = self
            .config
            .slow_call_threshold
            .is_some_and(|threshold| latency >= threshold);
        self.record_health(permit, now, slow);
    }

    /// Records a call that failed in a way that counts against the endpoint.
    pub fn on_failure(&mut self, permit: Permit, now: Instant, latency: Duration) {
        let _ = latency; // Failed is failed, however long it took.
        self.record_health(permit, now, true);
    }

    /// Returns a permit whose call says nothing about the endpoint (cancelled by
    /// the caller): nothing is recorded, and a probe slot is freed for another probe.
    pub fn on_ignored(&mut self, permit: Permit) {
        if permit.generation != self.generation {
            return;
        }
        if let Phase::HalfOpen { admitted, .. } = &mut self.phase {
            debug_assert!(permit.probe && *admitted > 0);
            *admitted = admitted.saturating_sub(1);
        }
    }

    /// Records an outcome classified by [`BreakerOutcome::of_status`] (or `Success`).
    pub fn record(
        &mut self,
        permit: Permit,
        now: Instant,
        latency: Duration,
        outcome: BreakerOutcome,
    ) {
        match outcome {
            BreakerOutcome::Success => self.on_success(permit, now, latency),
            BreakerOutcome::Failure => self.on_failure(permit, now, latency),
            BreakerOutcome::Ignored => self.on_ignored(permit),
        }
    }

    /// The transitions since the last call, oldest first.
    pub fn take_transitions(&mut self) -> Vec<Transition> {
        self.transitions.drain(..).collect()
    }

    /// Transitions dropped because more than [`TRANSITIONS_KEPT_MAX`] piled up
    /// between two [`take_transitions`](Self::take_transitions).
    pub fn transitions_dropped(&self) -> u64 {
        self.transitions_dropped
    }

    /// Applies one call's verdict (`failed`) if its permit is from this generation.
    fn record_health(&mut self, permit: Permit, now: Instant, failed: bool) {
        if permit.generation != self.generation {
            return; // A late result from an earlier state: see the module docs.
        }
        match self.phase {
            Phase::Closed => self.record_closed(now, failed),
            Phase::Open { .. } => {
                unreachable!("no permit is ever issued while open; generations differ")
            }
            Phase::HalfOpen {
                admitted,
                succeeded,
                last_admitted,
            } => {
                debug_assert!(permit.probe && succeeded < admitted);
                if failed {
                    self.trip(now, TransitionReason::ProbeFailed);
                } else if succeeded + 1 >= self.config.half_open_probes {
                    self.transition(Phase::Closed, now, TransitionReason::ProbesSucceeded, None);
                } else {
                    self.phase = Phase::HalfOpen {
                        admitted,
                        succeeded: succeeded + 1,
                        last_admitted,
                    };
                }
            }
        }
    }

    /// Pushes an outcome into the closed window and trips if a rule says so.
    fn record_closed(&mut self, now: Instant, failed: bool) {
        if self.window.len() == self.config.window_size as usize {
            if let Some(true) = self.window.pop_front() {
                self.window_failures -= 1;
            }
        }
        self.window.push_back(failed);
        if failed {
            self.window_failures += 1;
            self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        } else {
            self.consecutive_failures = 0;
        }
        if self
            .config
            .consecutive_failures
            .is_some_and(|limit| self.consecutive_failures >= limit)
        {
            self.trip(now, TransitionReason::ConsecutiveFailures);
        } else if self.window_rate_exceeded() {
            self.trip(now, TransitionReason::FailureRate);
        }
    }

    /// Whether the window holds enough calls and too many of them failed.
    fn window_rate_exceeded(&self) -> bool {
        let calls = self.window.len();
        if calls < self.config.minimum_calls as usize {
            return false;
        }
        // Exact in f64 (both below 2^53); IEEE division is deterministic.
        f64::from(self.window_failures) / calls as f64 >= self.config.failure_rate_threshold
    }

    /// Enters open for the next jittered, exponentially grown period.
    fn trip(&mut self, now: Instant, reason: TransitionReason) {
        let open_for = self.next_open_duration();
        self.trips = self.trips.saturating_add(1);
        // open_for ≤ OPEN_MAX_LIMIT, so this only fails on a clock near its end.
        let until = now.checked_add(open_for).unwrap_or(now);
        self.transition(Phase::Open { until }, now, reason, Some(open_for));
    }

    /// `ceiling / 2 + U(0, ceiling / 2)` with `ceiling = min(open_base · 2^trips, open_max)`.
    fn next_open_duration(&mut self) -> Duration {
        let ceiling = 1u32
            .checked_shl(self.trips)
            .and_then(|factor| self.config.open_base.checked_mul(factor))
            .map_or(self.config.open_max, |grown| {
                grown.min(self.config.open_max)
            });
        let half = ceiling / 2;
        let random = self.rng.gen_range(0..=duration_nanos(half));
        (ceiling - half) + Duration::from_nanos(random)
    }

    /// Moves to `next`, asserting the transition is legal, and records it.
    fn transition(
        &mut self,
        next: Phase,
        now: Instant,
        reason: TransitionReason,
        open_for: Option<Duration>,
    ) {
        let from = self.phase.state();
        let to = next.state();
        let legal = matches!(
            (from, to),
            (BreakerState::Closed, BreakerState::Open)
                | (BreakerState::Open, BreakerState::HalfOpen)
                | (BreakerState::HalfOpen, BreakerState::Closed)
                | (BreakerState::HalfOpen, BreakerState::Open)
        );
        assert!(
            legal,
            "illegal breaker transition {from} -> {to} ({reason})"
        );
        if to == BreakerState::Closed {
            self.trips = 0;
        }
        // Each closed period judges the endpoint afresh.
        self.window.clear();
        self.window_failures = 0;
        self.consecutive_failures = 0;
        self.phase = next;
        self.generation = self.generation.wrapping_add(1);
        if self.transitions.len() == TRANSITIONS_KEPT_MAX {
            self.transitions.pop_front();
            self.transitions_dropped += 1;
        }
        self.transitions.push_back(Transition {
            from,
            to,
            at: now,
            reason,
            open_for,
        });
    }
}

#[cfg(test)]
mod tests;
