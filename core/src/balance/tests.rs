//! Properties every balancer must have, checked over all kinds at once.

use std::time::Duration;

use proptest::prelude::*;
use rand::SeedableRng;
use tokio::time::Instant;

use super::test_support::endpoints;
use super::{build, Balancer, BalancerKind, Endpoint, Pick};
use crate::rng::Rng;

/// Drives `balancer` through `picks` picks with a fixed availability mask and
/// key pattern, finishing each call 5 ms later; returns the picks.
fn run(
    balancer: &mut dyn Balancer,
    set: &[Endpoint],
    mask: &[bool],
    picks: usize,
) -> Vec<Option<usize>> {
    let start = Instant::now();
    let available = |index: usize| mask[index];
    (0..picks)
        .map(|step| {
            let now = start + Duration::from_millis(step as u64);
            let key = format!("key-{}", step % 7);
            let pick = Pick {
                key: (step % 2 == 0).then_some(key.as_str()),
                now,
                available: &available,
            };
            let chosen = balancer.pick(&pick);
            if let Some(index) = chosen {
                balancer.on_start(&set[index].addr, now);
                balancer.on_finish(&set[index].addr, Duration::from_millis(5), now);
            }
            chosen
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn no_balancer_ever_picks_an_unavailable_endpoint(
        mask in proptest::collection::vec(any::<bool>(), 1..10),
        seed in any::<u64>(),
    ) {
        // Proves the core safety property for all six kinds: a pick is always an
        // available endpoint, and it is None exactly when none is available.
        let set = endpoints(mask.len());
        let any_available = mask.contains(&true);
        for kind in BalancerKind::ALL {
            let mut balancer = build(kind, Rng::seed_from_u64(seed));
            balancer.update(&set);
            for chosen in run(balancer.as_mut(), &set, &mask, 50) {
                match chosen {
                    Some(index) => prop_assert!(mask[index], "{kind} picked unavailable {index}"),
                    None => prop_assert!(!any_available, "{kind} returned None with {mask:?}"),
                }
            }
        }
    }
}

#[test]
fn same_seed_gives_the_same_pick_sequence_for_every_kind() {
    // Proves determinism, the product's first rule: two balancers of the same
    // kind built from the same seed make identical choices; for the random kinds
    // a different seed makes different ones (so the seed is really used).
    let set = endpoints(6);
    let mask = [true, true, false, true, true, true];
    for kind in BalancerKind::ALL {
        let mut first = build(kind, Rng::seed_from_u64(11));
        let mut second = build(kind, Rng::seed_from_u64(11));
        first.update(&set);
        second.update(&set);
        let picks = run(first.as_mut(), &set, &mask, 500);
        assert_eq!(picks, run(second.as_mut(), &set, &mask, 500), "{kind}");
        if matches!(kind, BalancerKind::Random | BalancerKind::P2cEwma) {
            let mut other = build(kind, Rng::seed_from_u64(12));
            other.update(&set);
            assert_ne!(picks, run(other.as_mut(), &set, &mask, 500), "{kind}");
        }
    }
}

#[test]
fn empty_endpoint_set_gives_none_for_every_kind() {
    // Proves no balancer indexes into an empty set: before any endpoint is
    // known (or after all are deregistered) every pick is None.
    for kind in BalancerKind::ALL {
        let mut balancer = build(kind, Rng::seed_from_u64(1));
        assert_eq!(
            run(balancer.as_mut(), &[], &[], 3),
            [None, None, None],
            "{kind}"
        );
        balancer.update(&endpoints(2));
        balancer.update(&[]);
        assert_eq!(
            run(balancer.as_mut(), &[], &[], 3),
            [None, None, None],
            "{kind}"
        );
    }
}

#[test]
#[should_panic(expected = "sorted by addr and deduplicated")]
fn update_rejects_an_unsorted_endpoint_list() {
    // Proves the update precondition is checked, not assumed: an unsorted list
    // (a caller bug that would silently break address-keyed state) panics.
    let mut balancer = build(BalancerKind::RoundRobin, Rng::seed_from_u64(1));
    balancer.update(&[Endpoint::new("b", 1), Endpoint::new("a", 1)]);
}

#[test]
fn normalize_sorts_and_keeps_the_first_of_each_address() {
    // Proves the helper produces what update requires from a registry's raw list.
    let mut raw = vec![
        Endpoint::new("c", 1),
        Endpoint::new("a", 2),
        Endpoint::new("c", 3),
    ];
    Endpoint::normalize(&mut raw);
    assert_eq!(raw, [Endpoint::new("a", 2), Endpoint::new("c", 1)]);
}
