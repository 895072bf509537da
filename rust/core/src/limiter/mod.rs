//! A GCRA rate limiter (equivalent to a token bucket) with many quotas on one limiter.
//!
//! * [`gcra`]: the arithmetic — [`Quota`], [`Decision`], and [`gcra::decide`] over one TAT.
//! * [`store`]: where the TATs live, behind the [`BucketStore`] trait: [`HeapStore`] (sharded
//!   heap maps, with [`BucketHandle`]s for callers that charge one id again and again).
//! * [`slots`]: [`SlotStore`], a fixed table of atomics in memory the caller provides, so
//!   that worker processes can share it.
//! * [`shared`]: a [`SlotStore`] behind a header (seed, time origin) in memory that the
//!   worker processes of a host map: one budget per tenant per host.
//!
//! [`Limiter`] puts a store and a clock together. Each bucket is one `AtomicU64` updated by
//! compare-and-swap; there is no background refill thread.

pub mod gcra;
pub mod shared;
pub mod slots;
pub mod store;

use std::sync::Arc;

use crate::clock::Clock;
use crate::error::CoreResult;

pub use self::gcra::{Decision, Quota, QuotaValue};
pub use self::slots::{SlotKey, SlotStore};
pub use self::store::{BucketHandle, BucketStore, HeapStore};

/// Many token buckets keyed by id, each checked against a caller-chosen [`Quota`], in the
/// store `S` ([`HeapStore`] unless said otherwise).
#[derive(Debug)]
pub struct Limiter<S = HeapStore> {
    store: S,
    clock: Arc<dyn Clock>,
}

impl Limiter {
    /// A limiter holding at most about `capacity` buckets in a [`HeapStore`].
    ///
    /// # Errors
    /// [`crate::CoreError::InvalidArgument`] if `capacity` is 0.
    pub fn new(capacity: usize, clock: Arc<dyn Clock>) -> CoreResult<Self> {
        Ok(Self::with_store(HeapStore::new(capacity)?, clock))
    }

    /// [`Limiter::try_acquire_at`], also returning a handle on the bucket it charged, for
    /// [`Limiter::try_acquire_handle_at`]. Pass the handle this returned for the same `id`
    /// before, if any: if its bucket was evicted and `id` has no other, it is put back rather
    /// than replaced, so the old handle works again. (A handle of another id would make the
    /// two ids share one bucket: stricter, never looser.)
    pub fn try_acquire_with_handle_at(
        &self,
        id: &str,
        quota: &Quota,
        cost: u64,
        now: u64,
        previous: Option<&BucketHandle>,
    ) -> (Decision, BucketHandle) {
        let q = quota.get();
        let (outcome, handle) = self
            .store
            .update_with_handle(id, now, previous, move |tat| {
                gcra::Outcome::of(tat, now, &q, cost)
            });
        (outcome.decision(&q), handle)
    }

    /// Charges the bucket behind `handle` with no lookup and no lock: one atomic
    /// compare-and-swap. `None`, having taken nothing, if the handle is another limiter's or
    /// its bucket was evicted; then call [`Limiter::try_acquire_with_handle_at`].
    #[inline]
    pub fn try_acquire_handle_at(
        &self,
        handle: &BucketHandle,
        quota: &Quota,
        cost: u64,
        now: u64,
    ) -> Option<Decision> {
        let q = quota.get();
        self.store
            .update_handle(handle, move |tat| gcra::Outcome::of(tat, now, &q, cost))
            .map(|outcome| outcome.decision(&q))
    }
}

impl<S: AsRef<[std::sync::atomic::AtomicU64]>> Limiter<SlotStore<S>> {
    /// [`Limiter::try_acquire_at`] for the id `key` was made from (by this limiter's store:
    /// [`SlotStore::key`]), without hashing it again; `None`, having taken nothing, if `key`
    /// is another store's.
    #[inline]
    pub fn try_acquire_key_at(
        &self,
        key: &SlotKey,
        quota: &Quota,
        cost: u64,
        now: u64,
    ) -> Option<Decision> {
        let q = quota.get();
        self.store
            .update_key(key, now, move |tat| gcra::Outcome::of(tat, now, &q, cost))
            .map(|outcome| outcome.decision(&q))
    }
}

