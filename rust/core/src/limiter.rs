//! A GCRA rate limiter (equivalent to a token bucket) with many quotas on one limiter.
//!
//! Each bucket is one `AtomicU64`: its *theoretical arrival time* (TAT) in monotonic
//! nanoseconds, updated by compare-and-swap; there is no background refill thread. With
//! emission interval `T = ceil(1e9 / rate)` ns and tolerance `tau = T × burst`, a request of
//! `cost` is allowed when `max(TAT, now) + T × cost - now <= tau`, and then sets
//! `TAT = max(TAT, now) + T × cost` (after a quota change, `max(TAT, now) - now` is first
//! capped at the new `tau`). A bucket with `TAT <= now` is full, so dropping it loses
//! nothing: idle buckets are what eviction removes first.
//!
//! Buckets are keyed by a 128-bit keyed fingerprint (two independently seeded `ahash`es) of
//! the id string, kept in sharded maps: a lookup by id takes one shard read lock; the write
//! lock is taken only to insert. Storing the fingerprint instead of the string avoids a string
//! comparison; a collision (probability about n² / 2¹²⁹ for n ids, with seeds an attacker
//! does not know) would make two ids share a bucket.
//!
//! Each bucket is its own small allocation (`Arc<AtomicU64>`), so a caller that charges the
//! same id again and again (the verifier's cached key records) can keep a [`BucketHandle`] and
//! skip the fingerprint, the lock and the lookup. A bucket leaves its map only by a
//! compare-and-swap of its TAT to a sentinel ([`EVICTED`]), under the shard's write lock; a
//! handle that finds the sentinel looks its id up again (and puts the same bucket back if the
//! id has none), so there is never more than one live bucket per id and GCRA's bound holds.
//!
//! A [`Quota`] is shared by every bucket that uses it; [`Quota::update`] takes effect on the
//! next call for all of them.

use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::clock::{Clock, NANOS_PER_SECOND};
use crate::error::{CoreError, CoreResult};
use crate::shard::{keep_after_eviction, shard_layout, shard_of, Fingerprinter, Fp, IdentityBuild};

/// The largest emission interval and tolerance, in ns (2⁶² ns ≈ 146 years), so that
/// arithmetic on TATs never overflows.
const MAX_WINDOW_NS: u64 = 1 << 62;

/// A rate and burst, shared by all the buckets that use it.
///
/// Reads are lock-free and never see half an update: the values sit behind a sequence
/// counter (a seqlock); readers retry in the rare case an update ran concurrently. Updates
/// are serialised by a mutex.
#[derive(Debug)]
pub struct Quota {
    seq: AtomicU64,
    interval_ns: AtomicU64,
    burst: AtomicU64,
    rate_bits: AtomicU64,
    writer: Mutex<()>,
}

/// A consistent snapshot of a [`Quota`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuotaValue {
    /// Requests per second, as given.
    pub rate_per_second: f64,
    /// Most requests allowed at once.
    pub burst: u32,
    /// `ceil(1e9 / rate_per_second)`, at least 1 and at most 2⁶².
    pub interval_ns: u64,
}

impl QuotaValue {
    fn new(rate_per_second: f64, burst: u32) -> CoreResult<Self> {
        if !rate_per_second.is_finite() || rate_per_second <= 0.0 {
            return Err(CoreError::InvalidArgument(
                "rate_per_second must be finite and greater than 0",
            ));
        }
        if burst < 1 {
            return Err(CoreError::InvalidArgument("burst must be at least 1"));
        }
        let interval = (NANOS_PER_SECOND / rate_per_second).ceil();
        // In range by the clamp; `as` saturates anyway.
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let interval_ns = interval.clamp(1.0, MAX_WINDOW_NS as f64) as u64;
        Ok(Self {
            rate_per_second,
            burst,
            interval_ns,
        })
    }

    /// The tolerance `T × burst`, capped at 2⁶² ns.
    fn tau_ns(&self) -> u64 {
        self.interval_ns
            .saturating_mul(u64::from(self.burst))
            .min(MAX_WINDOW_NS)
    }
}

