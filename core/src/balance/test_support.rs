//! Helpers shared by the balancer unit tests.

use tokio::time::Instant;

use super::{Endpoint, Pick};

/// Endpoints named "a", "b", "c", ... (sorted), each of weight 1.
pub(crate) fn endpoints(count: usize) -> Vec<Endpoint> {
    assert!(count <= 26, "test endpoints are single letters");
    (0..count)
        .map(|index| Endpoint::new(((b'a' + index as u8) as char).to_string(), 1))
        .collect()
}

/// Endpoints with the given weights, named as in [`endpoints`].
pub(crate) fn weighted(weights: &[u32]) -> Vec<Endpoint> {
    endpoints(weights.len())
        .into_iter()
        .zip(weights)
        .map(|(endpoint, &weight)| Endpoint { weight, ..endpoint })
        .collect()
}

/// Every endpoint may be chosen.
pub(crate) fn all_available(_: usize) -> bool {
    true
}

/// A base instant; tests only ever use offsets from it.
pub(crate) fn t0() -> Instant {
    Instant::now()
}

/// A keyless pick at `now` with the given availability.
pub(crate) fn pick_with<'a>(now: Instant, available: &'a dyn Fn(usize) -> bool) -> Pick<'a> {
    Pick {
        key: None,
        now,
        available,
    }
}
