//! Breaker behaviour on a virtual clock: every legal transition, and none other.
//!
//! Times are an origin `Instant` plus `Duration`s; the origin is taken once inside
//! a paused runtime and nothing reads a clock after that.

use super::*;
use crate::rng::SeedSource;
use proptest::prelude::*;

/// A breaker with `config` and a fixed seed.
fn breaker(config: BreakerConfig) -> CircuitBreaker {
    CircuitBreaker::new(config, SeedSource::new(7).stream("breaker"))
}

/// The default config with only the failure-rate rule.
fn rate_only() -> BreakerConfig {
    BreakerConfig {
        consecutive_failures: None,
        ..BreakerConfig::default()
    }
}

/// Admits and reports one call at `now`.
fn call(breaker: &mut CircuitBreaker, now: Instant, failed: bool) {
    let permit = breaker.try_acquire(now).expect("breaker should admit");
    if failed {
        breaker.on_failure(permit, now, Duration::from_millis(1));
    } else {
        breaker.on_success(permit, now, Duration::from_millis(1));
    }
}

/// Trips a default breaker with five failures at `now`; returns the open period.
fn trip(breaker: &mut CircuitBreaker, now: Instant) -> Duration {
    for _ in 0..5 {
        call(breaker, now, true);
    }
    assert_eq!(breaker.state(), BreakerState::Open);
    let transitions = breaker.take_transitions();
    transitions
        .last()
        .and_then(|transition| transition.open_for)
        .expect("a trip records its open period")
}

/// Moves an open breaker to half-open at the end of its open period; returns that time.
fn enter_half_open(breaker: &mut CircuitBreaker) -> Instant {
    let until = breaker.open_until().expect("breaker should be open");
    breaker.poll(until);
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
    breaker.take_transitions();
    until
}

#[tokio::test(start_paused = true)]
async fn breaker_opens_after_five_consecutive_failures() {
    // Proves the Finagle rule: four failures in a row keep it closed, the fifth
    // trips it, and the transition names the rule.
    let t0 = Instant::now();
    let mut breaker = breaker(BreakerConfig::default());
    for _ in 0..4 {
        call(&mut breaker, t0, true);
    }
    assert_eq!(breaker.state(), BreakerState::Closed);
    call(&mut breaker, t0, true);
    assert_eq!(breaker.state(), BreakerState::Open);
    let transitions = breaker.take_transitions();
    assert_eq!(transitions.len(), 1);
    assert_eq!(transitions[0].from, BreakerState::Closed);
    assert_eq!(transitions[0].to, BreakerState::Open);
    assert_eq!(transitions[0].reason, TransitionReason::ConsecutiveFailures);
    assert_eq!(transitions[0].at, t0);
}

#[tokio::test(start_paused = true)]
async fn a_success_resets_the_consecutive_failure_count() {
    // Proves "consecutive" means in a row: 4 failures, a success, 4 failures stay
    // closed (9 calls is also below minimum_calls, so the rate rule is silent).
    let t0 = Instant::now();
    let mut breaker = breaker(BreakerConfig::default());
    for failed in [true, true, true, true, false, true, true, true, true] {
        call(&mut breaker, t0, failed);
    }
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert!(breaker.take_transitions().is_empty());
}

#[tokio::test(start_paused = true)]
async fn breaker_opens_on_failure_rate_only_once_minimum_calls_are_recorded() {
    // Proves the rate rule waits for minimum_calls (10): alternating failures are
    // ≥ 50% from the first call, but the breaker trips on the tenth, not before.
    let t0 = Instant::now();
    let mut breaker = breaker(rate_only());
    for index in 0..9 {
        call(&mut breaker, t0, index % 2 == 0);
        assert_eq!(breaker.state(), BreakerState::Closed, "after call {index}");
    }
    call(&mut breaker, t0, false); // 5 failures out of 10 = 50%.
    assert_eq!(breaker.state(), BreakerState::Open);
    let transitions = breaker.take_transitions();
    assert_eq!(transitions[0].reason, TransitionReason::FailureRate);
}

