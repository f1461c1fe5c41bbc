//! Seeded randomness. Every random choice squall makes (balancer picks, jitter)
//! comes from a [`SeedSource`]: a root seed from which independent ChaCha streams
//! are derived *by name*, so adding a component never shifts another's stream.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The random generator used throughout squall: ChaCha8, stable by specification.
pub type Rng = ChaCha8Rng;

/// A root seed from which named, independent random streams are derived.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SeedSource {
    /// The root seed.
    seed: u64,
}

impl SeedSource {
    /// A source rooted at `seed` (simulation, tests, replays).
    pub fn new(seed: u64) -> SeedSource {
        SeedSource { seed }
    }

    /// A source seeded once from the operating system, for production.
    ///
    /// This is the one place squall takes OS randomness. It uses std's per-process
    /// random hasher keys (drawn from the OS) so no extra dependency is needed.
    #[allow(clippy::disallowed_types)] // The one intended source of OS entropy.
    pub fn from_os() -> SeedSource {
        use std::hash::{BuildHasher, Hasher};
        // Allowed: production seeding is the single intended source of OS entropy.
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(0x5351_5541_4c4c);
        SeedSource::new(hasher.finish())
    }

    /// The root seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The stream named `name` (for example `"client-1/balancer"`).
    pub fn stream(&self, name: &str) -> Rng {
        ChaCha8Rng::seed_from_u64(self.seed ^ fnv1a(name.as_bytes()))
    }

    /// A child source for a named component; its streams are independent of the parent's.
    pub fn child(&self, name: &str) -> SeedSource {
        SeedSource::new(splitmix(self.seed ^ fnv1a(name.as_bytes())))
    }
}

/// FNV-1a 64: a stable, specified hash for deriving stream seeds from names.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// SplitMix64 finaliser: spreads nearby seeds far apart.
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngCore;

    #[test]
    fn named_streams_are_reproducible_and_independent() {
        let source = SeedSource::new(7);
        let a1 = source.stream("a").next_u64();
        let a2 = source.stream("a").next_u64();
        let b = source.stream("b").next_u64();
        assert_eq!(a1, a2);
        assert_ne!(a1, b);
        assert_ne!(source.child("x").seed(), source.child("y").seed());
    }
}
