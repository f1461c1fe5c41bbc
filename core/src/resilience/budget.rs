//! A retry budget: retries (and hedges) may add at most a fixed fraction of load.
//!
//! # Why a budget and not just a maximum number of attempts
//!
//! "Retry up to 3 times" looks harmless per call, but it multiplies load exactly
//! when the service is least able to take it. When a backend starts failing every
//! request, each client turns one call into three; if the backend calls another
//! service that also retries three times, one user request becomes nine, and so on
//! down the stack. This *retry storm* keeps an overloaded service overloaded long
//! after the original cause is gone.
//!
//! A budget bounds the *total* extra load instead: every original request deposits
//! a fraction of a token (`retry_ratio`, 20% by default), every retry withdraws a
//! whole one, and a small reserve (`min_per_sec` × `ttl`) lets clients with little
//! traffic retry at all. When a backend is healthy the rare retry is always
//! affordable; when it fails everything, retries stop at about 20% extra load
//! instead of 200%. The attempt cap still applies per call; the budget applies to
//! the whole client.
//!
//! These are the semantics of Finagle's `RetryBudget` and tower's `TpsBudget`
//! (same defaults: ttl 10 s, 10 retries/s, 20%): a token bucket over ten time slots,
//! each deposit or withdrawal counting until its slot is reused a ttl later. It
//! differs from tower in being pure (time is passed in, no atomics or locks), in
//! counting milli-tokens so ratios like 0.3 are exact rather than truncated
//! (tower withdraws `⌊1/0.3⌋ = 3` tokens, allowing 33%), in clearing the slot it
//! moves into (tower briefly counts a slot from one ttl ago), and in skipping any
//! number of idle slots in constant time.

use std::time::Duration;

use tokio::time::Instant;

use super::ConfigError;

/// Time slots the ttl is divided into (as in tower and Finagle).
const SLOTS: usize = 10;
/// Milli-tokens per token: one retry withdraws this many.
const MILLI_TOKENS_PER_RETRY: i64 = 1000;
/// The shortest ttl accepted (Finagle's bound).
pub const TTL_MIN: Duration = Duration::from_secs(1);
/// The longest ttl accepted (Finagle's bound).
pub const TTL_MAX: Duration = Duration::from_secs(60);
/// The largest `min_per_sec` accepted.
pub const MIN_PER_SEC_LIMIT: u32 = 1_000_000;
/// The largest `retry_ratio` accepted (Finagle's bound).
pub const RETRY_RATIO_LIMIT: f64 = 1000.0;

/// How big a [`RetryBudget`] is. Defaults are Finagle's and tower's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BudgetConfig {
    /// How long a deposit (or withdrawal) counts, in [1 s, 60 s]. Default 10 s:
    /// long enough to smooth bursts, short enough that a recovered service gets its
    /// retry allowance back quickly.
    pub ttl: Duration,
    /// Retries per second allowed regardless of traffic, so a client making one call
    /// a minute can still retry it. Default 10.
    pub min_per_sec: u32,
    /// Retries allowed per original request, in [0, 1000]: 0.2 = one retry for every
    /// five requests. Default 0.2 (extra load from retries ≤ 20%).
    pub retry_ratio: f64,
}

impl Default for BudgetConfig {
    fn default() -> BudgetConfig {
        BudgetConfig {
            ttl: Duration::from_secs(10),
            min_per_sec: 10,
            retry_ratio: 0.2,
        }
    }
}

impl BudgetConfig {
    /// Checks every field against its documented range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.ttl < TTL_MIN || self.ttl > TTL_MAX {
            return Err(ConfigError::new(
                "ttl",
                format!("{:?} is outside [{TTL_MIN:?}, {TTL_MAX:?}]", self.ttl),
            ));
        }
        if self.min_per_sec > MIN_PER_SEC_LIMIT {
            return Err(ConfigError::new(
                "min_per_sec",
                format!("{} is above {MIN_PER_SEC_LIMIT}", self.min_per_sec),
            ));
        }
        if !(0.0..=RETRY_RATIO_LIMIT).contains(&self.retry_ratio) {
            return Err(ConfigError::new(
                "retry_ratio",
                format!(
                    "{} is outside [0, {RETRY_RATIO_LIMIT}]; 0.2 allows one retry per five requests",
                    self.retry_ratio
                ),
            ));
        }
        Ok(())
    }
}

