//! Hedged (backup) requests: if a call is slower than usual, send a second copy to
//! another endpoint and take whichever answers first — bounded by a budget so
//! hedging can never double the load.
//!
//! Only idempotent calls may be hedged: both copies may run. The delay is either
//! fixed (rpcx Failbackup) or a percentile of recent latencies (tower `hedge`),
//! and the extra load is capped by a [`RetryBudget`] whose ratio is
//! `max_extra_ratio` (Finagle `BackupRequestFilter`'s `maxExtraLoad`).

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use super::{BudgetConfig, ConfigError, RetryBudget};

/// The largest latency window accepted (bounds memory and the percentile sort).
pub const LATENCY_WINDOW_LIMIT: usize = 4096;

/// When to send the backup copy.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum HedgeDelay {
    /// After a fixed delay (rpcx Failbackup uses 10 ms).
    Fixed(Duration),
    /// After this quantile of recent latencies, as a fraction in (0, 1]: `0.95`
    /// hedges the slowest 5% of calls. Until the window has `min_samples`
    /// latencies, no hedge is sent.
    Percentile(f64),
}

/// How a client hedges. Defaults and why: `docs/RESILIENCE.md`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HedgePolicy {
    /// When to send the backup copy. Default `Percentile(0.95)`: only the tail is
    /// hedged, which is where hedging pays (Dean & Barroso, "The Tail at Scale").
    pub delay: HedgeDelay,
    /// Hedges allowed per original request, in [0, 1]. Default 0.1: at most 10%
    /// extra load, like Finagle's `BackupRequestFilter`.
    pub max_extra_ratio: f64,
    /// Latencies needed before a percentile delay is trusted. Default 20: a p95
    /// from fewer samples is mostly the maximum.
    pub min_samples: usize,
}

impl Default for HedgePolicy {
    fn default() -> HedgePolicy {
        HedgePolicy {
            delay: HedgeDelay::Percentile(0.95),
            max_extra_ratio: 0.1,
            min_samples: 20,
        }
    }
}

impl HedgePolicy {
    /// Checks every field against its documented range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let HedgeDelay::Percentile(quantile) = self.delay {
            if !(quantile > 0.0 && quantile <= 1.0) {
                return Err(ConfigError::new(
                    "delay",
                    format!("percentile {quantile} is not a fraction in (0, 1]; 0.95 is p95"),
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.max_extra_ratio) {
            return Err(ConfigError::new(
                "max_extra_ratio",
                format!("{} is outside [0, 1]", self.max_extra_ratio),
            ));
        }
        if self.min_samples == 0 || self.min_samples > LATENCY_WINDOW_LIMIT {
            return Err(ConfigError::new(
                "min_samples",
                format!("{} is outside 1..={LATENCY_WINDOW_LIMIT}", self.min_samples),
            ));
        }
        Ok(())
    }

    /// How long to wait before hedging, given recent latencies; `None` means do
    /// not hedge (a percentile delay without `min_samples` latencies yet).
    pub fn hedge_after(&self, latencies: &LatencyWindow) -> Option<Duration> {
        match self.delay {
            HedgeDelay::Fixed(delay) => Some(delay),
            HedgeDelay::Percentile(quantile) => {
                if latencies.len() < self.min_samples {
                    return None;
                }
                latencies.percentile(quantile)
            }
        }
    }

    /// The budget configuration that caps hedges at `max_extra_ratio` of requests:
    /// no reserve (hedging is an optimisation, paid for only by real traffic), the
    /// retry budget's 10 s ttl.
    pub fn budget_config(&self) -> BudgetConfig {
        BudgetConfig {
            ttl: BudgetConfig::default().ttl,
            min_per_sec: 0,
            retry_ratio: self.max_extra_ratio,
        }
    }

    /// A fresh hedge budget: deposit per original request, withdraw per hedge.
    pub fn budget(&self, now: Instant) -> RetryBudget {
        RetryBudget::new(self.budget_config(), now)
    }
}

/// The most recent latencies, in a fixed-size ring, for percentiles.
///
/// Durations are integers, so ordering is exact; the only float is the quantile,
/// turned into a rank once (nearest-rank method: the smallest latency such that at
/// least `quantile` of the window is at or below it).
#[derive(Clone, Debug)]
pub struct LatencyWindow {
    /// Latencies, oldest first, at most `capacity`.
    samples: VecDeque<Duration>,
    /// How many latencies are kept.
    capacity: usize,
}

impl LatencyWindow {
    /// An empty window keeping the last `capacity` latencies.
    ///
    /// # Panics
    /// If `capacity` is 0 or above [`LATENCY_WINDOW_LIMIT`] (a programmer error).
    pub fn new(capacity: usize) -> LatencyWindow {
        assert!(
            (1..=LATENCY_WINDOW_LIMIT).contains(&capacity),
            "latency window capacity {capacity} is outside 1..={LATENCY_WINDOW_LIMIT}"
        );
        LatencyWindow {
            samples: VecDeque::with_capacity(capacity),
            capacity,
        }
    }