impl<S: BucketStore> Limiter<S> {
    /// A limiter over `store`, reading `clock`.
    pub fn with_store(store: S, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// Takes `cost` tokens from `id`'s bucket under `quota`, if it has them.
    ///
    /// `cost == 0` only reports. `cost > burst` is never allowed: `retry_after` is
    /// `f64::INFINITY` and the bucket is unchanged.
    #[inline]
    pub fn try_acquire(&self, id: &str, quota: &Quota, cost: u64) -> Decision {
        self.try_acquire_at(id, quota, cost, self.clock.monotonic_ns())
    }

    /// [`Limiter::try_acquire`] at a monotonic time already read from this limiter's clock
    /// (see [`Limiter::clock`]). An earlier `now` than a previous call's is safe: GCRA only
    /// ever sees it as less time having passed.
    #[inline]
    pub fn try_acquire_at(&self, id: &str, quota: &Quota, cost: u64, now: u64) -> Decision {
        gcra::acquire(&self.store, id, &quota.get(), cost, now)
    }

    /// The clock this limiter reads.
    #[must_use]
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The store this limiter charges.
    #[must_use]
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Buckets currently held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.store.len()
    }

    /// Whether no bucket is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.store.is_empty()
    }

    /// The most buckets this limiter holds.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.store.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use proptest::prelude::*;

    /// A heap-store limiter of `capacity` buckets on a clock the test drives.
    pub(super) fn setup(capacity: usize) -> (Arc<ManualClock>, Limiter) {
        let clock = Arc::new(ManualClock::new(1_700_000_000.0).unwrap());
        let limiter = Limiter::new(capacity, clock.clone()).unwrap();
        (clock, limiter)
    }

    #[test]
    fn burst_then_refill() {
        let (clock, limiter) = setup(100);
        let q = Quota::new(10.0, 5).unwrap();
        for i in 0..5 {
            let d = limiter.try_acquire("a", &q, 1);
            assert!(d.allowed);
            assert_eq!(d.limit, 5);
            assert_eq!(d.remaining, 4 - i);
            assert!((d.reset_after - 0.1 * f64::from(i + 1)).abs() < 1e-9);
            assert!(d.retry_after.abs() < f64::EPSILON);
        }
        let d = limiter.try_acquire("a", &q, 1);
        assert!(!d.allowed);
        assert_eq!(d.remaining, 0);
        assert!((d.retry_after - 0.1).abs() < 1e-9);
        assert!((d.reset_after - 0.5).abs() < 1e-9);
        clock.advance(0.1).unwrap();
        assert!(limiter.try_acquire("a", &q, 1).allowed);
        assert!(!limiter.try_acquire("a", &q, 1).allowed);
        clock.advance(10.0).unwrap();
        let d = limiter.try_acquire("a", &q, 5);
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
        // Another id has its own bucket.
        assert!(limiter.try_acquire("b", &q, 5).allowed);
        assert_eq!(limiter.len(), 2);
    }

    #[test]
    fn cost_above_burst_is_never_allowed() {
        let (_clock, limiter) = setup(100);
        let q = Quota::new(1.0, 3).unwrap();
        let d = limiter.try_acquire("a", &q, 4);
        assert!(!d.allowed);
        assert!(d.retry_after.is_infinite());
        assert_eq!(d.remaining, 3);
        // And it took nothing.
        assert!(limiter.try_acquire("a", &q, 3).allowed);
    }

    #[test]
    fn cost_zero_only_reports() {
        let (_clock, limiter) = setup(100);
        let q = Quota::new(1.0, 3).unwrap();
        assert!(limiter.try_acquire("a", &q, 2).allowed);
        let d = limiter.try_acquire("a", &q, 0);
        assert!(d.allowed);
        assert_eq!(d.remaining, 1);
        assert_eq!(limiter.try_acquire("a", &q, 0).remaining, 1);
    }

    #[test]
    fn quota_update_applies_to_every_bucket_at_once() {
        let (_clock, limiter) = setup(100);
        let plan = Quota::new(1.0, 1).unwrap();
        assert!(limiter.try_acquire("t1", &plan, 1).allowed);
        assert!(limiter.try_acquire("t2", &plan, 1).allowed);
        assert!(!limiter.try_acquire("t1", &plan, 1).allowed);
        plan.update(1.0, 3).unwrap();
        assert!(limiter.try_acquire("t1", &plan, 2).allowed);
        assert!(limiter.try_acquire("t2", &plan, 2).allowed);
        assert_eq!(limiter.try_acquire("t2", &plan, 1).limit, 3);
    }

    #[test]
    fn a_raised_quota_refuses_nothing_the_new_one_would_allow() {
        // The case: 1/s burst 3, exhausted, raised to 1000/s burst 1000; 1.2 s on,
        // 50 requests at once are all allowed (the old debt was 1.8 s).
        let (clock, limiter) = setup(100);
        let plan = Quota::new(1.0, 3).unwrap();
        while limiter.try_acquire("t", &plan, 1).allowed {}
        clock.advance(1.2).unwrap();
        plan.update(1000.0, 1000).unwrap();
        for _ in 0..50 {
            assert!(limiter.try_acquire("t", &plan, 1).allowed);
        }
        // From then on the new quota alone: 950 more, then one per ms.
        assert_eq!(limiter.try_acquire("t", &plan, 0).remaining, 950);
        assert!(limiter.try_acquire("t", &plan, 950).allowed);
        assert!(!limiter.try_acquire("t", &plan, 1).allowed);
        clock.advance(0.001).unwrap();
        assert!(limiter.try_acquire("t", &plan, 1).allowed);
        assert!(!limiter.try_acquire("t", &plan, 1).allowed);
    }

    #[test]
    fn a_lowered_quota_applies_at_once() {
        let (clock, limiter) = setup(100);
        let plan = Quota::new(10.0, 20).unwrap();
        // 8 of 20 tokens used; lowered to 1/s burst 5: the 8 are still owed, and more than
        // the new burst, so nothing is allowed until the bucket is back under it.
        assert!(limiter.try_acquire("t", &plan, 8).allowed);
        plan.update(1.0, 5).unwrap();
        let d = limiter.try_acquire("t", &plan, 1);
        assert!(!d.allowed);
        assert_eq!((d.limit, d.remaining), (5, 0));
        assert!((d.retry_after - 1.0).abs() < 1e-9, "{d:?}");
        clock.advance(1.0).unwrap();
        assert!(limiter.try_acquire("t", &plan, 1).allowed);
        assert!(!limiter.try_acquire("t", &plan, 1).allowed);
        // A lower rate alone: 2 of 5 tokens used stay used at the new interval.
        let (clock, limiter) = setup(100);
        let plan = Quota::new(10.0, 5).unwrap();
        assert!(limiter.try_acquire("u", &plan, 2).allowed);
        plan.update(2.0, 5).unwrap();
        let d = limiter.try_acquire("u", &plan, 0);
        assert_eq!(d.remaining, 3);
        assert!(
            (d.reset_after - 1.0).abs() < 1e-9,
            "2 tokens at 0.5 s: {d:?}"
        );
        clock.advance(0.5).unwrap();
        assert_eq!(limiter.try_acquire("u", &plan, 0).remaining, 4);
    }

    #[test]
    fn a_bucket_charged_before_two_changes_keeps_its_debt_capped() {
        let (_clock, limiter) = setup(100);
        let plan = Quota::new(1.0, 3).unwrap();
        assert!(limiter.try_acquire("t", &plan, 3).allowed);
        plan.update(1.0, 2).unwrap();
        plan.update(1000.0, 2).unwrap();
        // Neither the quota nor its previous values wrote the bucket: 3 s of debt, capped at
        // the new tolerance (2 ms): empty, refilling at the new rate.
        let d = limiter.try_acquire("t", &plan, 1);
        assert!(!d.allowed);
        assert!(d.retry_after <= 0.001 + 1e-9);
    }

    #[test]
    fn tiny_rates_do_not_overflow() {
        let (clock, limiter) = setup(10);
        let q = Quota::new(1e-300, u32::MAX).unwrap();
        assert!(limiter.try_acquire("a", &q, 1).allowed);
        let q = Quota::new(1e-12, 1).unwrap();
        assert!(limiter.try_acquire("b", &q, 1).allowed);
        let d = limiter.try_acquire("b", &q, 1);
        assert!(!d.allowed);
        // The interval is capped at 2^56 ns (about 833 days).
        assert!(d.retry_after > 7e7);
        clock.advance(1e6).unwrap();
        assert!(!limiter.try_acquire("b", &q, 1).allowed);
        let q = Quota::new(1e12, u32::MAX).unwrap();
        assert!(limiter.try_acquire("c", &q, u64::from(u32::MAX)).allowed);
        assert!(!limiter.try_acquire("d", &q, u64::MAX).allowed);
    }

    #[test]
    fn hammer_from_many_threads_never_over_grants() {
        let clock = Arc::new(ManualClock::new(0.0).unwrap());
        let limiter = Arc::new(Limiter::new(1000, clock).unwrap());
        let q = Arc::new(Quota::new(1.0, 1000).unwrap());
        let granted = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let limiter = &limiter;
                    let q = &q;
                    s.spawn(move || {
                        (0..1000)
                            .filter(|i| limiter.try_acquire(&format!("k{}", i % 3), q, 1).allowed)
                            .count()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(0))
                .sum::<usize>()
        });
        // 3 buckets of burst 1000, time frozen: exactly 3000 of 4000 granted.
        assert_eq!(granted, 3000);
    }

    proptest! {
        /// Over any window of calls, granted ≤ burst + rate × elapsed.
        #[test]
        fn never_grants_more_than_burst_plus_rate(
            rate in 0.5f64..1000.0,
            burst in 1u32..50,
            steps in proptest::collection::vec((0u64..2_000_000_000, 0u64..8), 1..120),
        ) {
            let (clock, limiter) = setup(10);
            let q = Quota::new(rate, burst).unwrap();
            let mut log: Vec<(f64, u64)> = Vec::new();
            let mut t = 0.0f64;
            for (dt_ns, cost) in steps {
                let dt = dt_ns as f64 / 1e9 / 10.0;
                clock.advance(dt).unwrap();
                t += dt;
                let d = limiter.try_acquire("x", &q, cost);
                if cost > u64::from(burst) {
                    prop_assert!(!d.allowed && d.retry_after.is_infinite());
                }
                if d.allowed {
                    prop_assert!(d.retry_after == 0.0);
                    log.push((t, cost));
                } else {
                    prop_assert!(d.retry_after > 0.0);
                }
                prop_assert!(d.remaining <= burst);
            }
            for i in 0..log.len() {
                let mut granted = 0u64;
                for j in i..log.len() {
                    granted += log[j].1;
                    let elapsed = log[j].0 - log[i].0;
                    prop_assert!(granted as f64 <= f64::from(burst) + rate * elapsed + 1e-6);
                }
            }
        }

        /// A denied request is allowed exactly when retry_after has passed.
        #[test]
        fn retry_after_is_exact(rate in 1.0f64..100.0, burst in 1u32..10, cost in 1u64..10) {
            prop_assume!(cost <= u64::from(burst));
            let (clock, limiter) = setup(10);
            let q = Quota::new(rate, burst).unwrap();
            while limiter.try_acquire("x", &q, cost).allowed {}
            let d = limiter.try_acquire("x", &q, cost);
            prop_assert!(!d.allowed);
            let wait_ns = (d.retry_after * 1e9).round();
            clock.advance((wait_ns - 1.0) / 1e9).unwrap();
            prop_assert!(!limiter.try_acquire("x", &q, cost).allowed);
            clock.advance(1.0 / 1e9).unwrap();
            prop_assert!(limiter.try_acquire("x", &q, cost).allowed);
        }
    }
}