#[tokio::test(start_paused = true)]
async fn failure_rate_below_threshold_keeps_the_breaker_closed() {
    // Proves a steady 40% failure rate (below 50%) never trips the rate rule.
    let t0 = Instant::now();
    let mut breaker = breaker(rate_only());
    for index in 0..200 {
        call(&mut breaker, t0, index % 5 >= 3); // s s s f f: never ≥ 50% of ≥ 10 calls.
    }
    assert_eq!(breaker.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn failure_rate_counts_only_the_last_window_size_calls() {
    // Proves the window slides: after 20 successes, 9 failures make 9/20 (closed),
    // the tenth makes 10/20 = 50% (open). A cumulative count would be 10/30.
    let t0 = Instant::now();
    let mut breaker = breaker(rate_only());
    for _ in 0..20 {
        call(&mut breaker, t0, false);
    }
    for _ in 0..9 {
        call(&mut breaker, t0, true);
    }
    assert_eq!(breaker.state(), BreakerState::Closed);
    call(&mut breaker, t0, true);
    assert_eq!(breaker.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn open_breaker_refuses_calls_until_its_open_period_ends() {
    // Proves open stays open before its time (refusing with the exact wait), and
    // that the first open period lies in equal-jitter bounds [2.5 s, 5 s].
    let t0 = Instant::now();
    let mut breaker = breaker(BreakerConfig::default());
    let open_for = trip(&mut breaker, t0);
    assert!(open_for >= Duration::from_millis(2500) && open_for <= Duration::from_secs(5));
    let until = breaker.open_until().expect("open");
    assert_eq!(until, t0 + open_for);
    let just_before = until - Duration::from_nanos(1);
    assert!(!breaker.is_available(just_before));
    let refused = breaker.try_acquire(just_before).expect_err("still open");
    assert_eq!(refused.state, BreakerState::Open);
    assert_eq!(refused.retry_after, Some(Duration::from_nanos(1)));
    assert_eq!(breaker.state(), BreakerState::Open);
    assert!(breaker.take_transitions().is_empty());
}

#[tokio::test(start_paused = true)]
async fn open_becomes_half_open_lazily_on_the_first_acquire_after_its_period() {
    // Proves open → half-open happens only when asked at or after open_until:
    // state() alone does not move it, is_available predicts it, try_acquire does it
    // and the admitted call is a probe.
    let t0 = Instant::now();
    let mut breaker = breaker(BreakerConfig::default());
    trip(&mut breaker, t0);
    let until = breaker.open_until().expect("open");
    assert!(breaker.is_available(until));
    assert_eq!(breaker.state(), BreakerState::Open);
    let permit = breaker.try_acquire(until).expect("probe admitted");
    assert!(permit.is_probe());
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
    let transitions = breaker.take_transitions();
    assert_eq!(transitions.len(), 1);
    assert_eq!(transitions[0].reason, TransitionReason::OpenElapsed);
    assert_eq!(transitions[0].at, until);
    breaker.on_ignored(permit);
}

#[tokio::test(start_paused = true)]
async fn half_open_closes_after_three_probes_succeed() {
    // Proves half-open admits exactly half_open_probes (3) concurrent probes,
    // refuses a fourth without a retry-after, and closes only on the third success.
    let t0 = Instant::now();
    let mut breaker = breaker(BreakerConfig::default());
    trip(&mut breaker, t0);
    let now = enter_half_open(&mut breaker);
    let probes: Vec<Permit> = (0..3)
        .map(|_| breaker.try_acquire(now).expect("probe"))
        .collect();
    assert!(!breaker.is_available(now));
    let refused = breaker.try_acquire(now).expect_err("probes exhausted");
    assert_eq!(refused.state, BreakerState::HalfOpen);
    assert_eq!(refused.retry_after, None);
    for (index, probe) in probes.into_iter().enumerate() {
        assert_eq!(
            breaker.state(),
            BreakerState::HalfOpen,
            "before probe {index}"
        );
        breaker.on_success(probe, now, Duration::from_millis(1));
    }
    assert_eq!(breaker.state(), BreakerState::Closed);
    let transitions = breaker.take_transitions();
    assert_eq!(transitions.len(), 1);
    assert_eq!(transitions[0].reason, TransitionReason::ProbesSucceeded);
    assert_eq!(transitions[0].open_for, None);
}

#[tokio::test(start_paused = true)]
async fn one_failed_probe_reopens_with_a_doubled_open_period() {
    // Proves half-open → open on a single failure, and that the second period's
    // ceiling is 2 × open_base: it lies in [5 s, 10 s].
    let t0 = Instant::now();
    let mut breaker = breaker(BreakerConfig::default());
    trip(&mut breaker, t0);
    let now = enter_half_open(&mut breaker);
    let good = breaker.try_acquire(now).expect("probe");
    let bad = breaker.try_acquire(now).expect("probe");
    breaker.on_success(good, now, Duration::from_millis(1));
    breaker.on_failure(bad, now, Duration::from_millis(1));
    assert_eq!(breaker.state(), BreakerState::Open);
    let transitions = breaker.take_transitions();
    assert_eq!(transitions.len(), 1);
    assert_eq!(transitions[0].from, BreakerState::HalfOpen);
    assert_eq!(transitions[0].reason, TransitionReason::ProbeFailed);
    let open_for = transitions[0].open_for.expect("open period");
    assert!(open_for >= Duration::from_secs(5) && open_for <= Duration::from_secs(10));
}

#[tokio::test(start_paused = true)]
async fn open_period_grows_on_consecutive_trips_up_to_open_max() {
    // Proves the ceiling doubles per consecutive trip (5, 10, 20, 40 s) and then
    // stays at open_max (60 s): every period lies in [ceiling / 2, ceiling].
    let t0 = Instant::now();
    let mut breaker = breaker(BreakerConfig::default());
    let mut open_for = trip(&mut breaker, t0);
    let ceilings = [5, 10, 20, 40, 60, 60, 60, 60, 60, 60, 60, 60];
    for (trip_index, ceiling_secs) in ceilings.into_iter().enumerate() {
        let ceiling = Duration::from_secs(ceiling_secs);
        assert!(
            open_for >= ceiling / 2 && open_for <= ceiling,
            "trip {trip_index}: {open_for:?} outside [{:?}, {ceiling:?}]",
            ceiling / 2
        );
        let now = enter_half_open(&mut breaker);
        call(&mut breaker, now, true);
        open_for = breaker.take_transitions()[0].open_for.expect("open period");
    }
}

#[tokio::test(start_paused = true)]
async fn open_period_returns_to_base_after_the_breaker_closes() {
    // Proves a successful close resets the backoff: trip, fail a probe (ceiling
    // 10 s), close, trip again — the new period is back under open_base (5 s).
    let t0 = Instant::now();
    let mut breaker = breaker(BreakerConfig::default());
    trip(&mut breaker, t0);
    let now = enter_half_open(&mut breaker);
    call(&mut breaker, now, true);
    let now = enter_half_open(&mut breaker);
    for _ in 0..3 {
        call(&mut breaker, now, false);
    }
    assert_eq!(breaker.state(), BreakerState::Closed);
    breaker.take_transitions();
    let open_for = trip(&mut breaker, now);
    assert!(open_for <= Duration::from_secs(5), "{open_for:?}");
}

#[tokio::test(start_paused = true)]
async fn closing_clears_the_window() {
    // Proves a closed period judges the endpoint afresh: failures recorded before
    // the trip do not count after the close (four new failures stay closed).
    let t0 = Instant::now();
    let mut breaker = breaker(BreakerConfig::default());
    trip(&mut breaker, t0);
    let now = enter_half_open(&mut breaker);
    for _ in 0..3 {
        call(&mut breaker, now, false);
    }
    for _ in 0..4 {
        call(&mut breaker, now, true);
    }
    assert_eq!(breaker.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_late_result_from_the_closed_period_is_not_counted_as_a_probe() {
    // Proves stale permits are dropped: a call admitted while closed that reports
    // during half-open neither fails the probe period nor fills a success slot.
    let t0 = Instant::now();
    let mut breaker = breaker(BreakerConfig::default());
    let slow_failure = breaker.try_acquire(t0).expect("closed");
    let slow_success = breaker.try_acquire(t0).expect("closed");
    trip(&mut breaker, t0);
    let now = enter_half_open(&mut breaker);
    breaker.on_failure(slow_failure, now, Duration::from_secs(9));
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
    breaker.on_success(slow_success, now, Duration::from_secs(9));
    for _ in 0..2 {
        call(&mut breaker, now, false);
    }
    assert_eq!(
        breaker.state(),
        BreakerState::HalfOpen,
        "only 2 of 3 probes done"
    );
    call(&mut breaker, now, false);
    assert_eq!(breaker.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_late_probe_result_after_reopening_is_dropped() {
    // Proves a probe still in flight when another probe re-opened the breaker
    // cannot close or count in the next half-open period.
    let t0 = Instant::now();
    let mut breaker = breaker(BreakerConfig::default());
    trip(&mut breaker, t0);
    let now = enter_half_open(&mut breaker);
    let straggler = breaker.try_acquire(now).expect("probe");
    call(&mut breaker, now, true);
    let now = enter_half_open(&mut breaker);
    breaker.on_success(straggler, now, Duration::from_millis(1));
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
    assert!(
        breaker.is_available(now),
        "all three probe slots still free"
    );
}

#[tokio::test(start_paused = true)]
async fn an_ignored_probe_frees_its_slot() {
    // Proves a cancelled probe is neither a success nor a failure and lets another
    // probe take its place.
    let t0 = Instant::now();
    let mut breaker = breaker(BreakerConfig {
        half_open_probes: 1,
        ..BreakerConfig::default()
    });
    trip(&mut breaker, t0);
    let now = enter_half_open(&mut breaker);
    let probe = breaker.try_acquire(now).expect("probe");
    assert!(!breaker.is_available(now));
    breaker.record(probe, now, Duration::ZERO, BreakerOutcome::Ignored);
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
    call(&mut breaker, now, false);
    assert_eq!(breaker.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_probe_lost_for_open_max_reopens_the_breaker() {
    // Proves half-open cannot be held forever by a probe that never reports: one
    // nanosecond before open_max (60 s) after its admission it still blocks, at
    // open_max it counts as failed and the breaker re-opens with reason probe_lost.
    let t0 = Instant::now();
    let mut breaker = breaker(BreakerConfig {
        half_open_probes: 1,
        ..BreakerConfig::default()
    });
    trip(&mut breaker, t0);
    let now = enter_half_open(&mut breaker);
    let lost = breaker.try_acquire(now).expect("probe");
    let open_max = breaker.config().open_max;
    let almost = now + open_max - Duration::from_nanos(1);
    assert!(breaker.try_acquire(almost).is_err());
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
    assert!(!breaker.is_available(now + open_max));
    breaker.poll(now + open_max);
    assert_eq!(breaker.state(), BreakerState::Open);
    let transitions = breaker.take_transitions();
    assert_eq!(transitions.len(), 1);
    assert_eq!(transitions[0].reason, TransitionReason::ProbeLost);
    breaker.on_success(lost, now + open_max, open_max);
    assert_eq!(
        breaker.state(),
        BreakerState::Open,
        "the lost probe's late verdict is stale"
    );
}

#[tokio::test(start_paused = true)]
async fn slow_successes_count_as_failures_when_a_threshold_is_set() {
    // Proves the slow-call rule: five successes at the threshold trip the breaker,
    // one nanosecond under it they do not.
    let t0 = Instant::now();
    let threshold = Duration::from_secs(2);
    let config = BreakerConfig {
        slow_call_threshold: Some(threshold),
        ..BreakerConfig::default()
    };
    let mut fast = breaker(config.clone());
    let mut slow = breaker(config);
    for _ in 0..5 {
        let permit = fast.try_acquire(t0).expect("closed");
        fast.on_success(permit, t0, threshold - Duration::from_nanos(1));
        let permit = slow.try_acquire(t0).expect("closed");
        slow.on_success(permit, t0, threshold);
    }
    assert_eq!(fast.state(), BreakerState::Closed);
    assert_eq!(slow.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn open_periods_are_jittered_per_seed_and_reproducible() {
    // Proves the jitter comes from the injected RNG: the same seed gives the same
    // period, different seeds spread over [2.5 s, 5 s] rather than one value.
    let t0 = Instant::now();
    let period = |seed: u64| {
        let rng = SeedSource::new(seed).stream("breaker");
        let mut breaker = CircuitBreaker::new(BreakerConfig::default(), rng);
        trip(&mut breaker, t0)
    };
    assert_eq!(period(1), period(1));
    let periods: Vec<Duration> = (0..50).map(period).collect();
    let shortest = periods.iter().min().copied().unwrap_or_default();
    let longest = periods.iter().max().copied().unwrap_or_default();
    assert!(shortest >= Duration::from_millis(2500) && longest <= Duration::from_secs(5));
    assert!(
        longest - shortest > Duration::from_secs(1),
        "{shortest:?}..{longest:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn untaken_transitions_are_bounded_and_counted() {
    // Proves the transition log cannot grow without limit when nobody takes it.
    let t0 = Instant::now();
    let mut breaker = breaker(BreakerConfig::default());
    let mut now = t0;
    // 30 × (trip, half-open, close) = 90 transitions, 26 more than are kept.
    for _ in 0..30 {
        call_n(&mut breaker, now, 5);
        now = breaker.open_until().expect("open");
        call_n(&mut breaker, now, 0);
        for _ in 0..3 {
            call(&mut breaker, now, false);
        }
    }
    assert_eq!(breaker.take_transitions().len(), TRANSITIONS_KEPT_MAX);
    assert_eq!(
        breaker.transitions_dropped(),
        90 - TRANSITIONS_KEPT_MAX as u64
    );
}

/// Records `failures` failed calls at `now` (0 just polls).
fn call_n(breaker: &mut CircuitBreaker, now: Instant, failures: usize) {
    breaker.poll(now);
    for _ in 0..failures {
        call(breaker, now, true);
    }
}

#[test]
fn breaker_failure_classification_blames_the_endpoint_not_the_caller() {
    // Proves the documented table: endpoint-health codes count, caller-fault codes
    // count as successes, Cancelled is ignored.
    let failures = [
        Code::Unavailable,
        Code::DeadlineExceeded,
        Code::Internal,
        Code::Unknown,
        Code::DataLoss,
        Code::ResourceExhausted,
    ];
    for code in Code::ALL {
        let status = Status::new(code, "test");
        let expected = if failures.contains(&code) {
            BreakerOutcome::Failure
        } else if code == Code::Cancelled {
            BreakerOutcome::Ignored
        } else {
            BreakerOutcome::Success
        };
        assert_eq!(BreakerOutcome::of_status(&status), expected, "{code}");
        assert_eq!(counts_as_breaker_failure(&status), failures.contains(&code));
    }
}

#[test]
fn breaker_config_rejects_values_outside_their_ranges() {
    // Proves validation names the field for each kind of bad value.
    let bad = [
        (
            BreakerConfig {
                consecutive_failures: Some(0),
                ..BreakerConfig::default()
            },
            "consecutive_failures",
        ),
        (
            BreakerConfig {
                failure_rate_threshold: f64::NAN,
                ..BreakerConfig::default()
            },
            "failure_rate_threshold",
        ),
        (
            BreakerConfig {
                minimum_calls: 21,
                ..BreakerConfig::default()
            },
            "minimum_calls",
        ),
        (
            BreakerConfig {
                open_max: Duration::from_secs(1),
                ..BreakerConfig::default()
            },
            "open_max",
        ),
        (
            BreakerConfig {
                half_open_probes: 0,
                ..BreakerConfig::default()
            },
            "half_open_probes",
        ),
    ];
    assert_eq!(BreakerConfig::default().validate(), Ok(()));
    for (config, field) in bad {
        assert_eq!(config.validate().map_err(|error| error.field()), Err(field));
    }
}

/// One step of the random walk in the transition property test.
#[derive(Clone, Debug)]
enum Step {
    /// Advance the clock.
    Wait(Duration),
    /// Try to start a call.
    Acquire,
    /// Finish the oldest outstanding call this way.
    Finish(BreakerOutcome),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u64..20_000).prop_map(|millis| Step::Wait(Duration::from_millis(millis))),
        Just(Step::Acquire),
        Just(Step::Finish(BreakerOutcome::Success)),
        Just(Step::Finish(BreakerOutcome::Failure)),
        Just(Step::Finish(BreakerOutcome::Ignored)),
    ]
}

proptest! {
    #[test]
    fn random_walks_take_only_legal_transitions(
        seed in any::<u64>(),
        steps in proptest::collection::vec(step(), 0..400),
    ) {
        // Proves, for arbitrary interleavings of time, calls and outcomes (late ones
        // included), that only the four legal transitions occur, that open never ends
        // before open_until, and that every open period is within [base/2, max].
        let origin = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("runtime")
            .block_on(async { Instant::now() });
        let config = BreakerConfig::default();
        let mut breaker = CircuitBreaker::new(config.clone(), SeedSource::new(seed).stream("b"));
        let mut now = origin;
        let mut outstanding = VecDeque::new();
        let mut open_until = None;
        for step in steps {
            match step {
                Step::Wait(wait) => now += wait,
                Step::Acquire => {
                    if let Ok(permit) = breaker.try_acquire(now) {
                        outstanding.push_back(permit);
                    }
                }
                Step::Finish(outcome) => {
                    if let Some(permit) = outstanding.pop_front() {
                        breaker.record(permit, now, Duration::from_millis(5), outcome);
                    }
                }
            }
            for transition in breaker.take_transitions() {
                let legal = matches!(
                    (transition.from, transition.to),
                    (BreakerState::Closed, BreakerState::Open)
                        | (BreakerState::Open, BreakerState::HalfOpen)
                        | (BreakerState::HalfOpen, BreakerState::Closed)
                        | (BreakerState::HalfOpen, BreakerState::Open)
                );
                prop_assert!(legal, "{transition:?}");
                if transition.from == BreakerState::Open {
                    let until = open_until.take().expect("an open period was recorded");
                    prop_assert!(transition.at >= until);
                }
                if let Some(open_for) = transition.open_for {
                    prop_assert!(open_for >= config.open_base / 2 && open_for <= config.open_max);
                    open_until = Some(transition.at + open_for);
                }
            }
            prop_assert_eq!(breaker.open_until(), open_until);
        }
    }
}