impl Quota {
    /// A quota of `rate_per_second` with bursts of up to `burst`.
    ///
    /// # Errors
    /// [`CoreError::InvalidArgument`] if the rate is not finite and positive or `burst < 1`.
    pub fn new(rate_per_second: f64, burst: u32) -> CoreResult<Self> {
        let v = QuotaValue::new(rate_per_second, burst)?;
        Ok(Self {
            seq: AtomicU64::new(0),
            interval_ns: AtomicU64::new(v.interval_ns),
            burst: AtomicU64::new(u64::from(v.burst)),
            rate_bits: AtomicU64::new(v.rate_per_second.to_bits()),
            writer: Mutex::new(()),
        })
    }

    /// Replaces rate and burst for every bucket using this quota, from their next call on.
    ///
    /// # Errors
    /// As [`Quota::new`]; the quota is unchanged on error.
    pub fn update(&self, rate_per_second: f64, burst: u32) -> CoreResult<()> {
        let v = QuotaValue::new(rate_per_second, burst)?;
        let _guard = self.writer.lock();
        let s = self.seq.load(Ordering::Relaxed);
        self.seq.store(s.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        self.interval_ns.store(v.interval_ns, Ordering::Relaxed);
        self.burst.store(u64::from(v.burst), Ordering::Relaxed);
        self.rate_bits
            .store(v.rate_per_second.to_bits(), Ordering::Relaxed);
        self.seq.store(s.wrapping_add(2), Ordering::Release);
        Ok(())
    }

    /// A consistent snapshot.
    #[inline]
    pub fn get(&self) -> QuotaValue {
        loop {
            let before = self.seq.load(Ordering::Acquire);
            if before & 1 == 0 {
                let interval_ns = self.interval_ns.load(Ordering::Relaxed);
                let burst = self.burst.load(Ordering::Relaxed);
                let rate_bits = self.rate_bits.load(Ordering::Relaxed);
                fence(Ordering::Acquire);
                if self.seq.load(Ordering::Relaxed) == before {
                    return QuotaValue {
                        rate_per_second: f64::from_bits(rate_bits),
                        burst: u32::try_from(burst).unwrap_or(u32::MAX),
                        interval_ns,
                    };
                }
            }
            std::hint::spin_loop();
        }
    }

    /// The current rate.
    #[must_use]
    pub fn rate_per_second(&self) -> f64 {
        self.get().rate_per_second
    }

    /// The current burst.
    #[must_use]
    pub fn burst(&self) -> u32 {
        self.get().burst
    }
}

/// The outcome of [`Limiter::try_acquire`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    /// Whether the request may proceed (its cost has been taken).
    pub allowed: bool,
    /// The quota's burst.
    pub limit: u32,
    /// Whole tokens left after this call.
    pub remaining: u32,
    /// Seconds until the bucket is full again.
    pub reset_after: f64,
    /// Seconds until `cost` would be allowed: 0 when allowed; `f64::INFINITY` when it never
    /// will be (`cost > burst`).
    pub retry_after: f64,
}

/// Decides a request against a bucket's TAT. Returns the decision and the new TAT if the
/// bucket changes.
#[inline]
fn gcra(tat: u64, now: u64, q: &QuotaValue, cost: u64) -> (Decision, Option<u64>) {
    let tau = q.tau_ns();
    let t = q.interval_ns;
    let base = tat.max(now);
    // Under one quota, base - now <= tau always. After a quota change (a plan change) the
    // debt is capped at the new tolerance: the bucket is empty under the new quota, no
    // emptier, so the change applies at once instead of after the old debt has drained.
    let debt = base - now;
    let used = debt.min(tau);
    // When the cap applied, the capped TAT is written back even if the request is refused;
    // otherwise the next call would find the old debt again.
    let capped_tat = (debt > tau).then(|| now.saturating_add(tau).min(EVICTED - 1));
    let tokens = |used: u64| -> u32 {
        u32::try_from(tau.saturating_sub(used) / t)
            .unwrap_or(u32::MAX)
            .min(q.burst)
    };
    let secs = |ns: u64| -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let s = ns as f64 / NANOS_PER_SECOND;
        s
    };
    let increment = t.saturating_mul(cost);
    if cost > u64::from(q.burst) || increment > tau {
        let d = Decision {
            allowed: false,
            limit: q.burst,
            remaining: tokens(used),
            reset_after: secs(used),
            retry_after: f64::INFINITY,
        };
        return (d, capped_tat);
    }
    // used <= MAX_WINDOW_NS + slack and increment <= tau <= 2^62: no overflow in u64.
    let after = used.saturating_add(increment);
    if after > tau {
        let d = Decision {
            allowed: false,
            limit: q.burst,
            remaining: tokens(used),
            reset_after: secs(used),
            retry_after: secs(after - tau),
        };
        (d, capped_tat)
    } else {
        let d = Decision {
            allowed: true,
            limit: q.burst,
            remaining: tokens(after),
            reset_after: secs(after),
            retry_after: 0.0,
        };
        let new_tat = now.saturating_add(after).min(EVICTED - 1);
        (d, (cost > 0).then_some(new_tat).or(capped_tat))
    }
}

