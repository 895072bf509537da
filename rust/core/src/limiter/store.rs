//! Where buckets live: the [`BucketStore`] trait the GCRA arithmetic runs over, and
//! [`HeapStore`], the sharded heap maps of one process.
//!
//! [`HeapStore`] keys buckets by a 128-bit keyed fingerprint (two independently seeded
//! `ahash`es) of the id string, kept in sharded maps: a lookup by id takes one shard read
//! lock; the write lock is taken only to insert. Storing the fingerprint instead of the string
//! avoids a string comparison; a collision (probability about n² / 2¹²⁹ for n ids, with seeds
//! an attacker does not know) would make two ids share a bucket.
//!
//! Each bucket is its own small allocation (`Arc<AtomicU64>`), so a caller that charges the
//! same id again and again (the verifier's cached key records) can keep a [`BucketHandle`] and
//! skip the fingerprint, the lock and the lookup. A bucket leaves its map only by a
//! compare-and-swap of its TAT to a sentinel (`EVICTED`), under the shard's write lock; a
//! handle that finds the sentinel looks its id up again (and puts the same bucket back if the
//! id has none), so there is never more than one live bucket per id and GCRA's bound holds.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::error::{CoreError, CoreResult};
use crate::shard::{keep_after_eviction, shard_layout, shard_of, Fingerprinter, Fp, IdentityBuild};

use super::gcra::tat_of;

/// Storage for GCRA buckets: one TAT (a `u64`, see [`super::gcra`]) per id.
///
/// The arithmetic ([`super::gcra::acquire`]) is written once against this trait, so the same
/// code runs over [`HeapStore`] (heap maps, one process) or [`super::SlotStore`] (a fixed table
/// of atomics in memory the caller provides).
pub trait BucketStore {
    /// Applies one step to `id`'s bucket atomically and returns its answer.
    ///
    /// `step` gets the bucket's word (its TAT and the tag of the quota that wrote it, see
    /// [`super::gcra`]; 0 for a bucket the store does not hold: a full one) and returns an
    /// answer and the new word, `None` to leave the bucket unchanged; a new word is at most
    /// [`super::gcra::MAX_TAT`]. It may run more than once when another update wins a race;
    /// the answer returned is that of the run whose word the bucket took (or that changed
    /// nothing). `now` (monotonic ns, the time `step` decides at) tells the store which
    /// buckets are idle ([`super::gcra::tat_of`] of the word `<= now`), should it have to
    /// make room.
    fn update<R>(&self, id: &str, now: u64, step: impl FnMut(u64) -> (R, Option<u64>)) -> R;

    /// Buckets currently held.
    fn len(&self) -> usize;

    /// Whether no bucket is held.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most buckets held.
    fn capacity(&self) -> usize;
}

/// The TAT of a bucket that has left its map (evicted). No real TAT reaches it:
/// [`super::gcra::decide`] caps new TATs one below.
pub(crate) const EVICTED: u64 = u64::MAX;

/// Runs `step` against a bucket, retrying the compare-and-swap until it sticks; `None` if
/// the bucket has been evicted (then nothing was taken). Always inlined: it is the hot path
/// of every charge, and with several callers the compiler would otherwise make it a call.
#[allow(clippy::inline_always)] // measured: criterion try_acquire
#[inline(always)]
fn update_bucket<R>(
    bucket: &AtomicU64,
    step: &mut impl FnMut(u64) -> (R, Option<u64>),
) -> Option<R> {
    let mut tat = bucket.load(Ordering::Acquire);
    loop {
        if tat == EVICTED {
            return None;
        }
        let (answer, new_tat) = step(tat);
        let Some(new_tat) = new_tat else {
            return Some(answer);
        };
        match bucket.compare_exchange_weak(tat, new_tat, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Some(answer),
            Err(actual) => tat = actual,
        }
    }
}

/// One bucket: its TAT, or [`EVICTED`].
type Bucket = Arc<AtomicU64>;

type BucketMap = HashMap<Fp, Bucket, IdentityBuild>;

/// Tells stores apart, so that a [`BucketHandle`] is only used with its own.
pub(crate) static NEXT_STORE_ID: AtomicU64 = AtomicU64::new(0);

