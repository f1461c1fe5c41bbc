//! [`Backoff`]: how long the registry helpers wait before trying again.

use std::time::Duration;

use rand::RngCore;

use crate::rng::Rng;

/// Exponential backoff with a ceiling, optionally with "equal jitter" (half the
/// delay fixed, half drawn from an injected seeded stream).
///
/// The ceiling keeps a helper probing a registry that has been down for long;
/// the jitter keeps a fleet of servers from re-registering in lockstep after a
/// registry restart. Without an RNG the delays are exact, which is what tests want.
#[derive(Clone, Debug)]
pub struct Backoff {
    /// The first delay after a success.
    pub initial: Duration,
    /// No delay is longer than this.
    pub max: Duration,
    /// The next delay before jitter; doubles per failure up to `max`.
    current: Duration,
    /// Jitter source; `None` means no jitter.
    rng: Option<Rng>,
}

impl Backoff {
    /// Delays `initial`, `2 × initial`, ... up to `max`, without jitter.
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        assert!(
            initial > Duration::ZERO,
            "backoff: initial delay must be positive"
        );
        assert!(
            initial <= max,
            "backoff: initial delay {initial:?} exceeds max {max:?}"
        );
        Backoff {
            initial,
            max,
            current: initial,
            rng: None,
        }
    }

    /// The same backoff with equal jitter drawn from `rng` (a named stream of the
    /// run's [`SeedSource`](crate::SeedSource)).
    pub fn with_jitter(mut self, rng: Rng) -> Backoff {
        self.rng = Some(rng);
        self
    }

    /// The delay before the next attempt; each call doubles the following one.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.current;
        self.current = self.current.saturating_mul(2).min(self.max);
        match &mut self.rng {
            None => delay,
            Some(rng) => {
                let half = delay / 2;
                let half_ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
                let jitter_ms = if half_ms == 0 {
                    0
                } else {
                    rng.next_u64() % half_ms.saturating_add(1)
                };
                half + Duration::from_millis(jitter_ms)
            }
        }
    }

    /// Starts over from `initial` (after a success).
    pub fn reset(&mut self) {
        self.current = self.initial;
    }
}

impl Default for Backoff {
    /// 100 ms doubling to 5 s: a registry outage costs a helper at most one call
    /// every five seconds, and a brief blip is retried almost at once.
    fn default() -> Backoff {
        Backoff::new(Duration::from_millis(100), Duration::from_secs(5))
    }
}