/// The TAT of a bucket that has left its map (evicted). No real TAT reaches it: [`gcra`]
/// caps new TATs one below.
const EVICTED: u64 = u64::MAX;

/// Runs [`gcra`] against a bucket, retrying the compare-and-swap until it sticks; `None` if
/// the bucket has been evicted (then nothing was taken).
#[inline]
fn acquire(bucket: &AtomicU64, now: u64, q: &QuotaValue, cost: u64) -> Option<Decision> {
    let mut tat = bucket.load(Ordering::Acquire);
    loop {
        if tat == EVICTED {
            return None;
        }
        let (decision, new_tat) = gcra(tat, now, q, cost);
        let Some(new_tat) = new_tat else {
            return Some(decision);
        };
        match bucket.compare_exchange_weak(tat, new_tat, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Some(decision),
            Err(actual) => tat = actual,
        }
    }
}

/// One bucket: its TAT, or [`EVICTED`].
type Bucket = Arc<AtomicU64>;

type BucketMap = std::collections::HashMap<Fp, Bucket, IdentityBuild>;

/// Tells limiters apart, so that a [`BucketHandle`] is only used with its own.
static NEXT_LIMITER_ID: AtomicU64 = AtomicU64::new(0);

/// A reference to one id's bucket in one [`Limiter`], for charging it again without a lookup:
/// see [`Limiter::try_acquire_handle_at`]. 16 bytes: it is kept with every cached key record.
#[derive(Debug, Clone)]
pub struct BucketHandle {
    limiter: u64,
    bucket: Bucket,
}

/// Many token buckets keyed by id, each checked against a caller-chosen [`Quota`].
#[derive(Debug)]
pub struct Limiter {
    shards: Box<[RwLock<BucketMap>]>,
    share: usize,
    clock: Arc<dyn Clock>,
    fingerprints: Fingerprinter,
    /// This limiter's number, for [`BucketHandle`]s.
    id: u64,
}

