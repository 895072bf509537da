//! The one call per request: verify the key, then charge the quota and bucket cached with its
//! record ([`Verifier::verify_and_acquire`]).
//!
//! A record that is rate-limited carries a [`Limit`]: its [`Quota`] (shared, so a plan change
//! reaches every record at once), its bucket id, and a [`BucketHandle`] on the bucket it was
//! first charged in, so later calls skip the id's fingerprint, the shard lock and the lookup:
//! one compare-and-swap. The handle is set once (a record lives one TTL); if its bucket is
//! evicted, the id is looked up again and the same bucket put back.

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};

use std::sync::atomic::AtomicU64;

use crate::clock::{same_clock, Clock};
use crate::limiter::{BucketHandle, Decision, Limiter, Quota, SlotKey, SlotStore};

use super::restrict::{Check, RequestContext};
use super::{Verdict, Verifier};

/// A bucket id as a record holds it. It is read only to make the record's bucket handle (its
/// first charge, or after its bucket was evicted), so it may be costly to read, and reading
/// it may fail (with [`BucketId::Error`]); a binding can keep the id in its own string type.
pub trait BucketId {
    /// Why the id could not be read.
    type Error;

    /// Calls `f` with the id.
    ///
    /// # Errors
    /// When the id cannot be read as `str`.
    fn with_id<R>(&self, f: impl FnOnce(&str) -> R) -> Result<R, Self::Error>;
}

impl BucketId for String {
    type Error = Infallible;

    fn with_id<R>(&self, f: impl FnOnce(&str) -> R) -> Result<R, Infallible> {
        Ok(f(self))
    }
}

impl BucketId for Box<str> {
    type Error = Infallible;

    fn with_id<R>(&self, f: impl FnOnce(&str) -> R) -> Result<R, Infallible> {
        Ok(f(self))
    }
}

impl BucketId for Arc<str> {
    type Error = Infallible;

    fn with_id<R>(&self, f: impl FnOnce(&str) -> R) -> Result<R, Infallible> {
        Ok(f(self))
    }
}

/// A record's rate limit: its quota, its bucket id, and the handle on its bucket.
#[derive(Debug)]
pub struct Limit<B> {
    quota: Arc<Quota>,
    bucket: B,
    /// The bucket (heap store) or the id's hash (shared table) in the first limiter
    /// charged. Set once: a record lives one TTL.
    handle: OnceLock<Cached>,
}

/// What a [`Limit`] keeps of the first limiter it was charged in: one of the two, so a
/// record pays for one (records are many; each byte here is a megabyte per million).
#[derive(Debug)]
enum Cached {
    /// A handle on its bucket in a heap store.
    Handle(BucketHandle),
    /// Its id's hash in a shared table (which has no handles to keep: a slot can change
    /// owner in another process).
    Key(SlotKey),
}

impl Cached {
    fn handle(&self) -> Option<&BucketHandle> {
        match self {
            Self::Handle(h) => Some(h),
            Self::Key(_) => None,
        }
    }

    fn key(&self) -> Option<&SlotKey> {
        match self {
            Self::Key(k) => Some(k),
            Self::Handle(_) => None,
        }
    }
}

impl<B> Limit<B> {
    /// Requests charged under `quota` to the bucket `bucket`.
    pub fn new(quota: Arc<Quota>, bucket: B) -> Self {
        Self {
            quota,
            bucket,
            handle: OnceLock::new(),
        }
    }

    /// The quota.
    #[must_use]
    pub fn quota(&self) -> &Arc<Quota> {
        &self.quota
    }

    /// The bucket id.
    #[must_use]
    pub fn bucket(&self) -> &B {
        &self.bucket
    }
}

/// A limiter that [`Verifier::verify_and_acquire`] can charge a record's [`Limit`] to: the
/// heap-store [`Limiter`] (through the record's cached handle) or a limiter over a
/// [`SlotStore`] (by id: the table is shared, so there is no handle to keep).
pub trait Charge {
    /// The clock the limiter reads.
    fn clock(&self) -> &Arc<dyn Clock>;

