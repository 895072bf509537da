//! GCRA arithmetic, with no storage: a bucket is one number, its *theoretical arrival time*
//! (TAT) in monotonic nanoseconds. With emission interval `T = ceil(1e9 / rate)` ns and
//! tolerance `tau = T × burst`, a request of `cost` is allowed when
//! `max(TAT, now) + T × cost - now <= tau`, and then sets `TAT = max(TAT, now) + T × cost`
//! (after a quota change, `max(TAT, now) - now` is first capped at the new `tau`). A bucket
//! with `TAT <= now` is full, so a store that drops it loses nothing: idle buckets are what
//! eviction removes first, and a bucket a store does not hold reads as TAT 0.
//!
//! [`decide`] is the whole algorithm; [`acquire`] runs it against any [`BucketStore`], as
//! governor's `gcra.rs` takes its state store as a parameter.
//!
//! A [`Quota`] is shared by every bucket that uses it; [`Quota::update`] takes effect on the
//! next call for all of them.

use std::sync::atomic::{fence, AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::clock::NANOS_PER_SECOND;
use crate::error::{CoreError, CoreResult};

use super::store::BucketStore;

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
    pub(crate) fn new(rate_per_second: f64, burst: u32) -> CoreResult<Self> {
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

/// The outcome of [`decide`] (and of [`super::Limiter::try_acquire`]).
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

/// The largest TAT [`decide`] ever returns, so that a store can reserve `u64::MAX` as a
/// sentinel of its own (an evicted or retired bucket).
pub const MAX_TAT: u64 = u64::MAX - 1;

/// Decides a request of `cost` at `now` against a bucket whose TAT is `tat` (0 for a bucket
/// never charged). Returns the decision and the bucket's new TAT, `None` if it is unchanged;
/// a new TAT is at most [`MAX_TAT`].
///
/// `cost == 0` only reports. `cost > burst` is never allowed: `retry_after` is
/// `f64::INFINITY` and nothing is taken.
#[must_use]
#[inline]
pub fn decide(tat: u64, now: u64, q: &QuotaValue, cost: u64) -> (Decision, Option<u64>) {
    let (outcome, new_tat) = Outcome::of(tat, now, q, cost);
    (outcome.decision(q), new_tat)
}

/// What [`decide`] finds, in integers: the new TAT needs only this, and the [`Decision`]
/// (divisions, floating point) is made from it once the bucket has taken the new TAT, not on
/// every retry of a compare-and-swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    allowed: bool,
    /// The bucket's debt (ns) that `remaining` and `reset_after` are computed from.
    level: u64,
    /// Ns until the cost would be allowed; `u64::MAX` for never.
    retry_ns: u64,
}

impl Outcome {
    /// The outcome of a request of `cost` at `now` against a bucket whose TAT is `tat`, and
    /// the bucket's new TAT (see [`decide`]).
    #[must_use]
    #[inline]
    pub fn of(tat: u64, now: u64, q: &QuotaValue, cost: u64) -> (Self, Option<u64>) {
        let tau = q.tau_ns();
        let t = q.interval_ns;
        let base = tat.max(now);
        // Under one quota, base - now <= tau always. After a quota change (a plan change) the
        // debt is capped at the new tolerance: the bucket is empty under the new quota, no
        // emptier, so the change applies at once instead of after the old debt has drained.
        let debt = base - now;
        let used = debt.min(tau);
        // When the cap applied, the capped TAT is written back even if the request is
        // refused; otherwise the next call would find the old debt again.
        let capped_tat = (debt > tau).then(|| now.saturating_add(tau).min(MAX_TAT));
        let increment = t.saturating_mul(cost);
        if cost > u64::from(q.burst) || increment > tau {
            let never = Self {
                allowed: false,
                level: used,
                retry_ns: u64::MAX,
            };
            return (never, capped_tat);
        }
        // used <= MAX_WINDOW_NS + slack and increment <= tau <= 2^62: no overflow in u64.
        let after = used.saturating_add(increment);
        if after > tau {
            let refused = Self {
                allowed: false,
                level: used,
                retry_ns: after - tau,
            };
            (refused, capped_tat)
        } else {
            let allowed = Self {
                allowed: true,
                level: after,
                retry_ns: 0,
            };
            let new_tat = now.saturating_add(after).min(MAX_TAT);
            (allowed, (cost > 0).then_some(new_tat).or(capped_tat))
        }
    }

    /// The decision, under the quota the outcome was found with.
    #[must_use]
    #[inline]
    pub fn decision(self, q: &QuotaValue) -> Decision {
        let secs = |ns: u64| -> f64 {
            #[allow(clippy::cast_precision_loss)]
            let s = ns as f64 / NANOS_PER_SECOND;
            s
        };
        let tokens = u32::try_from(q.tau_ns().saturating_sub(self.level) / q.interval_ns)
            .unwrap_or(u32::MAX)
            .min(q.burst);
        Decision {
            allowed: self.allowed,
            limit: q.burst,
            remaining: tokens,
            reset_after: secs(self.level),
            retry_after: if self.retry_ns == u64::MAX {
                f64::INFINITY
            } else {
                secs(self.retry_ns)
            },
        }
    }
}

/// Runs [`decide`] against `id`'s bucket in `store`: takes `cost` tokens at `now` if the
/// bucket has them.
#[inline]
pub fn acquire<S: BucketStore + ?Sized>(
    store: &S,
    id: &str,
    quota: &QuotaValue,
    cost: u64,
    now: u64,
) -> Decision {
    let q = *quota;
    store
        .update(id, now, move |tat| Outcome::of(tat, now, &q, cost))
        .decision(&q)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

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
    fn decide_is_the_token_bucket() {
        let q = QuotaValue::new(10.0, 2).unwrap();
        let (d, tat) = decide(0, 1_000, &q, 1);
        assert!(d.allowed && d.remaining == 1);
        assert_eq!(tat, Some(1_000 + 100_000_000));
        let (d, tat) = decide(tat.unwrap(), 1_000, &q, 2);
        assert!(!d.allowed && tat.is_none());
        assert!((d.retry_after - 0.1).abs() < 1e-12);
        // A cost of zero reports and writes nothing.
        assert_eq!(decide(5, 1_000, &q, 0).1, None);
        // New TATs stay below the stores' sentinel.
        let slow = QuotaValue::new(1e-12, 1).unwrap();
        assert!(decide(MAX_TAT, u64::MAX - 2, &slow, 1)
            .1
            .is_none_or(|t| t <= MAX_TAT));
        assert!(decide(0, u64::MAX - 2, &slow, 1)
            .1
            .is_some_and(|t| t <= MAX_TAT));
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
}