impl Limiter {
    /// A limiter holding at most about `capacity` buckets.
    ///
    /// # Errors
    /// [`CoreError::InvalidArgument`] if `capacity` is 0.
    pub fn new(capacity: usize, clock: Arc<dyn Clock>) -> CoreResult<Self> {
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
            clock,
            fingerprints: Fingerprinter::new(),
            id: NEXT_LIMITER_ID.fetch_add(1, Ordering::Relaxed),
        })
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
        self.charge(id, quota, cost, now, None, |_| ()).0
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
        let revive = previous.filter(|h| h.limiter == self.id).map(|h| &h.bucket);
        self.charge(id, quota, cost, now, revive, |bucket| BucketHandle {
            limiter: self.id,
            bucket: bucket.clone(),
        })
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
        if handle.limiter != self.id {
            return None;
        }
        acquire(&handle.bucket, now, &quota.get(), cost)
    }

    /// The lookup-by-id path: charges `id`'s bucket (creating it, or reviving `revive` if
    /// that is `id`'s evicted bucket) and returns `keep` of it.
    #[inline]
    fn charge<R>(
        &self,
        id: &str,
        quota: &Quota,
        cost: u64,
        now: u64,
        revive: Option<&Bucket>,
        keep: impl FnOnce(&Bucket) -> R,
    ) -> (Decision, R) {
        let fp: Fp = self.fingerprints.of(id);
        let shard = &self.shards[shard_of(fp.1, self.shards.len())];
        let q = quota.get();
        {
            let map = shard.read();
            if let Some(bucket) = map.get(&fp) {
                // Buckets in the map are never evicted while its lock is held.
                if let Some(d) = acquire(bucket, now, &q, cost) {
                    return (d, keep(bucket));
                }
            }
        }
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
        // No bucket in the map is EVICTED while its shard is locked, so `acquire` answers;
        // the fallback (a full bucket's answer, nothing stored) cannot happen.
        let d = acquire(bucket, now, &q, cost).unwrap_or_else(|| gcra(0, now, &q, cost).0);
        (d, keep(bucket))
    }

    /// The clock this limiter reads.
    #[must_use]
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
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
            tat > now || !retire(b, tat)
        });
        let keep = keep_after_eviction(self.share);
        if map.len() > keep {
            let mut tats: Vec<u64> = map.values().map(|b| b.load(Ordering::Relaxed)).collect();
            let drop = tats.len() - keep;
            let (_, &mut threshold, _) = tats.select_nth_unstable(drop - 1);
            let mut dropped = 0;
            map.retain(|_, b| {
                let tat = b.load(Ordering::Acquire);
                if dropped < drop && tat <= threshold && retire(b, tat) {
                    dropped += 1;
                    false
                } else {
                    true
                }
            });
        }
    }

    /// Buckets currently held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }

    /// Whether no bucket is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most buckets this limiter holds.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.share * self.shards.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use proptest::prelude::*;

    fn setup(capacity: usize) -> (Arc<ManualClock>, Limiter) {
        let clock = Arc::new(ManualClock::new(1_700_000_000.0).unwrap());
        let limiter = Limiter::new(capacity, clock.clone()).unwrap();
        (clock, limiter)
    }

    #[test]
    fn quota_validation() {
        assert!(Quota::new(0.0, 1).is_err());
        assert!(Quota::new(-1.0, 1).is_err());
        assert!(Quota::new(f64::NAN, 1).is_err());
        assert!(Quota::new(f64::INFINITY, 1).is_err());
        assert!(Quota::new(1.0, 0).is_err());
        let q = Quota::new(0.1, 3).unwrap();
        assert!((q.rate_per_second() - 0.1).abs() < f64::EPSILON);
        assert_eq!(q.burst(), 3);
        assert!(q.update(0.0, 3).is_err());
        assert_eq!(q.burst(), 3);
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
    fn a_faster_quota_is_not_held_back_by_the_old_quotas_debt() {
        let (clock, limiter) = setup(100);
        let plan = Quota::new(0.1, 3).unwrap();
        for _ in 0..3 {
            assert!(limiter.try_acquire("t", &plan, 1).allowed);
        }
        assert!(!limiter.try_acquire("t", &plan, 1).allowed);
        // The old quota left 30 s of debt; the new one tolerates 2 s: the bucket is empty
        // under the new quota and refills at its rate.
        plan.update(1000.0, 2000).unwrap();
        let refused = limiter.try_acquire("t", &plan, 1);
        assert!(!refused.allowed);
        assert!(refused.retry_after <= 0.001 + 1e-9);
        clock.advance(0.002).unwrap();
        assert!(limiter.try_acquire("t", &plan, 1).allowed);
    }

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
    fn tiny_rates_do_not_overflow() {
        let (clock, limiter) = setup(10);
        let q = Quota::new(1e-300, u32::MAX).unwrap();
        assert!(limiter.try_acquire("a", &q, 1).allowed);
        let q = Quota::new(1e-12, 1).unwrap();
        assert!(limiter.try_acquire("b", &q, 1).allowed);
        let d = limiter.try_acquire("b", &q, 1);
        assert!(!d.allowed);
        assert!(d.retry_after > 1e9);
        clock.advance(1e6).unwrap();
        assert!(!limiter.try_acquire("b", &q, 1).allowed);
        let q = Quota::new(1e12, u32::MAX).unwrap();
        assert!(limiter.try_acquire("c", &q, u64::from(u32::MAX)).allowed);
        assert!(!limiter.try_acquire("d", &q, u64::MAX).allowed);
    }

    #[test]
    fn zero_capacity_is_refused() {
        let clock = Arc::new(ManualClock::new(0.0).unwrap());
        assert!(Limiter::new(0, clock).is_err());
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

    #[test]
    fn quota_updates_are_never_torn() {
        let q = Arc::new(Quota::new(1.0, 1).unwrap());
        std::thread::scope(|s| {
            let writer = {
                let q = &q;
                s.spawn(move || {
                    for i in 1..20_000u32 {
                        q.update(f64::from(i), i).unwrap();
                    }
                })
            };
            for _ in 0..20_000 {
                let v = q.get();
                assert!((v.rate_per_second - f64::from(v.burst)).abs() < f64::EPSILON);
            }
            writer.join().unwrap();
        });
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