    /// Charges `cost` to `limit`'s bucket at `now` (read from [`Charge::clock`]).
    ///
    /// # Errors
    /// When the bucket id cannot be read (then nothing was charged).
    fn charge<B: BucketId>(
        &self,
        limit: &Limit<B>,
        cost: u64,
        now: u64,
    ) -> Result<Decision, B::Error>;
}

impl Charge for Limiter {
    #[inline]
    fn clock(&self) -> &Arc<dyn Clock> {
        Limiter::clock(self)
    }

    #[inline]
    fn charge<B: BucketId>(
        &self,
        limit: &Limit<B>,
        cost: u64,
        now: u64,
    ) -> Result<Decision, B::Error> {
        limit.charge(self, cost, now)
    }
}

impl<S: AsRef<[AtomicU64]>> Charge for Limiter<SlotStore<S>> {
    #[inline]
    fn clock(&self) -> &Arc<dyn Clock> {
        Limiter::clock(self)
    }

    #[inline]
    fn charge<B: BucketId>(
        &self,
        limit: &Limit<B>,
        cost: u64,
        now: u64,
    ) -> Result<Decision, B::Error> {
        let quota = &*limit.quota;
        if let Some(d) = limit
            .handle
            .get()
            .and_then(Cached::key)
            .and_then(|k| self.try_acquire_key_at(k, quota, cost, now))
        {
            return Ok(d);
        }
        limit.bucket.with_id(|id| {
            // Another limiter's key, or one already set by a racing call, stays.
            let _ = limit.handle.set(Cached::Key(self.store().key(id)));
            self.try_acquire_at(id, quota, cost, now)
        })
    }
}

impl<B: BucketId> Limit<B> {
    /// Charges this limit's bucket in `limiter` at `now` (read from the limiter's clock):
    /// through the cached handle if it is this limiter's and its bucket is still held, else
    /// by id (caching the handle if none was).
    ///
    /// # Errors
    /// When the bucket id cannot be read (then nothing was charged).
    #[inline]
    pub fn charge(&self, limiter: &Limiter, cost: u64, now: u64) -> Result<Decision, B::Error> {
        let quota = &*self.quota;
        if let Some(d) = self
            .handle
            .get()
            .and_then(Cached::handle)
            .and_then(|h| limiter.try_acquire_handle_at(h, quota, cost, now))
        {
            return Ok(d);
        }
        let (d, handle) = self.bucket.with_id(|id| {
            let previous = self.handle.get().and_then(Cached::handle);
            limiter.try_acquire_with_handle_at(id, quota, cost, now, previous)
        })?;
        // Another limiter's handle, or one already set by a racing call, stays.
        let _ = self.handle.set(Cached::Handle(handle));
        Ok(d)
    }
}

/// A payload that may carry a [`Limit`], for [`Verifier::verify_and_acquire`].
pub trait Limited {
    /// How the payload holds its bucket id.
    type Bucket: BucketId;

    /// The payload's limit; `None` for a record that is not rate-limited.
    fn limit(&self) -> Option<&Limit<Self::Bucket>>;
}

impl<B: BucketId> Limited for Limit<B> {
    type Bucket = B;

    fn limit(&self) -> Option<&Limit<B>> {
        Some(self)
    }
}

/// What [`Verifier::verify_and_acquire`] answers for a record without a limit: allowed,
/// having charged nothing, with `limit == 0`.
pub const UNLIMITED: Decision = Decision {
    allowed: true,
    limit: 0,
    remaining: 0,
    reset_after: 0.0,
    retry_after: 0.0,
};

/// What a hit of [`Verifier::verify_and_acquire`] came to: the limiter's [`Decision`], or the
/// [`Check`] of the record's [`Restriction`](super::Restriction) that stopped the request
/// before anything was charged.
pub type Admission = Result<Decision, Check>;

/// The hit of [`Verifier::verify_and_acquire`]: the hit callback's result and the admission,
/// or why the record's bucket id could not be read.
pub type Acquired<R, P> = Result<(R, Admission), <<P as Limited>::Bucket as BucketId>::Error>;