/// A reference to one id's bucket in one [`HeapStore`], for charging it again without a
/// lookup: see [`super::Limiter::try_acquire_handle_at`]. 16 bytes: it is kept with every
/// cached key record.
#[derive(Debug, Clone)]
pub struct BucketHandle {
    store: u64,
    bucket: Bucket,
}

/// Buckets in sharded heap maps, evicting idle buckets first when a shard is full.
#[derive(Debug)]
pub struct HeapStore {
    shards: Box<[RwLock<BucketMap>]>,
    share: usize,
    fingerprints: Fingerprinter,
    /// This store's number, for [`BucketHandle`]s.
    id: u64,
}

impl HeapStore {
    /// A store holding at most about `capacity` buckets.
    ///
    /// # Errors
    /// [`CoreError::InvalidArgument`] if `capacity` is 0.
    pub fn new(capacity: usize) -> CoreResult<Self> {
        if capacity == 0 {
            return Err(CoreError::InvalidArgument("capacity must be at least 1"));
        }
        let (n, share) = shard_layout(capacity);
        let shards = (0..n)
            .map(|_| RwLock::new(BucketMap::default()))
            .collect::<Vec<_>>()
            .into_boxed_slice();
        Ok(Self {
            shards,
            share,
            fingerprints: Fingerprinter::new(),
            id: NEXT_STORE_ID.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// [`BucketStore::update`], also returning a handle on the bucket it updated. Pass the
    /// handle this returned for the same `id` before, if any: if its bucket was evicted and
    /// `id` has no other, it is put back rather than replaced, so the old handle works again.
    /// (A handle of another id would make the two ids share one bucket: stricter, never
    /// looser.)
    pub fn update_with_handle<R>(
        &self,
        id: &str,
        now: u64,
        previous: Option<&BucketHandle>,
        step: impl FnMut(u64) -> (R, Option<u64>),
    ) -> (R, BucketHandle) {
        let revive = previous.filter(|h| h.store == self.id).map(|h| &h.bucket);
        self.update_by_id(id, now, revive, step, |bucket| BucketHandle {
            store: self.id,
            bucket: bucket.clone(),
        })
    }

    /// Updates the bucket behind `handle` with no lookup and no lock: one atomic
    /// compare-and-swap. `None`, having run no step that stuck, if the handle is another
    /// store's or its bucket was evicted; then call [`HeapStore::update_with_handle`].
    #[inline]
    pub fn update_handle<R>(
        &self,
        handle: &BucketHandle,
        mut step: impl FnMut(u64) -> (R, Option<u64>),
    ) -> Option<R> {
        if handle.store != self.id {
            return None;
        }
        update_bucket(&handle.bucket, &mut step)
    }

    /// The lookup-by-id path: updates `id`'s bucket (creating it, or reviving `revive` if
    /// that is `id`'s evicted bucket) and returns `keep` of it.
    #[inline]
    fn update_by_id<R, K>(
        &self,
        id: &str,
        now: u64,
        revive: Option<&Bucket>,
        mut step: impl FnMut(u64) -> (R, Option<u64>),
        keep: impl FnOnce(&Bucket) -> K,
    ) -> (R, K) {
        let fp = self.fingerprints.of(id);
        let shard = &self.shards[shard_of(fp.1, self.shards.len())];
        {
            let map = shard.read();
            if let Some(bucket) = map.get(&fp) {
                // Buckets in the map are never evicted while its lock is held.
                if let Some(answer) = update_bucket(bucket, &mut step) {
                    return (answer, keep(bucket));
                }
            }
        }
        self.insert_and_update(fp, shard, now, revive, step, keep)
    }

    /// The slow half of [`HeapStore::update_by_id`]: `fp` has no bucket (or its bucket was
    /// just evicted), so take the shard's write lock and make one. Out of line, so the read
    /// path's compare-and-swap loop stays inline in every caller.
    #[cold]
    #[inline(never)]
    fn insert_and_update<R, K>(
        &self,
        fp: Fp,
        shard: &RwLock<BucketMap>,
        now: u64,
        revive: Option<&Bucket>,
        mut step: impl FnMut(u64) -> (R, Option<u64>),
        keep: impl FnOnce(&Bucket) -> K,
    ) -> (R, K) {
        let mut map = shard.write();
        if !map.contains_key(&fp) && map.len() >= self.share {
            self.evict(&mut map, now);
        }
        let bucket = map.entry(fp).or_insert_with(|| match revive {
            // Only this shard's write lock ever takes a bucket out of EVICTED.
            Some(b) if b.load(Ordering::Acquire) == EVICTED => {
                b.store(0, Ordering::Release);
                b.clone()
            }
            _ => Arc::new(AtomicU64::new(0)),
        });
        // No bucket in the map is EVICTED while its shard is locked, so the update answers;
        // the fallback (a full bucket's answer, nothing stored) cannot happen.
        let answer = update_bucket(bucket, &mut step).unwrap_or_else(|| step(0).0);
        (answer, keep(bucket))
    }

    /// Makes room in a full shard: drops idle (full) buckets, then, if that was not enough,
    /// those closest to full, down to 7/8 of the share so the work is amortised.
    ///
    /// A bucket is dropped only if a compare-and-swap of the TAT it was judged by to
    /// [`EVICTED`] succeeds: a handle charging it meanwhile keeps it (or, coming second, sees
    /// the sentinel and looks its id up again).
    fn evict(&self, map: &mut BucketMap, now: u64) {
        let retire = |bucket: &AtomicU64, tat: u64| {
            bucket
                .compare_exchange(tat, EVICTED, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        };
        map.retain(|_, b| {
            let tat = b.load(Ordering::Acquire);
            tat_of(tat) > now || !retire(b, tat)
        });
        let keep = keep_after_eviction(self.share);
        if map.len() > keep {
            let mut tats: Vec<u64> = map
                .values()
                .map(|b| tat_of(b.load(Ordering::Relaxed)))
                .collect();
            let drop = tats.len() - keep;
            let (_, &mut threshold, _) = tats.select_nth_unstable(drop - 1);
            let mut dropped = 0;
            map.retain(|_, b| {
                let tat = b.load(Ordering::Acquire);
                if dropped < drop && tat_of(tat) <= threshold && retire(b, tat) {
                    dropped += 1;
                    false
                } else {
                    true
                }
            });
        }
    }
}

impl BucketStore for HeapStore {
    #[inline]
    fn update<R>(&self, id: &str, now: u64, step: impl FnMut(u64) -> (R, Option<u64>)) -> R {
        self.update_by_id(id, now, None, step, |_| ()).0
    }

    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }

    fn capacity(&self) -> usize {
        self.share * self.shards.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::limiter::tests::setup;
    use crate::limiter::{Limiter, Quota};

    #[test]
    fn eviction_drops_idle_buckets_first() {
        let (clock, limiter) = setup(16);
        let q = Quota::new(1.0, 2).unwrap();
        // One busy bucket, then many idle ones.
        assert!(limiter.try_acquire("busy", &q, 2).allowed);
        for i in 0..15 {
            limiter.try_acquire(&format!("idle{i}"), &q, 0);
        }
        assert_eq!(limiter.len(), 16);
        clock.advance(0.001).unwrap();
        limiter.try_acquire("new", &q, 0);
        assert!(limiter.len() <= 16);
        // The busy bucket kept its state.
        assert!(!limiter.try_acquire("busy", &q, 1).allowed);
    }

    #[test]
    fn eviction_when_all_buckets_are_busy_stays_bounded() {
        let (_clock, limiter) = setup(64);
        let q = Quota::new(1.0, 10).unwrap();
        for i in 0..1000 {
            limiter.try_acquire(&format!("id{i}"), &q, 1);
            assert!(limiter.len() <= limiter.capacity());
        }
    }

    #[test]
    fn a_handle_charges_the_same_bucket_as_the_id() {
        let (_clock, limiter) = setup(100);
        let q = Quota::new(1.0, 3).unwrap();
        let (d, h) = limiter.try_acquire_with_handle_at("a", &q, 1, 0, None);
        assert!(d.allowed && d.remaining == 2);
        assert_eq!(
            limiter
                .try_acquire_handle_at(&h, &q, 1, 0)
                .unwrap()
                .remaining,
            1
        );
        assert_eq!(limiter.try_acquire_at("a", &q, 1, 0).remaining, 0);
        assert!(!limiter.try_acquire_handle_at(&h, &q, 1, 0).unwrap().allowed);
        assert_eq!(limiter.len(), 1);
        // Another limiter's handle is refused, and takes nothing.
        let (_, other) = setup(100);
        assert!(other.try_acquire_handle_at(&h, &q, 1, 0).is_none());
        assert!(other.try_acquire_at("a", &q, 3, 0).allowed);
    }

    /// Fills a 16-bucket limiter with idle buckets until `h`'s bucket is evicted.
    fn evict_handle(limiter: &Limiter, h: &BucketHandle, q: &Quota, now: u64) {
        for i in 0..64 {
            limiter.try_acquire_at(&format!("idle{i}"), q, 0, now);
        }
        assert_eq!(h.bucket.load(Ordering::Relaxed), EVICTED);
        assert!(limiter.try_acquire_handle_at(h, q, 0, now).is_none());
    }

    #[test]
    fn an_evicted_handle_is_refused_then_revived() {
        let (_clock, limiter) = setup(16);
        let q = Quota::new(1.0, 2).unwrap();
        let (_, h) = limiter.try_acquire_with_handle_at("a", &q, 1, 0, None);
        // Idle again two seconds on: the first to go when the shard fills.
        let now = 2_000_000_000;
        evict_handle(&limiter, &h, &q, now);
        let (d, h2) = limiter.try_acquire_with_handle_at("a", &q, 1, now, Some(&h));
        assert!(d.allowed && d.remaining == 1, "an evicted bucket was full");
        assert!(
            Arc::ptr_eq(&h.bucket, &h2.bucket),
            "the same bucket, put back"
        );
        assert_eq!(
            limiter
                .try_acquire_handle_at(&h, &q, 1, now)
                .unwrap()
                .remaining,
            0
        );
        assert!(!limiter.try_acquire_at("a", &q, 1, now).allowed);
        assert!(limiter.len() <= limiter.capacity());
    }

    #[test]
    fn an_evicted_handle_never_splits_its_id() {
        let (_clock, limiter) = setup(16);
        let q = Quota::new(1.0, 2).unwrap();
        let (_, h) = limiter.try_acquire_with_handle_at("a", &q, 1, 0, None);
        let now = 2_000_000_000;
        evict_handle(&limiter, &h, &q, now);
        // The id comes back by name first: the old handle stays dead, and its holder is
        // sent to the new bucket rather than charging the old one.
        assert!(limiter.try_acquire_at("a", &q, 1, now).allowed);
        let (d, h2) = limiter.try_acquire_with_handle_at("a", &q, 1, now, Some(&h));
        assert!(d.allowed && d.remaining == 0);
        assert!(!Arc::ptr_eq(&h.bucket, &h2.bucket));
        assert!(limiter.try_acquire_handle_at(&h, &q, 1, now).is_none());
        assert!(
            !limiter
                .try_acquire_handle_at(&h2, &q, 1, now)
                .unwrap()
                .allowed
        );
        assert!(!limiter.try_acquire_at("a", &q, 1, now).allowed);
    }

    #[test]
    fn handles_and_ids_from_many_threads_never_over_grant() {
        // Time frozen: "hot" stays busy, so eviction takes only the idle churn around it.
        let (_clock, limiter) = setup(64);
        let q = Quota::new(1.0, 500).unwrap();
        let granted = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|t| {
                    let (limiter, q) = (&limiter, &q);
                    s.spawn(move || {
                        let mut handle: Option<BucketHandle> = None;
                        let mut granted = 0;
                        for i in 0..400 {
                            let fast = handle
                                .as_ref()
                                .and_then(|h| limiter.try_acquire_handle_at(h, q, 1, 0));
                            let d = if let Some(d) = fast {
                                d
                            } else if t % 2 == 0 {
                                let (d, h) = limiter.try_acquire_with_handle_at(
                                    "hot",
                                    q,
                                    1,
                                    0,
                                    handle.as_ref(),
                                );
                                handle = Some(h);
                                d
                            } else {
                                limiter.try_acquire_at("hot", q, 1, 0)
                            };
                            granted += usize::from(d.allowed);
                            limiter.try_acquire_at(&format!("churn{t}-{i}"), q, 0, 0);
                        }
                        granted
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(0))
                .sum::<usize>()
        });
        assert_eq!(granted, 500);
    }

    #[test]
    fn zero_capacity_is_refused() {
        let clock = Arc::new(ManualClock::new(0.0).unwrap());
        assert!(Limiter::new(0, clock).is_err());
    }
}