    /// Records a latency, evicting the oldest when full.
    pub fn record(&mut self, latency: Duration) {
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back(latency);
    }

    /// Latencies held.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether no latency has been recorded.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The nearest-rank `quantile` (a fraction in (0, 1], clamped) of the window;
    /// `None` when empty. Sorting a copy costs O(n log n) with n ≤ 4096.
    pub fn percentile(&self, quantile: f64) -> Option<Duration> {
        if self.samples.is_empty() {
            return None;
        }
        let count = self.samples.len();
        let quantile = if quantile.is_nan() {
            1.0
        } else {
            quantile.clamp(0.0, 1.0)
        };
        // rank = ceil(q · n) in 1..=n; exact for n ≤ 4096.
        let rank = ((quantile * count as f64).ceil() as usize).clamp(1, count);
        let mut sorted: Vec<Duration> = self.samples.iter().copied().collect();
        sorted.sort_unstable();
        sorted.get(rank - 1).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_uses_the_nearest_rank_of_the_recent_window() {
        // Proves nearest-rank percentiles over 1..=100 ms and that old latencies
        // leave the window.
        let mut window = LatencyWindow::new(100);
        assert_eq!(window.percentile(0.5), None);
        for millis in (1..=100).rev() {
            window.record(Duration::from_millis(millis));
        }
        assert_eq!(window.percentile(0.5), Some(Duration::from_millis(50)));
        assert_eq!(window.percentile(0.95), Some(Duration::from_millis(95)));
        assert_eq!(window.percentile(1.0), Some(Duration::from_millis(100)));
        assert_eq!(window.percentile(0.0), Some(Duration::from_millis(1)));
        for _ in 0..100 {
            window.record(Duration::from_secs(1));
        }
        assert_eq!(window.len(), 100);
        assert_eq!(window.percentile(0.01), Some(Duration::from_secs(1)));
    }

    #[test]
    fn percentile_hedging_waits_for_enough_samples() {
        // Proves no hedge is sent on a percentile from fewer than min_samples
        // latencies, and a fixed delay needs none.
        let policy = HedgePolicy::default();
        let mut window = LatencyWindow::new(64);
        for _ in 0..19 {
            window.record(Duration::from_millis(10));
        }
        assert_eq!(policy.hedge_after(&window), None);
        window.record(Duration::from_millis(10));
        assert_eq!(policy.hedge_after(&window), Some(Duration::from_millis(10)));
        let fixed = HedgePolicy {
            delay: HedgeDelay::Fixed(Duration::from_millis(10)),
            ..policy
        };
        assert_eq!(
            fixed.hedge_after(&LatencyWindow::new(1)),
            Some(Duration::from_millis(10))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn hedges_are_capped_at_ten_percent_of_requests() {
        // Proves the hedge budget: no reserve, so nothing before traffic, and 1000
        // requests allow exactly 100 hedges.
        let t0 = Instant::now();
        let mut budget = HedgePolicy::default().budget(t0);
        assert!(!budget.try_withdraw(t0));
        for _ in 0..1000 {
            budget.deposit(t0);
        }
        let mut hedges = 0;
        while hedges < 10_000 && budget.try_withdraw(t0) {
            hedges += 1;
        }
        assert_eq!(hedges, 100);
    }

    #[test]
    fn hedge_policy_rejects_values_outside_their_ranges() {
        // Proves validation names the field for each kind of bad value.
        let base = HedgePolicy::default();
        let cases = [
            (
                HedgePolicy {
                    delay: HedgeDelay::Percentile(95.0),
                    ..base
                },
                "delay",
            ),
            (
                HedgePolicy {
                    max_extra_ratio: 1.5,
                    ..base
                },
                "max_extra_ratio",
            ),
            (
                HedgePolicy {
                    min_samples: 0,
                    ..base
                },
                "min_samples",
            ),
        ];
        assert_eq!(base.validate(), Ok(()));
        for (policy, field) in cases {
            assert_eq!(policy.validate().map_err(|error| error.field()), Err(field));
        }
    }
}
