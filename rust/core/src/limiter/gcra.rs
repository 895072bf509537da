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
//!
//! # Plan changes
//!
//! A bucket word is a TAT (the low [`TAT_BITS`] bits) and the *tag* of the quota that wrote
//! it (the 6 bits above: a hash of its interval and burst, 1..=62; 0 for a word no quota
//! wrote). A quota remembers the values it had before its last update, so a bucket still
//! tagged with them is read in the new quota's terms on its next call:
//!
//! * **raised** (a higher rate, a burst no lower): the old debt is forgiven. The new plan
//!   would have refilled the bucket faster than the old one did, by an amount only the
//!   bucket's history knows; forgiving refuses nothing the new plan would allow, and lets
//!   through at most the old plan's outstanding tokens, once.
//! * **otherwise** (a lower rate or burst, or the same rate): the tokens the old debt stands
//!   for are still owed, at the new interval (`debt × T_new / T_old`, rounded up), and the
//!   debt is capped at the new tolerance: a lowered plan applies at once.
//!
//! A bucket tagged with neither the quota's values nor its previous ones (two changes since
//! it was charged, another process still on older values, or a tag collision: 1 in 62) keeps
//! its debt, capped at the new tolerance. The converted TAT is written back with the new tag.

use std::sync::atomic::{fence, AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::clock::NANOS_PER_SECOND;
use crate::error::{CoreError, CoreResult};

use super::store::BucketStore;

/// The largest emission interval and tolerance, in ns (2⁵⁶ ns ≈ 833 days), so that a TAT
/// (now + tolerance) fits in [`TAT_BITS`] for clocks up to about 6.8 years from their origin.
pub const MAX_WINDOW_NS: u64 = 1 << 56;

/// Bits of a bucket word that hold the TAT; the bits above hold the quota tag.
pub const TAT_BITS: u32 = 58;

/// The TAT bits of a bucket word.
const TAT_MASK: u64 = (1 << TAT_BITS) - 1;

/// Quota tags are 1..=`TAGS`: never all ones, so no word equals a store's sentinel.
const TAGS: u64 = 62;

/// The TAT of a bucket word (without its quota tag).
#[inline]
#[must_use]
pub fn tat_of(word: u64) -> u64 {
    word & TAT_MASK
}

/// The quota tag of a bucket word.
#[inline]
fn tag_of(word: u64) -> u64 {
    word >> TAT_BITS
}

/// The tag of a quota of `interval_ns` and `burst`, the same in every process and build.
fn tag(interval_ns: u64, burst: u32) -> u64 {
    let mut x = interval_ns ^ (u64::from(burst) << 32 | u64::from(burst));
    // splitmix64's finaliser.
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    1 + x % TAGS
}

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
    /// The interval before the last update that changed the values (0: none).
    previous_interval_ns: AtomicU64,
    /// The tag before that update, and bit 8 set if the update raised the quota.
    previous_tag: AtomicU64,
    writer: Mutex<()>,
}

/// What a quota was before its last change, for buckets last charged then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Previous {
    /// The interval then.
    pub interval_ns: u64,
    /// The tag then.
    pub tag: u64,
    /// Whether the change raised the quota (a higher rate, a burst no lower).
    pub raised: bool,
}

