//! Whether a failed attempt may be tried again, and why not.
//!
//! A retry needs three things: the failure is transient (retryable), re-sending
//! cannot run the handler twice unintentionally (the method is idempotent, or the
//! request provably never reached a handler), and the attempt cap is not reached.
//! The retry budget ([`RetryBudget`](super::RetryBudget)) is checked separately
//! by the caller, after a `Retry` decision, so the trace can tell "the policy said
//! no" from "the budget said no".

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use super::{Backoff, ConfigError};
use crate::rng::Rng;
use crate::status::{Code, Status};

/// The most attempts a policy may allow. gRPC A6 silently caps at 5; we accept up
/// to 10 for long deadlines, and the budget bounds the load whatever is chosen.
pub const MAX_ATTEMPTS_LIMIT: u32 = 10;

/// When and how a client retries. Defaults and why: `docs/RESILIENCE.md`.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Attempts per call including the first, in 1..=10. Default 3: one retry
    /// rarely suffices against a single flaky endpoint, a third retry rarely helps
    /// that a second did not; gRPC allows at most 5.
    pub max_attempts: u32,
    /// The wait before each retry.
    pub backoff: Backoff,
    /// Codes worth retrying. Default: [`Code::is_retryable_by_default`]
    /// (Unavailable, ResourceExhausted, Aborted, DeadlineExceeded).
    pub retryable_codes: BTreeSet<Code>,
    /// Bound on each attempt (and each hedge), sent as the attempt's own
    /// deadline: when it passes, the attempt fails as `DeadlineExceeded` (it
    /// may have executed) and is retried if the policy allows, within the
    /// call's own deadline, which it never extends. The server gets the same
    /// shorter deadline, so it stops too. `None` (default): each attempt may use the call's
    /// whole remaining deadline — a stuck attempt then costs the whole call.
    pub attempt_timeout: Option<std::time::Duration>,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            backoff: Backoff::default(),
            retryable_codes: Code::ALL
                .into_iter()
                .filter(|code| code.is_retryable_by_default())
                .collect(),
            attempt_timeout: None,
        }
    }
}

/// The verdict on a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RetryDecision {
    /// Try again (subject to the retry budget), after [`RetryPolicy::delay`].
    Retry,
    /// Give up and return the failure, for this reason.
    Stop(StopReason),
}

/// Why a failed attempt is not retried, as written in the trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StopReason {
    /// The failure is not transient (`not_retryable`).
    NotRetryable,
    /// The method is not idempotent and the request may have run (`may_have_executed`).
    MayHaveExecuted,
    /// `max_attempts` attempts were made (`attempts_exhausted`).
    AttemptsExhausted,
}

