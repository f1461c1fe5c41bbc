//! End-to-end tests of squall over real loopback TCP live in `tests/`.
//!
//! With feature `metrics`, [`prometheus`] holds the scrape endpoint shared by
//! the `prometheus` example and its test.

#[cfg(feature = "metrics")]
pub mod prometheus;
