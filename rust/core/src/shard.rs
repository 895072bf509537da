//! Shard hashing and layout shared by the bounded tables (the verifier's key records and the
//! limiter's heap store): an identity hasher for keys that are already uniformly random, the
//! 128-bit keyed fingerprints that stand in for id strings, and how a capacity is cut into
//! shards and how much of a full shard eviction keeps.

use std::hash::{BuildHasherDefault, Hasher};

/// Entries per shard we aim for: 7/8 of 2¹⁴ hash-table slots, so a full shard's table is
/// exactly full rather than half empty after a doubling.
pub(crate) const SHARD_TARGET: usize = 14_336;

/// A hasher for keys that are already uniformly random 64-bit values.
#[derive(Default, Clone, Copy)]
pub(crate) struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        // Only reached for non-integer keys, which we do not use; fold them in anyway.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    #[inline]
    fn write_u128(&mut self, n: u128) {
        // The low half is one independent 64-bit hash.
        #[allow(clippy::cast_possible_truncation)]
        let low = n as u64;
        self.0 = low;
    }
}

pub(crate) type IdentityBuild = BuildHasherDefault<IdentityHasher>;

/// A 128-bit keyed fingerprint of an id string: two independent 64-bit hashes. Two `u64`s
/// rather than a `u128`, so a map slot needs 8-byte alignment, not 16.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Fp(pub(crate) u64, pub(crate) u64);

impl std::hash::Hash for Fp {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        // The first half is already a uniformly random 64-bit hash.
        state.write_u64(self.0);
    }
}

/// Two independently seeded hashers, making [`Fp`]s of id strings; the seeds are random per
/// table, so an attacker cannot aim ids at one fingerprint.
#[derive(Debug, Clone)]
pub(crate) struct Fingerprinter(ahash::RandomState, ahash::RandomState);

impl Fingerprinter {
    /// A fresh pair of random seeds.
    pub(crate) fn new() -> Self {
        Self(ahash::RandomState::new(), ahash::RandomState::new())
    }

    /// The fingerprint of `id`.
    #[inline]
    pub(crate) fn of(&self, id: &str) -> Fp {
        Fp(self.0.hash_one(id), self.1.hash_one(id))
    }
}

/// Picks one of `n` shards from a uniformly random 64-bit value.
#[inline]
pub(crate) fn shard_of(h: u64, n: usize) -> usize {
    // Multiply-shift: uniform in 0..n without a division. The result is < n.
    #[allow(clippy::cast_possible_truncation)]
    let i = ((u128::from(h) * n as u128) >> 64) as usize;
    i
}

/// Shard count and per-shard share for a capacity.
pub(crate) fn shard_layout(capacity: usize) -> (usize, usize) {
    let shards = capacity.div_ceil(SHARD_TARGET).max(1);
    let share = capacity.div_ceil(shards).max(1);
    (shards, share)
}

/// How many entries to keep when a full shard makes room: 7/8 of its share.
pub(crate) fn keep_after_eviction(share: usize) -> usize {
    share - (share / 8).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_layout_is_sane() {
        assert_eq!(shard_layout(1), (1, 1));
        let (n, share) = shard_layout(1_000_000);
        assert_eq!(n, 70);
        assert!(share * n >= 1_000_000 && share <= SHARD_TARGET);
        for h in [0, 1, u64::MAX / 2, u64::MAX] {
            assert!(shard_of(h, 70) < 70);
        }
    }

    #[test]
    fn eviction_keeps_seven_eighths_and_always_makes_room() {
        assert_eq!(keep_after_eviction(1), 0);
        assert_eq!(keep_after_eviction(16), 14);
        assert_eq!(keep_after_eviction(SHARD_TARGET), SHARD_TARGET / 8 * 7);
    }

    #[test]
    fn fingerprints_are_keyed() {
        let (a, b) = (Fingerprinter::new(), Fingerprinter::new());
        assert_eq!(a.of("tenant"), a.of("tenant"));
        assert_ne!(a.of("tenant"), a.of("tenant2"));
        assert_ne!(a.of("tenant"), b.of("tenant"));
    }
}