impl StopReason {
    /// The reason as written in traces.
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::NotRetryable => "not_retryable",
            StopReason::MayHaveExecuted => "may_have_executed",
            StopReason::AttemptsExhausted => "attempts_exhausted",
        }
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl RetryPolicy {
    /// Checks every field against its documented range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_attempts == 0 || self.max_attempts > MAX_ATTEMPTS_LIMIT {
            return Err(ConfigError::new(
                "max_attempts",
                format!(
                    "{} is outside 1..={MAX_ATTEMPTS_LIMIT} (1 means no retries)",
                    self.max_attempts
                ),
            ));
        }
        if self.attempt_timeout.is_some_and(|t| t.is_zero()) {
            return Err(ConfigError::new(
                "attempt_timeout",
                "0 would abandon every attempt at once; omit it for no per-attempt bound",
            ));
        }
        if self.retryable_codes.contains(&Code::Ok) {
            return Err(ConfigError::new(
                "retryable_codes",
                "Ok is not a failure and cannot be retried",
            ));
        }
        self.backoff.validate()
    }

    /// Whether `status` is worth another attempt.
    ///
    /// The policy's codes decide, unless the status carries an explicit override
    /// (its flag differs from its code's default, set with
    /// [`Status::with_retryable`]): then the party that built the status — the
    /// server refusing with pushback, the transport knowing the connection never
    /// opened — knows more than a static list, and its verdict wins.
    pub fn is_retryable(&self, status: &Status) -> bool {
        let code = status.code();
        if status.is_retryable() != code.is_retryable_by_default() {
            return status.is_retryable();
        }
        self.retryable_codes.contains(&code)
    }

    /// Decides about attempt number `attempt` (1 = the first) that failed with
    /// `status`, for a method that is `idempotent` or not. Reasons are checked in
    /// the order retryable, safe, attempts left, and the first that fails is given.
    pub fn decide(&self, status: &Status, attempt: u32, idempotent: bool) -> RetryDecision {
        if !self.is_retryable(status) {
            return RetryDecision::Stop(StopReason::NotRetryable);
        }
        if !idempotent && status.may_have_executed() {
            return RetryDecision::Stop(StopReason::MayHaveExecuted);
        }
        if attempt.max(1) >= self.max_attempts {
            return RetryDecision::Stop(StopReason::AttemptsExhausted);
        }
        RetryDecision::Retry
    }

    /// The wait before retrying after attempt `attempt` failed: the backoff for
    /// retry number `attempt`.
    pub fn delay(&self, attempt: u32, rng: &mut Rng) -> Duration {
        self.backoff.delay(attempt, rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_decisions_follow_retryable_then_safe_then_attempts() {
        // Proves the decision matrix over (retryable?, may have executed?,
        // idempotent?, attempts left?) with the default policy (3 attempts).
        let policy = RetryPolicy::default();
        let retryable_executed = Status::unavailable("reset after send");
        let retryable_not_executed = Status::unavailable("connect refused").not_executed();
        let fatal = Status::invalid_argument("bad");
        let fatal_not_executed = Status::invalid_argument("bad").not_executed();
        let stop = RetryDecision::Stop;
        let cases = [
            (&retryable_executed, 1, true, RetryDecision::Retry),
            (&retryable_executed, 2, true, RetryDecision::Retry),
            (
                &retryable_executed,
                3,
                true,
                stop(StopReason::AttemptsExhausted),
            ),
            (
                &retryable_executed,
                1,
                false,
                stop(StopReason::MayHaveExecuted),
            ),
            (
                &retryable_executed,
                3,
                false,
                stop(StopReason::MayHaveExecuted),
            ),
            (&retryable_not_executed, 1, false, RetryDecision::Retry),
            (&retryable_not_executed, 2, false, RetryDecision::Retry),
            (
                &retryable_not_executed,
                3,
                false,
                stop(StopReason::AttemptsExhausted),
            ),
            (&retryable_not_executed, 1, true, RetryDecision::Retry),
            (&fatal, 1, true, stop(StopReason::NotRetryable)),
            (&fatal, 1, false, stop(StopReason::NotRetryable)),
            (
                &fatal_not_executed,
                1,
                false,
                stop(StopReason::NotRetryable),
            ),
            (&fatal, 3, true, stop(StopReason::NotRetryable)),
        ];
        for (status, attempt, idempotent, expected) in cases {
            assert_eq!(
                policy.decide(status, attempt, idempotent),
                expected,
                "{status} attempt {attempt} idempotent {idempotent}"
            );
        }
    }

    #[test]
    fn default_retryable_codes_are_the_codes_default_retryable_set() {
        // Proves the default policy retries exactly the codes Code marks retryable.
        let policy = RetryPolicy::default();
        for code in Code::ALL {
            let status = Status::new(code, "test").not_executed();
            let expected = code.is_retryable_by_default();
            assert_eq!(
                policy.decide(&status, 1, false) == RetryDecision::Retry,
                expected,
                "{code}"
            );
        }
    }

    #[test]
    fn a_status_override_beats_the_policy_codes() {
        // Proves explicit per-status verdicts win: a server's "do not retry" on an
        // Unavailable stops, a transport's "retryable" on an Internal retries.
        let policy = RetryPolicy::default();
        let pushback = Status::unavailable("draining").with_retryable(false);
        assert_eq!(
            policy.decide(&pushback, 1, true),
            RetryDecision::Stop(StopReason::NotRetryable)
        );
        let marked = Status::internal("codec glitch").with_retryable(true);
        assert_eq!(policy.decide(&marked, 1, true), RetryDecision::Retry);
    }

    #[test]
    fn added_codes_are_retried_and_removed_codes_are_not() {
        // Proves the policy's code set is authoritative for statuses without an
        // override, in both directions.
        let mut policy = RetryPolicy::default();
        policy.retryable_codes.insert(Code::Internal);
        policy.retryable_codes.remove(&Code::Aborted);
        let internal = Status::internal("panic");
        let aborted = Status::new(Code::Aborted, "conflict");
        assert_eq!(policy.decide(&internal, 1, true), RetryDecision::Retry);
        assert_eq!(
            policy.decide(&aborted, 1, true),
            RetryDecision::Stop(StopReason::NotRetryable)
        );
    }

    #[test]
    fn a_single_attempt_policy_never_retries() {
        // Proves max_attempts 1 (and an attempt number of 0, treated as 1) stops.
        let policy = RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        };
        let status = Status::unavailable("down").not_executed();
        let exhausted = RetryDecision::Stop(StopReason::AttemptsExhausted);
        assert_eq!(policy.decide(&status, 1, true), exhausted);
        assert_eq!(policy.decide(&status, 0, true), exhausted);
    }

    #[test]
    fn stop_reasons_read_as_the_trace_writes_them() {
        // Proves the trace vocabulary is stable.
        assert_eq!(StopReason::NotRetryable.to_string(), "not_retryable");
        assert_eq!(StopReason::MayHaveExecuted.to_string(), "may_have_executed");
        assert_eq!(
            StopReason::AttemptsExhausted.to_string(),
            "attempts_exhausted"
        );
    }

    #[test]
    fn retry_policy_rejects_attempt_counts_outside_one_to_ten() {
        // Proves the cap and the floor on max_attempts, and that Ok is not retryable.
        for max_attempts in [0, 11] {
            let policy = RetryPolicy {
                max_attempts,
                ..RetryPolicy::default()
            };
            assert_eq!(
                policy.validate().map_err(|error| error.field()),
                Err("max_attempts")
            );
        }
        let mut policy = RetryPolicy::default();
        assert_eq!(policy.validate(), Ok(()));
        policy.retryable_codes.insert(Code::Ok);
        assert_eq!(
            policy.validate().map_err(|error| error.field()),
            Err("retryable_codes")
        );
    }
}