/// A token bucket over ten slots of `ttl / 10`, on passed-in time.
///
/// Deposits and withdrawals go into the current slot; a slot's net balance counts
/// until the clock comes round to that slot again and clears it, that is for
/// between 0.9 × ttl and ttl. The balance is the reserve plus the sum of all slots.
#[derive(Clone, Debug)]
pub struct RetryBudget {
    /// The configuration, validated.
    config: BudgetConfig,
    /// Net milli-tokens deposited (positive) and withdrawn (negative) per slot.
    slots: [i64; SLOTS],
    /// The slot now being written.
    current: usize,
    /// When the current slot began (aligned to whole slots since construction).
    current_started: Instant,
    /// The time one slot covers: `ttl / 10`.
    slot_len: Duration,
    /// Milli-tokens always available per ttl: `min_per_sec × ttl × 1000`.
    reserve: i64,
    /// Milli-tokens one request deposits: `round(retry_ratio × 1000)`.
    deposit_amount: i64,
}

impl RetryBudget {
    /// A budget with an empty history, its first slot starting at `now`.
    ///
    /// # Panics
    /// If `config` fails [`BudgetConfig::validate`] (a programmer error).
    pub fn new(config: BudgetConfig, now: Instant) -> RetryBudget {
        if let Err(error) = config.validate() {
            panic!("invalid retry budget config: {error}");
        }
        let ttl_millis = i64::try_from(config.ttl.as_millis()).unwrap_or(i64::MAX);
        // min_per_sec × ttl seconds × 1000 milli-tokens = min_per_sec × ttl millis.
        let reserve = i64::from(config.min_per_sec).saturating_mul(ttl_millis);
        // ≤ 1000 × 1000, exact for ratios with up to three decimals.
        let deposit_amount = (config.retry_ratio * MILLI_TOKENS_PER_RETRY as f64).round() as i64;
        RetryBudget {
            config,
            slots: [0; SLOTS],
            current: 0,
            current_started: now,
            slot_len: config.ttl / SLOTS as u32,
            reserve,
            deposit_amount,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &BudgetConfig {
        &self.config
    }

    /// Records an original request (not a retry): earns `retry_ratio` of a retry.
    pub fn deposit(&mut self, now: Instant) {
        self.advance(now);
        self.slots[self.current] = self.slots[self.current].saturating_add(self.deposit_amount);
    }

    /// Takes one retry from the budget; `false` (and nothing taken) if it is spent.
    pub fn try_withdraw(&mut self, now: Instant) -> bool {
        self.advance(now);
        if self.balance() < MILLI_TOKENS_PER_RETRY {
            return false;
        }
        self.slots[self.current] = self.slots[self.current].saturating_sub(MILLI_TOKENS_PER_RETRY);
        true
    }

    /// Whole retries the budget would allow right now (for traces and tests).
    pub fn available(&mut self, now: Instant) -> u64 {
        self.advance(now);
        u64::try_from(self.balance() / MILLI_TOKENS_PER_RETRY).unwrap_or(0)
    }

    /// The reserve plus every live slot, in milli-tokens.
    fn balance(&self) -> i64 {
        self.slots
            .iter()
            .fold(self.reserve, |sum, slot| sum.saturating_add(*slot))
    }

    /// Moves the current slot forward to the one containing `now`, clearing every
    /// slot it enters (their contents are a ttl old). Constant time however long
    /// the budget sat idle; a `now` earlier than the current slot changes nothing.
    fn advance(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.current_started);
        let slot_nanos = self.slot_len.as_nanos();
        let steps = elapsed.as_nanos() / slot_nanos;
        if steps == 0 {
            return;
        }
        for _ in 0..steps.min(SLOTS as u128) {
            self.current = (self.current + 1) % SLOTS;
            self.slots[self.current] = 0;
        }
        // The remainder is below one slot (≤ 6 s), so it fits in u64 nanoseconds.
        let into_slot = Duration::from_nanos((elapsed.as_nanos() % slot_nanos) as u64);
        self.current_started = now.checked_sub(into_slot).unwrap_or(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Withdraws until refused; returns how many succeeded (bounded).
    fn drain(budget: &mut RetryBudget, now: Instant) -> u32 {
        let mut taken = 0;
        while taken < 1_000_000 && budget.try_withdraw(now) {
            taken += 1;
        }
        taken
    }

    #[tokio::test(start_paused = true)]
    async fn with_no_requests_only_the_reserve_can_be_retried() {
        // Proves the floor: 0 requests allow exactly min_per_sec × ttl = 10 × 10 = 100
        // retries, then the 101st is refused.
        let t0 = Instant::now();
        let mut budget = RetryBudget::new(BudgetConfig::default(), t0);
        assert_eq!(budget.available(t0), 100);
        assert_eq!(drain(&mut budget, t0), 100);
        assert!(!budget.try_withdraw(t0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_thousand_requests_earn_two_hundred_more_retries() {
        // Proves the ratio: 1000 deposits at 20% add exactly 200 retries to the 100
        // of the reserve.
        let t0 = Instant::now();
        let mut budget = RetryBudget::new(BudgetConfig::default(), t0);
        for _ in 0..1000 {
            budget.deposit(t0);
        }
        assert_eq!(drain(&mut budget, t0), 300);
    }

    #[tokio::test(start_paused = true)]
    async fn ratios_that_are_not_unit_fractions_are_exact() {
        // Proves the milli-token arithmetic: at 0.3, 1000 requests earn 300 retries
        // (tower's integer withdraw of ⌊1/0.3⌋ = 3 would allow 333).
        let t0 = Instant::now();
        let config = BudgetConfig {
            min_per_sec: 0,
            retry_ratio: 0.3,
            ..BudgetConfig::default()
        };
        let mut budget = RetryBudget::new(config, t0);
        for _ in 0..1000 {
            budget.deposit(t0);
        }
        assert_eq!(drain(&mut budget, t0), 300);
    }

    #[tokio::test(start_paused = true)]
    async fn deposits_expire_after_the_ttl() {
        // Proves deposits count for between 0.9 × ttl and ttl: still there 9 s after
        // being made at the start of a slot, gone at 10 s.
        let t0 = Instant::now();
        let config = BudgetConfig {
            min_per_sec: 0,
            ..BudgetConfig::default()
        };
        let mut budget = RetryBudget::new(config, t0);
        for _ in 0..50 {
            budget.deposit(t0);
        }
        assert_eq!(budget.available(t0 + Duration::from_millis(9_999)), 10);
        assert_eq!(budget.available(t0 + Duration::from_secs(10)), 0);
        assert!(!budget.try_withdraw(t0 + Duration::from_secs(10)));
    }

    #[tokio::test(start_paused = true)]
    async fn spent_reserve_comes_back_after_the_ttl() {
        // Proves withdrawals expire too: a drained reserve is whole again a ttl later,
        // and not before.
        let t0 = Instant::now();
        let mut budget = RetryBudget::new(BudgetConfig::default(), t0);
        assert_eq!(drain(&mut budget, t0), 100);
        assert_eq!(budget.available(t0 + Duration::from_millis(9_999)), 0);
        assert_eq!(budget.available(t0 + Duration::from_secs(10)), 100);
    }

    #[tokio::test(start_paused = true)]
    async fn only_deposits_within_the_window_count() {
        // Proves the sliding window: deposits spread over 15 s, the oldest slots
        // expire while recent ones still count.
        let t0 = Instant::now();
        let config = BudgetConfig {
            min_per_sec: 0,
            retry_ratio: 1.0,
            ..BudgetConfig::default()
        };
        let mut budget = RetryBudget::new(config, t0);
        for second in 0..15 {
            budget.deposit(t0 + Duration::from_secs(second));
        }
        // At 15 s the slots for seconds 6..=14 are live (second 5's slot was cleared
        // when the clock came round to it at 15 s).
        assert_eq!(budget.available(t0 + Duration::from_secs(15)), 9);
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_idle_period_clears_everything_in_constant_time() {
        // Proves that a budget idle for far longer than its ttl (a year) forgets all
        // history and keeps working, without walking every elapsed slot.
        let t0 = Instant::now();
        let mut budget = RetryBudget::new(BudgetConfig::default(), t0);
        for _ in 0..1000 {
            budget.deposit(t0);
        }
        let later = t0 + Duration::from_secs(365 * 24 * 3600);
        assert_eq!(budget.available(later), 100);
        budget.deposit(later);
        assert!(budget.try_withdraw(later));
    }

    #[tokio::test(start_paused = true)]
    async fn a_zero_ratio_allows_only_the_reserve() {
        // Proves retry_ratio 0 makes deposits worthless (tower's "no percent" case).
        let t0 = Instant::now();
        let config = BudgetConfig {
            min_per_sec: 1,
            ttl: Duration::from_secs(1),
            retry_ratio: 0.0,
        };
        let mut budget = RetryBudget::new(config, t0);
        for _ in 0..100 {
            budget.deposit(t0);
        }
        assert_eq!(drain(&mut budget, t0), 1);
    }

    #[test]
    fn budget_config_rejects_values_outside_their_ranges() {
        // Proves validation names the field for each kind of bad value.
        let base = BudgetConfig::default();
        let cases = [
            (
                BudgetConfig {
                    ttl: Duration::from_millis(999),
                    ..base
                },
                "ttl",
            ),
            (
                BudgetConfig {
                    ttl: Duration::from_secs(61),
                    ..base
                },
                "ttl",
            ),
            (
                BudgetConfig {
                    retry_ratio: -0.1,
                    ..base
                },
                "retry_ratio",
            ),
            (
                BudgetConfig {
                    retry_ratio: f64::NAN,
                    ..base
                },
                "retry_ratio",
            ),
            (
                BudgetConfig {
                    min_per_sec: u32::MAX,
                    ..base
                },
                "min_per_sec",
            ),
        ];
        assert_eq!(base.validate(), Ok(()));
        for (config, field) in cases {
            assert_eq!(config.validate().map_err(|error| error.field()), Err(field));
        }
    }
}
