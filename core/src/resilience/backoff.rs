//! Exponential backoff with jitter: how long to wait before retry number `n`.
//!
//! `base(n) = min(initial · multiplier^(n−1), max)` (the gRPC A6 formula, retries
//! counted from 1), then [`Jitter`] spreads it so clients that failed together do
//! not retry together. The arithmetic cannot overflow: the power is computed by
//! squaring in `f64` (plain IEEE multiplications, so the same on every machine —
//! unlike `powi`, whose precision Rust leaves unspecified) and anything at or above
//! `max`, infinity included, becomes `max`.

use std::time::Duration;

use rand::Rng as _;

use super::{duration_nanos, ConfigError};
use crate::rng::Rng;

/// The longest `max` accepted: a retry after more than an hour is not a retry.
pub const BACKOFF_MAX_LIMIT: Duration = Duration::from_secs(3600);
/// The largest multiplier accepted; beyond it "exponential" is a cliff.
pub const MULTIPLIER_LIMIT: f64 = 16.0;

/// How a base delay is randomised.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Jitter {
    /// No randomness: every client waits exactly the base delay. Only for tests and
    /// single clients — synchronised clients retry in lockstep (rpcx's weakness).
    None,
    /// Uniform in `0..=base` (AWS "full jitter"): spreads a synchronised fleet over
    /// the whole window, which AWS measured to do the least total work under
    /// contention. May wait almost nothing.
    Full,
    /// `base × U(1 − f, 1 + f)` for `f` in [0, 1] (gRPC A6 uses 0.2): keeps the
    /// delay near its base, so it may exceed `max` by the factor `1 + f`.
    Proportional(f64),
}

/// An exponential backoff schedule. Defaults and why: `docs/RESILIENCE.md`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Backoff {
    /// The base delay before the first retry. Default 100 ms: retries must fit
    /// inside the caller's overall deadline (typically 1–5 s); gRPC's 1 s is its
    /// *connection* backoff, and would spend a 1 s deadline on one wait.
    pub initial: Duration,
    /// Growth per retry, in [1, 16]. Default 2: each wait doubles.
    pub multiplier: f64,
    /// The largest base delay. Default 10 s: with the attempt cap of 10 the
    /// schedule reaches it (100 ms · 2^7 = 12.8 s), and no deadline worth retrying
    /// within is served by waiting longer.
    pub max: Duration,
    /// How the base delay is randomised. Default [`Jitter::Full`] (see its docs).
    pub jitter: Jitter,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            initial: Duration::from_millis(100),
            multiplier: 2.0,
            max: Duration::from_secs(10),
            jitter: Jitter::Full,
        }
    }
}

impl Backoff {
    /// Checks every field against its documented range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max > BACKOFF_MAX_LIMIT {
            return Err(ConfigError::new(
                "max",
                format!("{:?} is above {BACKOFF_MAX_LIMIT:?}", self.max),
            ));
        }
        if self.initial > self.max {
            return Err(ConfigError::new(
                "initial",
                format!("{:?} is above max ({:?})", self.initial, self.max),
            ));
        }
        let multiplier = self.multiplier;
        if !(1.0..=MULTIPLIER_LIMIT).contains(&multiplier) {
            return Err(ConfigError::new(
                "multiplier",
                format!("{multiplier} is outside [1, {MULTIPLIER_LIMIT}]"),
            ));
        }
        if let Jitter::Proportional(fraction) = self.jitter {
            if !(0.0..=1.0).contains(&fraction) {
                return Err(ConfigError::new(
                    "jitter",
                    format!("proportional fraction {fraction} is outside [0, 1]"),
                ));
            }
        }
        Ok(())
    }

    /// The delay before retry number `retry` (1 = the first retry; 0 is treated as
    /// 1), jittered with `rng`. Always ≤ [`delay_max`](Self::delay_max).
    pub fn delay(&self, retry: u32, rng: &mut Rng) -> Duration {
        let base = duration_nanos(self.base_delay(retry));
        let nanos = match self.jitter {
            Jitter::None => base,
            Jitter::Full => rng.gen_range(0..=base),
            Jitter::Proportional(fraction) => {
                let spread = spread(base, fraction);
                let low = base.saturating_sub(spread);
                low.saturating_add(rng.gen_range(0..=spread.saturating_mul(2)))
            }
        };
        Duration::from_nanos(nanos)
    }

    /// The delay before retry `retry` without jitter: `min(initial ·
    /// multiplier^(retry−1), max)`.
    pub fn base_delay(&self, retry: u32) -> Duration {
        let exponent = retry.saturating_sub(1);
        let max = duration_nanos(self.max) as f64;
        let scaled = duration_nanos(self.initial) as f64 * power(self.multiplier, exponent);
        // `!(a < b)` also catches infinity; NaN cannot arise (all factors ≥ 1 or 0·finite).
        if scaled < max {
            Duration::from_nanos(scaled as u64)
        } else {
            self.max
        }
    }

    /// The largest delay [`delay`](Self::delay) can return: `max × (1 + jitter)`
    /// (rounded down to the nanosecond).
    pub fn delay_max(&self) -> Duration {
        let max = duration_nanos(self.max);
        match self.jitter {
            Jitter::None | Jitter::Full => self.max,
            Jitter::Proportional(fraction) => {
                Duration::from_nanos(max.saturating_add(spread(max, fraction)))
            }
        }
    }
}

