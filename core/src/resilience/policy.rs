//! Fail modes: where a retry goes (rpcx's vocabulary).

use std::fmt;
use std::str::FromStr;

/// What the client does when an attempt fails and [`RetryPolicy`](super::RetryPolicy)
/// says it may retry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FailMode {
    /// One attempt only: return the first failure. For calls whose caller has its
    /// own retry logic, or that must never be duplicated.
    FailFast,
    /// Retry on another endpoint (the balancer picks again, excluding those already
    /// tried while others remain). The default: an endpoint that just failed is the
    /// likeliest to fail again.
    #[default]
    FailOver,
    /// Retry on the same endpoint. For sticky state (a session, a consistent-hash
    /// shard) where another endpoint cannot answer.
    FailTry,
}

impl FailMode {
    /// Every mode, in declaration order.
    pub const ALL: [FailMode; 3] = [FailMode::FailFast, FailMode::FailOver, FailMode::FailTry];

    /// The mode's name in scenario files and traces (`failover`).
    pub fn as_str(self) -> &'static str {
        match self {
            FailMode::FailFast => "failfast",
            FailMode::FailOver => "failover",
            FailMode::FailTry => "failtry",
        }
    }

    /// Whether this mode retries at all.
    pub fn retries(self) -> bool {
        self != FailMode::FailFast
    }

    /// Whether a retry must pick a different endpoint from the one that failed.
    pub fn switches_endpoint(self) -> bool {
        self == FailMode::FailOver
    }
}

impl fmt::Display for FailMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no fail mode.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown fail mode {input:?} (expected one of: failfast, failover, failtry)")]
pub struct ParseFailModeError {
    /// The text that did not parse.
    input: String,
}

impl FromStr for FailMode {
    type Err = ParseFailModeError;

    /// Parses `failfast`, `failover` or `failtry`, ignoring case, `_` and `-`
    /// (so `FailOver`, `fail_over` and `fail-over` all work).
    fn from_str(input: &str) -> Result<FailMode, ParseFailModeError> {
        let normalised: String = input
            .chars()
            .filter(|character| *character != '_' && *character != '-')
            .map(|character| character.to_ascii_lowercase())
            .collect();
        FailMode::ALL
            .into_iter()
            .find(|mode| mode.as_str() == normalised)
            .ok_or_else(|| ParseFailModeError {
                input: input.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_modes_round_trip_through_their_names() {
        // Proves Display and FromStr agree, and spelling variants are accepted.
        for mode in FailMode::ALL {
            assert_eq!(mode.to_string().parse::<FailMode>(), Ok(mode));
        }
        assert_eq!("Fail_Over".parse::<FailMode>(), Ok(FailMode::FailOver));
        assert_eq!("fail-try".parse::<FailMode>(), Ok(FailMode::FailTry));
        assert_eq!("FAILFAST".parse::<FailMode>(), Ok(FailMode::FailFast));
    }

    #[test]
    fn an_unknown_fail_mode_names_the_valid_ones() {
        // Proves the error tells the user what to write instead.
        let error = "failback".parse::<FailMode>().expect_err("not a mode");
        assert_eq!(
            error.to_string(),
            "unknown fail mode \"failback\" (expected one of: failfast, failover, failtry)"
        );
    }

    #[test]
    fn only_failfast_gives_up_and_only_failover_switches_endpoint() {
        // Proves the rpcx semantics of each mode.
        assert!(!FailMode::FailFast.retries());
        assert!(FailMode::FailOver.retries() && FailMode::FailOver.switches_endpoint());
        assert!(FailMode::FailTry.retries() && !FailMode::FailTry.switches_endpoint());
        assert_eq!(FailMode::default(), FailMode::FailOver);
    }
}