impl<P: Limited> Verifier<P> {
    /// [`Verifier::verify_with`], then on a hit checks the record's restriction (scope, then
    /// source address) against `context` and, if it passes, charges `cost` to the record's
    /// [`Limit`] in `limiter`, in one call, under the shard's read lock: a hit answers
    /// `on_hit(payload)` and the [`Admission`] ([`UNLIMITED`] for a record without a limit).
    /// A record without a restriction never reads `context`. When the verifier and the
    /// limiter read the same clock, it is read once.
    #[inline]
    pub fn verify_and_acquire<R, L: Charge + ?Sized>(
        &self,
        header: &[u8],
        host: Option<&[u8]>,
        limiter: &L,
        cost: u64,
        context: RequestContext<'_>,
        on_hit: impl FnOnce(&P) -> R,
    ) -> Verdict<Acquired<R, P>> {
        let shared_clock = same_clock(self.clock(), limiter.clock());
        self.verify_timed(header, host, |p, restriction, now| {
            if let Some(stopped) = restriction.and_then(|r| r.check(context).err()) {
                return Ok((on_hit(p), Err(stopped)));
            }
            let decision = match p.limit() {
                None => UNLIMITED,
                Some(limit) => {
                    let now = if shared_clock {
                        now
                    } else {
                        limiter.clock().monotonic_ns()
                    };
                    limiter.charge(limit, cost, now)?
                }
            };
            Ok((on_hit(p), Ok(decision)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};
    use crate::keys::{generate_key, Env};
    use crate::verifier::{Record, VerifierConfig};

    const PEPPER: &[u8] = b"0123456789abcdef0123456789abcdef";

    /// A payload: a number, and maybe a limit.
    struct Payload(u32, Option<Limit<String>>);

    impl Limited for Payload {
        type Bucket = String;

        fn limit(&self) -> Option<&Limit<String>> {
            self.1.as_ref()
        }
    }

    fn setup() -> (Arc<ManualClock>, Verifier<Payload>, Limiter) {
        let clock = Arc::new(ManualClock::new(1_700_000_000.0).unwrap());
        let v = Verifier::new(PEPPER, VerifierConfig::default(), clock.clone()).unwrap();
        let limiter = Limiter::new(100, clock.clone()).unwrap();
        (clock, v, limiter)
    }

    fn insert(v: &Verifier<Payload>, key: &str, tenant: &str, payload: Payload) {
        let record = Record {
            tenant_id: tenant.to_owned(),
            key_id: key.to_owned(),
            expires_at: None,
            usable: true,
            payload,
            restriction: None,
        };
        v.insert(&v.hash(key.as_bytes()), record).unwrap();
    }

    fn header(key: &str) -> Vec<u8> {
        format!("Bearer {key}").into_bytes()
    }

    #[allow(clippy::needless_pass_by_value)]
    fn hit(verdict: Verdict<Acquired<u32, Payload>>) -> (u32, Decision) {
        match verdict {
            Verdict::Hit(Ok((n, Ok(d)))) => (n, d),
            Verdict::Hit(Ok((_, Err(check)))) => panic!("expected a charge, stopped by {check:?}"),
            Verdict::Hit(Err(never)) => match never {},
            Verdict::Miss(_) => panic!("expected a hit, got a miss"),
            Verdict::Refused => panic!("expected a hit, got a refusal"),
        }
    }

    #[test]
    fn a_shared_table_is_charged_through_the_cached_key_and_by_id_alike() {
        let (clock, v, _) = setup();
        let words: Vec<std::sync::atomic::AtomicU64> = (0..crate::limiter::shared::words_for(70))
            .map(|_| std::sync::atomic::AtomicU64::new(0))
            .collect();
        let one = crate::limiter::shared::attach_with_clock(&words[..], clock.clone()).unwrap();
        let two = crate::limiter::shared::attach_with_clock(&words[..], clock.clone()).unwrap();
        let quota = Arc::new(Quota::new(1.0, 4).unwrap());
        let key = generate_key(Env::Live).unwrap();
        let limit = Limit::new(quota.clone(), "t".to_owned());
        insert(&v, &key, "t", Payload(7, Some(limit)));
        let h = header(&key);
        // The first charge caches `one`'s key; `two` (another process's view) goes by id.
        let (_, d) =
            hit(v.verify_and_acquire(&h, None, &one, 1, RequestContext::default(), |p| p.0));
        assert_eq!(d.remaining, 3);
        let (_, d) =
            hit(v.verify_and_acquire(&h, None, &one, 1, RequestContext::default(), |p| p.0));
        assert_eq!(d.remaining, 2);
        let (_, d) =
            hit(v.verify_and_acquire(&h, None, &two, 1, RequestContext::default(), |p| p.0));
        assert_eq!(d.remaining, 1);
        assert_eq!(two.try_acquire("t", &quota, 1).remaining, 0);
        assert!(
            !hit(v.verify_and_acquire(&h, None, &one, 1, RequestContext::default(), |p| p.0))
                .1
                .allowed
        );
        clock.advance(1.0).unwrap();
        assert!(
            hit(v.verify_and_acquire(&h, None, &two, 1, RequestContext::default(), |p| p.0))
                .1
                .allowed
        );
        assert_eq!(one.len(), 1);
    }

    #[test]
    fn a_hit_charges_the_records_bucket_and_a_miss_or_refusal_charges_nothing() {
        let (clock, v, limiter) = setup();
        let quota = Arc::new(Quota::new(1.0, 2).unwrap());
        let (k1, k2) = (
            generate_key(Env::Live).unwrap(),
            generate_key(Env::Live).unwrap(),
        );
        // Two keys of one tenant share the tenant's bucket.
        for (k, n) in [(&k1, 1), (&k2, 2)] {
            let limit = Limit::new(quota.clone(), "tenant-a".to_owned());
            insert(&v, k, "a", Payload(n, Some(limit)));
        }
        let (n, d) = hit(v.verify_and_acquire(
            &header(&k1),
            None,
            &limiter,
            1,
            RequestContext::default(),
            |p| p.0,
        ));
        assert_eq!((n, d.allowed, d.remaining, d.limit), (1, true, 1, 2));
        let (n, d) = hit(v.verify_and_acquire(
            &header(&k2),
            None,
            &limiter,
            1,
            RequestContext::default(),
            |p| p.0,
        ));
        assert_eq!((n, d.allowed, d.remaining), (2, true, 0));
        let (_, d) = hit(v.verify_and_acquire(
            &header(&k1),
            None,
            &limiter,
            1,
            RequestContext::default(),
            |p| p.0,
        ));
        assert!(!d.allowed);
        assert_eq!(limiter.len(), 1);
        assert!(!limiter.try_acquire("tenant-a", &quota, 1).allowed);
        // A plan change reaches the cached records at once.
        quota.update(1.0, 5).unwrap();
        let (_, d) = hit(v.verify_and_acquire(
            &header(&k2),
            None,
            &limiter,
            1,
            RequestContext::default(),
            |p| p.0,
        ));
        assert!(d.allowed && d.limit == 5);
        clock.advance(60.0).unwrap();
        let unknown = generate_key(Env::Live).unwrap();
        assert!(matches!(
            v.verify_and_acquire(
                &header(&unknown),
                None,
                &limiter,
                1,
                RequestContext::default(),
                |p| p.0
            ),
            Verdict::Miss(_)
        ));
        assert!(matches!(
            v.verify_and_acquire(
                b"Basic x",
                None,
                &limiter,
                1,
                RequestContext::default(),
                |p| p.0
            ),
            Verdict::Refused
        ));
    }

    #[test]
    fn a_record_without_a_limit_is_allowed_and_charges_nothing() {
        let (_clock, v, limiter) = setup();
        let key = generate_key(Env::Live).unwrap();
        insert(&v, &key, "a", Payload(7, None));
        let (n, d) = hit(v.verify_and_acquire(
            &header(&key),
            None,
            &limiter,
            1,
            RequestContext::default(),
            |p| p.0,
        ));
        assert_eq!(n, 7);
        assert_eq!(d, UNLIMITED);
        assert!(limiter.is_empty());
    }

    #[test]
    fn a_restricted_record_is_checked_before_it_is_charged() {
        let (_clock, v, limiter) = setup();
        let quota = Arc::new(Quota::new(1.0, 2).unwrap());
        let key = generate_key(Env::Live).unwrap();
        let record = Record {
            tenant_id: "a".to_owned(),
            key_id: "k".to_owned(),
            expires_at: None,
            usable: true,
            payload: Payload(7, Some(Limit::new(quota.clone(), "a".to_owned()))),
            restriction: crate::verifier::Restriction::new(Some(0b01), &["10.0.0.0/8"]).unwrap(),
        };
        v.insert(&v.hash(key.as_bytes()), record).unwrap();
        let call = |scope, address| match v.verify_and_acquire(
            &header(&key),
            None,
            &limiter,
            1,
            RequestContext { scope, address },
            |p| p.0,
        ) {
            Verdict::Hit(Ok((7, admission))) => admission,
            _ => panic!("expected a hit"),
        };
        for _ in 0..5 {
            assert_eq!(call(None, None), Err(Check::Unchecked));
            assert_eq!(call(Some(0b10), Some("10.0.0.1")), Err(Check::Scope));
            assert_eq!(
                call(Some(0b01), Some("11.0.0.1")),
                Err(Check::SourceAddress)
            );
            assert_eq!(
                call(Some(0b01), Some("not an address")),
                Err(Check::SourceAddress)
            );
        }
        assert!(limiter.is_empty(), "stopped requests charge nothing");
        assert_eq!(call(Some(0b01), Some("10.0.0.1")).unwrap().remaining, 1);
        assert_eq!(call(Some(0), Some("::ffff:10.9.9.9")).unwrap().remaining, 0);
    }

    #[test]
    fn the_cached_handle_survives_eviction_and_other_limiters() {
        let (clock, v, limiter) = setup();
        let quota = Arc::new(Quota::new(1.0, 3).unwrap());
        let key = generate_key(Env::Live).unwrap();
        insert(
            &v,
            &key,
            "a",
            Payload(1, Some(Limit::new(quota.clone(), "a".to_owned()))),
        );
        let charge = |limiter: &Limiter| {
            hit(v.verify_and_acquire(
                &header(&key),
                None,
                limiter,
                1,
                RequestContext::default(),
                |p| p.0,
            ))
            .1
        };
        assert_eq!(charge(&limiter).remaining, 2);
        // Another limiter (on another clock) keeps its own bucket; the handle stays the first's.
        let other_clock: Arc<dyn Clock> = Arc::new(ManualClock::new(0.0).unwrap());
        let other = Limiter::new(100, other_clock).unwrap();
        assert_eq!(charge(&other).remaining, 2);
        assert_eq!(charge(&limiter).remaining, 1);
        // Idle, then pushed out of a full limiter: the record's next charge finds a full bucket.
        clock.advance(10.0).unwrap();
        for i in 0..300 {
            limiter.try_acquire(&format!("churn{i}"), &quota, 0);
        }
        assert_eq!(charge(&limiter).remaining, 2);
        assert_eq!(charge(&limiter).remaining, 1);
        assert!(limiter.len() <= limiter.capacity());
    }

    #[test]
    fn an_unreadable_bucket_id_is_an_error_and_charges_nothing() {
        struct Unreadable;
        impl BucketId for Unreadable {
            type Error = &'static str;
            fn with_id<R>(&self, _f: impl FnOnce(&str) -> R) -> Result<R, &'static str> {
                Err("unreadable")
            }
        }
        let clock = Arc::new(ManualClock::new(0.0).unwrap());
        let v: Verifier<Limit<Unreadable>> =
            Verifier::new(PEPPER, VerifierConfig::default(), clock.clone()).unwrap();
        let limiter = Limiter::new(10, clock).unwrap();
        let key = generate_key(Env::Live).unwrap();
        let quota = Arc::new(Quota::new(1.0, 1).unwrap());
        let record = Record {
            tenant_id: "a".to_owned(),
            key_id: "k".to_owned(),
            expires_at: None,
            usable: true,
            payload: Limit::new(quota, Unreadable),
            restriction: None,
        };
        v.insert(&v.hash(key.as_bytes()), record).unwrap();
        let verdict = v.verify_and_acquire(
            &header(&key),
            None,
            &limiter,
            1,
            RequestContext::default(),
            |_| (),
        );
        assert!(matches!(verdict, Verdict::Hit(Err("unreadable"))));
        assert!(limiter.is_empty());
    }
}