/// A consistent snapshot of a [`Quota`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuotaValue {
    /// Requests per second, as given.
    pub rate_per_second: f64,
    /// Most requests allowed at once.
    pub burst: u32,
    /// `ceil(1e9 / rate_per_second)`, at least 1 and at most 2⁵⁶.
    pub interval_ns: u64,
    /// This quota's tag (see the module's docs).
    pub tag: u64,
    /// The values before the last change, if any.
    pub previous: Option<Previous>,
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
            tag: tag(interval_ns, burst),
            previous: None,
        })
    }

    /// The tolerance `T × burst`, capped at 2⁵⁶ ns.
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
            previous_interval_ns: AtomicU64::new(0),
            previous_tag: AtomicU64::new(0),
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
        let old = self.get();
        if (old.rate_per_second, old.burst) == (v.rate_per_second, v.burst) {
            return Ok(());
        }
        let raised = v.rate_per_second > old.rate_per_second && v.burst >= old.burst;
        let s = self.seq.load(Ordering::Relaxed);
        self.seq.store(s.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        self.previous_interval_ns
            .store(old.interval_ns, Ordering::Relaxed);
        self.previous_tag
            .store(old.tag | (u64::from(raised) << 8), Ordering::Relaxed);
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
                let previous_interval_ns = self.previous_interval_ns.load(Ordering::Relaxed);
                let previous_tag = self.previous_tag.load(Ordering::Relaxed);
                fence(Ordering::Acquire);
                if self.seq.load(Ordering::Relaxed) == before {
                    let burst = u32::try_from(burst).unwrap_or(u32::MAX);
                    return QuotaValue {
                        rate_per_second: f64::from_bits(rate_bits),
                        burst,
                        interval_ns,
                        tag: tag(interval_ns, burst),
                        previous: (previous_interval_ns != 0).then_some(Previous {
                            interval_ns: previous_interval_ns,
                            tag: previous_tag & 0xff,
                            raised: previous_tag & 0x100 != 0,
                        }),
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

/// The largest bucket word [`decide`] ever returns, so that a store can reserve `u64::MAX`
/// as a sentinel of its own (an evicted or retired bucket).
pub const MAX_TAT: u64 = (TAGS << TAT_BITS) | TAT_MASK;

/// The debt (ns past `now`) of a bucket whose word is `word`, in `q`'s terms (see the
/// module's docs on plan changes).
#[inline]
fn debt_under(word: u64, now: u64, q: &QuotaValue) -> u64 {
    let debt = tat_of(word).saturating_sub(now);
    let tag = tag_of(word);
    if tag == q.tag || tag == 0 || debt == 0 {
        return debt;
    }
    match q.previous {
        Some(p) if p.tag == tag && p.raised => 0,
        Some(p) if p.tag == tag => {
            let owed = (u128::from(debt) * u128::from(q.interval_ns))
                .div_ceil(u128::from(p.interval_ns.max(1)));
            u64::try_from(owed).unwrap_or(u64::MAX)
        }
        _ => debt,
    }
}

/// A bucket word: `tat` (capped to fit) tagged with `q`'s tag.
#[inline]
fn word(tat: u64, q: &QuotaValue) -> u64 {
    (q.tag << TAT_BITS) | tat.min(TAT_MASK)
}

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
        // Under one quota, debt <= tau always. After a quota change (a plan change) the debt
        // is first read in the new quota's terms, then capped at the new tolerance: the
        // bucket is empty under the new quota, no emptier, so the change applies at once
        // instead of after the old debt has drained.
        let debt = debt_under(tat, now, q);
        let used = debt.min(tau);
        // When the bucket was written under other values, its converted TAT is written back
        // even if the request is refused; otherwise the next call would convert it again.
        let retagged = tag_of(tat) != q.tag && tag_of(tat) != 0;
        let capped_tat = (debt > tau || retagged).then(|| word(now.saturating_add(used), q));
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
            let new_tat = word(now.saturating_add(after), q);
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
        assert_eq!(tat.map(tat_of), Some(1_000 + 100_000_000));
        assert_eq!(tat.map(tag_of), Some(q.tag));
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
        const { assert!(MAX_TAT < u64::MAX) };
    }

    #[test]
    fn tags_tell_quotas_apart_and_stay_in_range() {
        let mut seen = std::collections::HashSet::new();
        for rate in [0.1, 1.0, 10.0, 1000.0, 1e9] {
            for burst in [1, 3, 20, 1000, u32::MAX] {
                let t = QuotaValue::new(rate, burst).unwrap().tag;
                assert!((1..=TAGS).contains(&t));
                seen.insert(t);
            }
        }
        assert!(seen.len() > 15, "{seen:?}");
    }

    #[test]
    fn an_update_remembers_the_values_it_replaced() {
        let q = Quota::new(1.0, 3).unwrap();
        assert_eq!(q.get().previous, None);
        let before = q.get();
        q.update(1000.0, 1000).unwrap();
        let p = q.get().previous.unwrap();
        assert_eq!(
            (p.interval_ns, p.tag, p.raised),
            (before.interval_ns, before.tag, true)
        );
        q.update(1000.0, 1000).unwrap();
        assert_eq!(
            q.get().previous,
            Some(p),
            "the same values again change nothing"
        );
        q.update(2000.0, 10).unwrap();
        assert!(
            !q.get().previous.unwrap().raised,
            "a lower burst is not a raise"
        );
        q.update(2000.0, 20).unwrap();
        assert!(
            !q.get().previous.unwrap().raised,
            "the same rate is not a raise"
        );
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