/// `base · fraction` in nanoseconds, truncated: monotone in `base`, so a base
/// delay ≤ max never spreads further than max does.
fn spread(base_nanos: u64, fraction: f64) -> u64 {
    (base_nanos as f64 * fraction) as u64
}

/// `base^exponent` by squaring: at most 64 IEEE multiplications, identical on every
/// platform. Saturates to infinity, never overflows.
fn power(base: f64, mut exponent: u32) -> f64 {
    let mut result = 1.0;
    let mut square = base;
    while exponent > 0 {
        if exponent & 1 == 1 {
            result *= square;
        }
        square *= square;
        exponent >>= 1;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SeedSource;
    use proptest::prelude::*;

    #[test]
    fn base_delay_doubles_from_initial_and_stops_at_max() {
        // Proves the default schedule: 100, 200, 400 ms …, capped at 10 s, and
        // retry 0 is treated as the first retry.
        let backoff = Backoff::default();
        let millis: Vec<u128> = (0..=9)
            .map(|retry| backoff.base_delay(retry).as_millis())
            .collect();
        assert_eq!(
            millis,
            [100, 100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]
        );
        assert_eq!(backoff.base_delay(u32::MAX), Duration::from_secs(10));
    }

    #[test]
    fn no_jitter_waits_exactly_the_base_delay() {
        // Proves Jitter::None is deterministic without consuming randomness.
        let backoff = Backoff {
            jitter: Jitter::None,
            ..Backoff::default()
        };
        let mut rng = SeedSource::new(1).stream("backoff");
        assert_eq!(backoff.delay(3, &mut rng), Duration::from_millis(400));
    }

    #[test]
    fn full_jitter_spreads_delays_over_the_whole_window() {
        // Proves full jitter is not clustered: 200 draws for retry 4 (base 800 ms)
        // cover both the bottom and the top tenth of [0, 800 ms].
        let backoff = Backoff::default();
        let mut rng = SeedSource::new(2).stream("backoff");
        let delays: Vec<Duration> = (0..200).map(|_| backoff.delay(4, &mut rng)).collect();
        assert!(delays
            .iter()
            .any(|delay| *delay < Duration::from_millis(80)));
        assert!(delays
            .iter()
            .any(|delay| *delay > Duration::from_millis(720)));
    }

    #[test]
    fn proportional_jitter_stays_within_twenty_percent_of_the_base() {
        // Proves the gRPC A6 rule: base × U(0.8, 1.2), and at the cap up to 1.2 × max.
        let backoff = Backoff {
            jitter: Jitter::Proportional(0.2),
            ..Backoff::default()
        };
        let mut rng = SeedSource::new(3).stream("backoff");
        for _ in 0..200 {
            let delay = backoff.delay(2, &mut rng);
            assert!(delay >= Duration::from_millis(160) && delay <= Duration::from_millis(240));
        }
        assert_eq!(backoff.delay_max(), Duration::from_secs(12));
    }

    #[test]
    fn backoff_config_rejects_values_outside_their_ranges() {
        // Proves validation names the field for each kind of bad value.
        let cases = [
            (
                Backoff {
                    multiplier: 0.5,
                    ..Backoff::default()
                },
                "multiplier",
            ),
            (
                Backoff {
                    multiplier: f64::INFINITY,
                    ..Backoff::default()
                },
                "multiplier",
            ),
            (
                Backoff {
                    initial: Duration::from_secs(11),
                    ..Backoff::default()
                },
                "initial",
            ),
            (
                Backoff {
                    max: Duration::from_secs(7200),
                    ..Backoff::default()
                },
                "max",
            ),
            (
                Backoff {
                    jitter: Jitter::Proportional(1.5),
                    ..Backoff::default()
                },
                "jitter",
            ),
        ];
        assert_eq!(Backoff::default().validate(), Ok(()));
        for (backoff, field) in cases {
            assert_eq!(
                backoff.validate().map_err(|error| error.field()),
                Err(field)
            );
        }
    }

    fn jitter() -> impl Strategy<Value = Jitter> {
        prop_oneof![
            Just(Jitter::None),
            Just(Jitter::Full),
            (0.0f64..=1.0).prop_map(Jitter::Proportional),
        ]
    }

    fn valid_backoff() -> impl Strategy<Value = Backoff> {
        (
            0u64..=BACKOFF_MAX_LIMIT.as_millis() as u64,
            0u64..=BACKOFF_MAX_LIMIT.as_millis() as u64,
            1.0f64..=MULTIPLIER_LIMIT,
            jitter(),
        )
            .prop_map(|(a, b, multiplier, jitter)| Backoff {
                initial: Duration::from_millis(a.min(b)),
                max: Duration::from_millis(a.max(b)),
                multiplier,
                jitter,
            })
    }

    proptest! {
        #[test]
        fn every_delay_is_within_bounds_for_every_retry_and_seed(
            backoff in valid_backoff(),
            retry in prop_oneof![0u32..64, Just(1000u32), Just(u32::MAX)],
            seed in any::<u64>(),
        ) {
            // Proves, for any valid config, retry number (1000 and u32::MAX included)
            // and seed: no panic, base ≤ max, delay ≤ max × (1 + jitter), and the
            // delay is never below the jitter's floor.
            prop_assert_eq!(backoff.validate(), Ok(()));
            let mut rng = SeedSource::new(seed).stream("backoff");
            let base = backoff.base_delay(retry);
            let delay = backoff.delay(retry, &mut rng);
            prop_assert!(base <= backoff.max);
            prop_assert!(delay <= backoff.delay_max(), "{:?} > {:?}", delay, backoff.delay_max());
            let base_nanos = base.as_nanos() as f64;
            let floor_nanos = match backoff.jitter {
                Jitter::None => base_nanos,
                Jitter::Full => 0.0,
                Jitter::Proportional(fraction) => base_nanos * (1.0 - fraction) - 1.0,
            };
            prop_assert!(delay.as_nanos() as f64 >= floor_nanos, "{:?} < {}", delay, floor_nanos);
            let ceiling_nanos = backoff.max.as_nanos() as f64 * match backoff.jitter {
                Jitter::Proportional(fraction) => 1.0 + fraction,
                Jitter::None | Jitter::Full => 1.0,
            };
            prop_assert!(delay.as_nanos() as f64 <= ceiling_nanos + 1.0);
        }

        #[test]
        fn base_delay_never_decreases_as_retries_grow(
            backoff in valid_backoff(),
            retry in 0u32..2000,
        ) {
            // Proves the schedule is monotone, so a later retry never waits less
            // (before jitter) than an earlier one.
            prop_assert!(backoff.base_delay(retry) <= backoff.base_delay(retry + 1));
        }
    }
}
