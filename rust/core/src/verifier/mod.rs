//! The hot path: from an `Authorization` header to a cached key record in one call.
//!
//! [`Verifier::verify_with`] parses the bearer token (refusing malformed keys without
//! hashing), computes the keyed hash, and looks it up in a bounded, sharded in-process cache
//! of key records (`table`). The cache is not the truth (the database is): on a miss the
//! caller looks the digest up, then [`Verifier::insert`]s a record or
//! [`Verifier::insert_refusal`]s it, and verifies again. A host bound to a tenant
//! (`domains`) refuses every other tenant's keys.
//!
//! [`Verifier::verify_and_acquire`] also charges the rate limit cached with the record
//! (`acquire`).
//!
//! Verification takes one shard read lock (plus the domain map's read lock when a host is
//! given and any domain is bound, never both at once).

mod acquire;
mod domains;
mod restrict;
mod table;

use std::fmt;
use std::sync::Arc;

use crate::clock::{Clock, NANOS_PER_SECOND};
use crate::error::{CoreError, CoreResult};
use crate::header::bearer_token;
use crate::keys::{check_key, Digest, DisplayPrefix, KeyHasher};
use crate::shard::Fingerprinter;

pub use self::acquire::{Acquired, Admission, BucketId, Charge, Limit, Limited, UNLIMITED};
use self::domains::Domains;
pub use self::restrict::{Check, Network, RequestContext, Restriction};
use self::table::{deadline, Entry, Table};

/// What to cache for a key found in the database.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<P> {
    /// The tenant the key belongs to.
    pub tenant_id: String,
    /// The key's own id (for [`Verifier::invalidate_key`]).
    pub key_id: String,
    /// Unix seconds after which the key is refused; `None` for never.
    pub expires_at: Option<f64>,
    /// Whether the key and its tenant are both active.
    pub usable: bool,
    /// What a hit returns.
    pub payload: P,
    /// The scopes and networks the key is limited to (`None`: none), checked by
    /// [`Verifier::verify_and_acquire`] before it charges anything.
    pub restriction: Option<Restriction>,
}

/// A cache miss: look `digest` up in the database, insert the result, verify again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Miss {
    /// The keyed hash of the presented key.
    pub digest: Digest,
    /// The key's display prefix, safe to log.
    pub display_prefix: DisplayPrefix,
}

/// The outcome of a verification. A refusal never says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<R> {
    /// A usable, unexpired key of the right tenant: the hit callback's result.
    Hit(R),
    /// Not cached, or cached too long ago.
    Miss(Miss),
    /// Refused, for whatever reason.
    Refused,
}

/// Cache sizing and lifetimes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VerifierConfig {
    /// Most entries held (records and refusals together), approximately.
    pub capacity: usize,
    /// Seconds a record stays valid in the cache.
    pub ttl_seconds: f64,
    /// Seconds a refusal stays valid in the cache.
    pub negative_ttl_seconds: f64,
}

impl Default for VerifierConfig {
    fn default() -> Self {
        Self {
            capacity: 1_000_000,
            ttl_seconds: 30.0,
            negative_ttl_seconds: 5.0,
        }
    }
}

/// The bounded, sharded cache of key records with its key hasher and domain bindings.
pub struct Verifier<P> {
    table: Table<P>,
    hasher: KeyHasher,
    ttl_ns: u64,
    negative_ttl_ns: u64,
    clock: Arc<dyn Clock>,
    domains: Domains,
    fingerprints: Fingerprinter,
}

impl<P> fmt::Debug for Verifier<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("shards", &self.table.shard_count())
            .field("capacity", &self.table.capacity())
            .field("ttl_ns", &self.ttl_ns)
            .field("negative_ttl_ns", &self.negative_ttl_ns)
            .finish_non_exhaustive()
    }
}

fn ttl_ns(seconds: f64, message: &'static str) -> CoreResult<u64> {
    if !seconds.is_finite() || seconds <= 0.0 {
        return Err(CoreError::InvalidArgument(message));
    }
    // Finite and positive; `as` saturates at u64::MAX.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let ns = (seconds * NANOS_PER_SECOND).ceil() as u64;
    Ok(ns.max(1))
}

impl<P> Verifier<P> {
    /// A verifier hashing with `pepper`.
    ///
    /// # Errors
    /// [`CoreError::InvalidArgument`] for a pepper under 16 bytes, a zero capacity, or a TTL
    /// that is not finite and positive.
    pub fn new(pepper: &[u8], config: VerifierConfig, clock: Arc<dyn Clock>) -> CoreResult<Self> {
        let hasher = KeyHasher::new(pepper)?;
        if config.capacity == 0 {
            return Err(CoreError::InvalidArgument("capacity must be at least 1"));
        }
        let ttl = ttl_ns(
            config.ttl_seconds,
            "ttl_seconds must be finite and positive",
        )?;
        let negative_ttl = ttl_ns(
            config.negative_ttl_seconds,
            "negative_ttl_seconds must be finite and positive",
        )?;
        Ok(Self {
            table: Table::new(config.capacity),
            hasher,
            ttl_ns: ttl,
            negative_ttl_ns: negative_ttl,
            clock,
            domains: Domains::new(),
            fingerprints: Fingerprinter::new(),
        })
    }

    /// The keyed hash of `key` (any bytes; not checked for format).
    #[must_use]
    #[inline]
    pub fn hash(&self, key: &[u8]) -> Digest {
        self.hasher.hash(key)
    }

    /// Verifies an `Authorization` header value; on a hit, returns `on_hit(payload)`, called
    /// under the shard's read lock (keep it short: clone a reference).
    #[inline]
    pub fn verify_with<R>(
        &self,
        header: &[u8],
        host: Option<&[u8]>,
        on_hit: impl FnOnce(&P) -> R,
    ) -> Verdict<R> {
        self.verify_timed(header, host, |p, _, _| on_hit(p))
    }

    /// [`Verifier::verify_with`], also passing the callback the record's restriction and the
    /// monotonic time (ns) the verdict was reached at, so a caller can reuse it (say, for a
    /// rate limiter on the same clock) instead of reading the clock again.
    #[inline]
    pub fn verify_timed<R>(
        &self,
        header: &[u8],
        host: Option<&[u8]>,
        on_hit: impl FnOnce(&P, Option<&Restriction>, u64) -> R,
    ) -> Verdict<R> {
        let Some(token) = bearer_token(header) else {
            return Verdict::Refused;
        };
        if check_key(token).is_err() {
            return Verdict::Refused;
        }
        let Some(display_prefix) = DisplayPrefix::of_checked_key(token) else {
            return Verdict::Refused;
        };
        let digest = self.hasher.hash(token);
        self.lookup_timed(&digest, display_prefix, host, on_hit)
    }

    /// Looks up an already computed digest (steps 3–7 of [`Verifier::verify_with`]).
    pub fn lookup<R>(
        &self,
        digest: &Digest,
        display_prefix: DisplayPrefix,
        host: Option<&[u8]>,
        on_hit: impl FnOnce(&P) -> R,
    ) -> Verdict<R> {
        self.lookup_timed(digest, display_prefix, host, |p, _, _| on_hit(p))
    }

    #[inline]
    fn lookup_timed<R>(
        &self,
        digest: &Digest,
        display_prefix: DisplayPrefix,
        host: Option<&[u8]>,
        on_hit: impl FnOnce(&P, Option<&Restriction>, u64) -> R,
    ) -> Verdict<R> {
        let bound = self.domains.bound_tenant(host);
        self.table.find(
            digest,
            || self.clock.monotonic_ns(),
            |fresh, now| {
                let Some(entry) = fresh else {
                    return Verdict::Miss(Miss {
                        digest: *digest,
                        display_prefix,
                    });
                };
                let Some(payload) = &entry.payload else {
                    return Verdict::Refused;
                };
                if bound.is_some_and(|t| t != entry.tenant)
                    || (entry.expires_at != f64::INFINITY
                        && (entry.expires_at == f64::NEG_INFINITY
                            || self.clock.unix_seconds() >= entry.expires_at))
                {
                    return Verdict::Refused;
                }
                Verdict::Hit(on_hit(payload, entry.restriction.as_deref(), now))
            },
        )
    }

    /// The clock this verifier reads.
    #[must_use]
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Caches a record for `digest` for the TTL, replacing whatever had the same index.
    ///
    /// # Errors
    /// [`CoreError::InvalidArgument`] if `expires_at` is NaN.
    pub fn insert(&self, digest: &Digest, record: Record<P>) -> CoreResult<()> {
        self.insert_for_ns(digest, record, self.ttl_ns)
    }

    /// [`Verifier::insert`] for `ttl_seconds` instead of the TTL (a caller that knows it will
    /// hear of every change in time may trust a record longer).
    ///
    /// # Errors
    /// [`CoreError::InvalidArgument`] if `expires_at` is NaN or `ttl_seconds` is not finite
    /// and positive.
    pub fn insert_for(
        &self,
        digest: &Digest,
        record: Record<P>,
        ttl_seconds: f64,
    ) -> CoreResult<()> {
        let ttl = ttl_ns(ttl_seconds, "ttl_seconds must be finite and positive")?;
        self.insert_for_ns(digest, record, ttl)
    }

    fn insert_for_ns(&self, digest: &Digest, record: Record<P>, ttl: u64) -> CoreResult<()> {
        let expires_at = match record.expires_at {
            None => f64::INFINITY,
            Some(t) if t.is_nan() => {
                return Err(CoreError::InvalidArgument("expires_at must not be NaN"))
            }
            Some(t) => t,
        };
        let now = self.clock.monotonic_ns();
        let entry = Entry::record(
            *digest,
            deadline(now, ttl),
            if record.usable {
                expires_at
            } else {
                f64::NEG_INFINITY
            },
            self.fingerprints.of(&record.key_id),
            self.fingerprints.of(&record.tenant_id),
            record.payload,
            record.restriction.map(Box::new),
        );
        self.table.put(entry, now);
        Ok(())
    }

    /// Caches a refusal for `digest` (a key the database does not know), for the negative TTL.
    pub fn insert_refusal(&self, digest: &Digest) {
        let now = self.clock.monotonic_ns();
        let entry = Entry::refusal(*digest, deadline(now, self.negative_ttl_ns));
        self.table.put(entry, now);
    }

    /// Drops the cached record of `key_id`; whether there was one.
    pub fn invalidate_key(&self, key_id: &str) -> bool {
        self.table.remove_key(self.fingerprints.of(key_id))
    }

    /// Drops every cached record of `tenant_id`; how many.
    pub fn invalidate_tenant(&self, tenant_id: &str) -> usize {
        self.table.remove_tenant(self.fingerprints.of(tenant_id))
    }

    /// Binds a host name to a tenant: keys of other tenants are refused on that host.
    ///
    /// # Errors
    /// [`CoreError::InvalidArgument`] if the domain is empty or too long once normalised.
    pub fn bind_domain(&self, domain: &str, tenant_id: &str) -> CoreResult<()> {
        self.domains.bind(domain, self.fingerprints.of(tenant_id))
    }

    /// Removes a domain binding (no error if there was none).
    pub fn unbind_domain(&self, domain: &str) {
        self.domains.unbind(domain);
    }

    /// Drops every cached entry (domain bindings stay).
    pub fn clear(&self) {
        self.table.clear();
    }

    /// Makes every record that would stay fresh longer than `within_seconds` go stale within
    /// them instead, each at its own point of that span (spread by its digest, so the lookups
    /// that follow do not all come at once); refusals are left alone. How many were shortened.
    ///
    /// # Errors
    /// [`CoreError::InvalidArgument`] if `within_seconds` is not finite and positive.
    pub fn shorten(&self, within_seconds: f64) -> CoreResult<usize> {
        let within = ttl_ns(within_seconds, "within_seconds must be finite and positive")?;
        Ok(self.table.shorten(self.clock.monotonic_ns(), within))
    }

    /// Entries held: records and refusals, including stale ones not yet evicted.
    #[must_use]
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether no entry is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most entries held.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.table.capacity()
    }
}

impl<P: Clone> Verifier<P> {
    /// [`Verifier::verify_with`] returning a clone of the payload.
    pub fn verify(&self, header: &[u8], host: Option<&[u8]>) -> Verdict<P> {
        self.verify_with(header, host, P::clone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::keys::{generate_key, Env, ParsedKey};
    use proptest::prelude::*;

    const PEPPER: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn setup(capacity: usize) -> (Arc<ManualClock>, Verifier<u32>) {
        let clock = Arc::new(ManualClock::new(1_700_000_000.0).unwrap());
        let config = VerifierConfig {
            capacity,
            ttl_seconds: 30.0,
            negative_ttl_seconds: 5.0,
        };
        let v = Verifier::new(PEPPER, config, clock.clone()).unwrap();
        (clock, v)
    }

    fn record(tenant: &str, key: &str, payload: u32) -> Record<u32> {
        Record {
            tenant_id: tenant.to_owned(),
            key_id: key.to_owned(),
            expires_at: None,
            usable: true,
            payload,
            restriction: None,
        }
    }

    fn header(key: &str) -> Vec<u8> {
        format!("Bearer {key}").into_bytes()
    }

    /// Verifies, inserting on a miss as the caller would.
    fn miss_digest(v: &Verifier<u32>, key: &str) -> Digest {
        match v.verify(&header(key), None) {
            Verdict::Miss(m) => {
                assert_eq!(m.display_prefix.as_str(), &key[..14]);
                m.digest
            }
            other => panic!("expected a miss, got {other:?}"),
        }
    }

    #[test]
    fn miss_insert_hit() {
        let (_c, v) = setup(1000);
        let key = generate_key(Env::Live).unwrap();
        let d = miss_digest(&v, &key);
        assert_eq!(d, v.hash(key.as_bytes()));
        v.insert(&d, record("t1", "k1", 7)).unwrap();
        assert_eq!(v.verify(&header(&key), None), Verdict::Hit(7));
        assert_eq!(v.len(), 1);
    }

    #[test]
    fn malformed_headers_and_keys_are_refused_without_lookup() {
        let (_c, v) = setup(1000);
        let key = generate_key(Env::Live).unwrap();
        let mut typo = key.clone().into_bytes();
        typo[20] = if typo[20] == b'a' { b'b' } else { b'a' };
        for h in [
            b"".to_vec(),
            b"Bearer".to_vec(),
            format!("Basic {key}").into_bytes(),
            format!("Bearer{key}").into_bytes(),
            format!("Bearer {key} extra").into_bytes(),
            [b"Bearer ".to_vec(), typo].concat(),
            b"Bearer tg_live_short".to_vec(),
        ] {
            assert_eq!(v.verify(&h, None), Verdict::Refused);
        }
    }

    #[test]
    fn every_refusal_kind() {
        let (clock, v) = setup(1000);
        let unusable = generate_key(Env::Live).unwrap();
        v.insert(
            &v.hash(unusable.as_bytes()),
            Record {
                usable: false,
                ..record("t", "k-unusable", 1)
            },
        )
        .unwrap();
        assert_eq!(v.verify(&header(&unusable), None), Verdict::Refused);

        let expiring = generate_key(Env::Live).unwrap();
        v.insert(
            &v.hash(expiring.as_bytes()),
            Record {
                expires_at: Some(1_700_000_010.0),
                ..record("t", "k-exp", 2)
            },
        )
        .unwrap();
        assert_eq!(v.verify(&header(&expiring), None), Verdict::Hit(2));
        clock.set_unix(1_700_000_010.0).unwrap();
        assert_eq!(v.verify(&header(&expiring), None), Verdict::Refused);

        // Expired since forever (as the reference mirror has it, and the clock is not read).
        let long_gone = generate_key(Env::Live).unwrap();
        v.insert(
            &v.hash(long_gone.as_bytes()),
            Record {
                expires_at: Some(f64::NEG_INFINITY),
                ..record("t", "k-gone", 3)
            },
        )
        .unwrap();
        assert_eq!(v.verify(&header(&long_gone), None), Verdict::Refused);

        let unknown = generate_key(Env::Test).unwrap();
        let d = miss_digest(&v, &unknown);
        v.insert_refusal(&d);
        assert_eq!(v.verify(&header(&unknown), None), Verdict::Refused);
    }

    #[test]
    fn ttl_and_negative_ttl() {
        let (clock, v) = setup(1000);
        let good = generate_key(Env::Live).unwrap();
        let bad = generate_key(Env::Live).unwrap();
        v.insert(&v.hash(good.as_bytes()), record("t", "k", 1))
            .unwrap();
        v.insert_refusal(&v.hash(bad.as_bytes()));
        clock.advance(4.999).unwrap();
        assert_eq!(v.verify(&header(&good), None), Verdict::Hit(1));
        assert_eq!(v.verify(&header(&bad), None), Verdict::Refused);
        clock.advance(0.001).unwrap();
        assert!(matches!(v.verify(&header(&bad), None), Verdict::Miss(_)));
        clock.advance(24.999).unwrap();
        assert_eq!(v.verify(&header(&good), None), Verdict::Hit(1));
        clock.advance(0.001).unwrap();
        assert!(matches!(v.verify(&header(&good), None), Verdict::Miss(_)));
    }

    #[test]
    fn a_record_inserted_for_longer_lives_longer_until_shortened() {
        let (clock, v) = setup(1000);
        let long: Vec<String> = (0..50).map(|_| generate_key(Env::Live).unwrap()).collect();
        for (i, k) in long.iter().enumerate() {
            let key_id = format!("k{i}");
            v.insert_for(&v.hash(k.as_bytes()), record("t", &key_id, 1), 60.0)
                .unwrap();
        }
        let short = generate_key(Env::Live).unwrap();
        v.insert(&v.hash(short.as_bytes()), record("t", "short", 2))
            .unwrap();
        let unknown = generate_key(Env::Live).unwrap();
        v.insert_refusal(&v.hash(unknown.as_bytes()));
        clock.advance(30.0).unwrap();
        assert!(matches!(v.verify(&header(&short), None), Verdict::Miss(_)));
        assert!(long
            .iter()
            .all(|k| v.verify(&header(k), None) == Verdict::Hit(1)));

        // Shortened to within 2 s: each goes stale at its own point of those 2 s, none later.
        assert_eq!(v.shorten(2.0).unwrap(), long.len());
        assert_eq!(v.shorten(2.0).unwrap(), 0, "already within 2 s");
        clock.advance(1.0).unwrap();
        let stale = long
            .iter()
            .filter(|k| matches!(v.verify(&header(k), None), Verdict::Miss(_)))
            .count();
        assert!(
            0 < stale && stale < long.len(),
            "spread: {stale} of {} stale",
            long.len()
        );
        clock.advance(1.0).unwrap();
        assert!(long
            .iter()
            .all(|k| matches!(v.verify(&header(k), None), Verdict::Miss(_))));
        assert!(v.shorten(f64::NAN).is_err());
        assert!(v
            .insert_for(&v.hash(short.as_bytes()), record("t", "s", 2), 0.0)
            .is_err());
    }

    #[test]
    fn shortening_leaves_refusals_and_short_records_alone() {
        let (clock, v) = setup(1000);
        let good = generate_key(Env::Live).unwrap();
        let bad = generate_key(Env::Live).unwrap();
        v.insert_for(&v.hash(good.as_bytes()), record("t", "k", 1), 0.5)
            .unwrap();
        v.insert_refusal(&v.hash(bad.as_bytes()));
        assert_eq!(v.shorten(1.0).unwrap(), 0);
        clock.advance(4.9).unwrap();
        assert_eq!(v.verify(&header(&bad), None), Verdict::Refused);
    }

    #[test]
    fn invalidations() {
        let (_c, v) = setup(1000);
        let keys: Vec<String> = (0..10).map(|_| generate_key(Env::Live).unwrap()).collect();
        for (i, k) in keys.iter().enumerate() {
            let tenant = if i < 6 { "a" } else { "b" };
            v.insert(
                &v.hash(k.as_bytes()),
                record(tenant, &format!("k{i}"), u32::try_from(i).unwrap()),
            )
            .unwrap();
        }
        assert!(v.invalidate_key("k0"));
        assert!(!v.invalidate_key("k0"));
        assert!(!v.invalidate_key("nope"));
        assert!(matches!(
            v.verify(&header(&keys[0]), None),
            Verdict::Miss(_)
        ));
        assert_eq!(v.invalidate_tenant("a"), 5);
        assert_eq!(v.invalidate_tenant("a"), 0);
        assert_eq!(v.len(), 4);
        for k in &keys[6..] {
            assert!(matches!(v.verify(&header(k), None), Verdict::Hit(_)));
        }
        v.clear();
        assert!(v.is_empty());
    }

    #[test]
    fn reinserting_a_key_id_under_another_digest_keeps_the_index_exact() {
        let (_c, v) = setup(1000);
        let d1 = [1u8; 32];
        let mut d2 = [1u8; 32];
        d2[0] = 2; // same shard (bytes 8..16), different index
        v.insert(&d1, record("t", "k", 1)).unwrap();
        v.insert(&d2, record("t", "k", 2)).unwrap();
        assert_eq!(v.len(), 1);
        assert!(v.invalidate_key("k"));
        assert!(v.is_empty());
    }

    #[test]
    fn index_collision_replaces_older_entry() {
        let (_c, v) = setup(1000);
        let d1 = [7u8; 32];
        let mut d2 = [7u8; 32];
        d2[31] = 8; // same 8-byte index, different digest
        v.insert(&d1, record("t", "k1", 1)).unwrap();
        v.insert(&d2, record("t", "k2", 2)).unwrap();
        assert_eq!(v.len(), 1);
        let key = generate_key(Env::Live).unwrap();
        let p = ParsedKey::parse(key.as_bytes()).unwrap().display_prefix();
        assert!(matches!(v.lookup(&d1, p, None, |x| *x), Verdict::Miss(_)));
        assert_eq!(v.lookup(&d2, p, None, |x| *x), Verdict::Hit(2));
        assert!(!v.invalidate_key("k1"));
        assert!(v.invalidate_key("k2"));
    }

    #[test]
    fn domains_bind_tenants() {
        let (_c, v) = setup(1000);
        let ka = generate_key(Env::Live).unwrap();
        let kb = generate_key(Env::Live).unwrap();
        v.insert(&v.hash(ka.as_bytes()), record("a", "ka", 1))
            .unwrap();
        v.insert(&v.hash(kb.as_bytes()), record("b", "kb", 2))
            .unwrap();
        v.bind_domain("A.example.com.", "a").unwrap();
        v.bind_domain("[::1]", "a").unwrap();
        for host in [
            &b"a.example.com"[..],
            b"A.EXAMPLE.COM:8443",
            b"a.example.com.",
            b"[::1]:443",
            b"::1",
        ] {
            assert_eq!(
                v.verify(&header(&ka), Some(host)),
                Verdict::Hit(1),
                "{host:?}"
            );
            assert_eq!(
                v.verify(&header(&kb), Some(host)),
                Verdict::Refused,
                "{host:?}"
            );
        }
        // Unbound hosts and no host: any tenant.
        assert_eq!(
            v.verify(&header(&kb), Some(b"other.example")),
            Verdict::Hit(2)
        );
        assert_eq!(v.verify(&header(&kb), None), Verdict::Hit(2));
        v.unbind_domain("a.example.com");
        assert_eq!(
            v.verify(&header(&kb), Some(b"a.example.com")),
            Verdict::Hit(2)
        );
        assert!(v.bind_domain("", "a").is_err());
        assert!(v.bind_domain(".", "a").is_err());
        assert!(v.bind_domain(&"x".repeat(300), "a").is_err());
    }

    #[test]
    fn capacity_is_bounded_and_evicts_expired_then_oldest() {
        let (clock, v) = setup(64);
        let old: Vec<String> = (0..64).map(|_| generate_key(Env::Live).unwrap()).collect();
        for (i, k) in old.iter().enumerate() {
            v.insert(&v.hash(k.as_bytes()), record("t", &format!("old{i}"), 0))
                .unwrap();
            clock.advance(0.001).unwrap();
        }
        assert!(v.len() <= v.capacity());
        for i in 0..500 {
            let k = generate_key(Env::Live).unwrap();
            v.insert(&v.hash(k.as_bytes()), record("t", &format!("new{i}"), 1))
                .unwrap();
            assert!(v.len() <= v.capacity());
        }
        // The newest entry is still there.
        let k = generate_key(Env::Live).unwrap();
        v.insert(&v.hash(k.as_bytes()), record("t", "last", 9))
            .unwrap();
        assert_eq!(v.verify(&header(&k), None), Verdict::Hit(9));
        // Invalidation after evictions stays consistent.
        let held = v.len();
        assert_eq!(v.invalidate_tenant("t"), held);
        assert!(v.is_empty());
    }

    #[test]
    fn a_flood_of_refusals_evicts_refusals_not_records() {
        // As the service runs it: records trusted 1 s, refusals cached 5 s (so a record's
        // deadline comes before every refusal's).
        let clock = Arc::new(ManualClock::new(1_700_000_000.0).unwrap());
        let config = VerifierConfig {
            capacity: 256,
            ttl_seconds: 1.0,
            negative_ttl_seconds: 5.0,
        };
        let v = Verifier::new(PEPPER, config, clock.clone()).unwrap();
        let real: Vec<String> = (0..64).map(|_| generate_key(Env::Live).unwrap()).collect();
        for (i, k) in real.iter().enumerate() {
            v.insert(&v.hash(k.as_bytes()), record("t", &format!("real{i}"), 7))
                .unwrap();
        }
        clock.advance(0.5).unwrap(); // the records are older than every refusal below
        for _ in 0..5_000 {
            let made_up = generate_key(Env::Live).unwrap();
            v.insert_refusal(&v.hash(made_up.as_bytes()));
            assert!(v.len() <= v.capacity());
        }
        for k in &real {
            assert_eq!(
                v.verify(&header(k), None),
                Verdict::Hit(7),
                "a real record was evicted"
            );
        }
    }

    #[test]
    fn config_validation() {
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(0.0).unwrap());
        let ok = VerifierConfig::default();
        assert!(Verifier::<u8>::new(b"short", ok, clock.clone()).is_err());
        for bad in [
            VerifierConfig { capacity: 0, ..ok },
            VerifierConfig {
                ttl_seconds: 0.0,
                ..ok
            },
            VerifierConfig {
                ttl_seconds: f64::NAN,
                ..ok
            },
            VerifierConfig {
                negative_ttl_seconds: -1.0,
                ..ok
            },
        ] {
            assert!(Verifier::<u8>::new(PEPPER, bad, clock.clone()).is_err());
        }
        let v = Verifier::<u8>::new(PEPPER, ok, clock).unwrap();
        let r = Record {
            tenant_id: String::new(),
            key_id: String::new(),
            expires_at: Some(f64::NAN),
            usable: true,
            payload: 0,
            restriction: None,
        };
        assert!(v.insert(&[0; 32], r).is_err());
    }

    #[test]
    fn hammer_from_many_threads() {
        let (_c, v) = setup(256);
        let keys: Vec<String> = (0..64).map(|_| generate_key(Env::Live).unwrap()).collect();
        std::thread::scope(|s| {
            for t in 0..4u32 {
                let v = &v;
                let keys = &keys;
                s.spawn(move || {
                    for round in 0..300u32 {
                        for (i, k) in keys.iter().enumerate() {
                            match v.verify(&header(k), Some(b"h.example")) {
                                Verdict::Miss(m) => v
                                    .insert(&m.digest, record("t", &format!("k{i}"), t))
                                    .unwrap(),
                                Verdict::Hit(_) | Verdict::Refused => {}
                            }
                        }
                        if round % 50 == 0 {
                            v.invalidate_key(&format!("k{}", round % 64));
                            v.invalidate_tenant("t");
                            v.bind_domain("h.example", "t").unwrap();
                        }
                    }
                });
            }
        });
        assert!(v.len() <= 64);
    }

    proptest! {
        #[test]
        fn verify_never_panics(header in proptest::collection::vec(any::<u8>(), 0..120),
                               host in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300))) {
            let (_c, v) = setup(16);
            v.bind_domain("x", "t").unwrap();
            let r = v.verify(&header, host.as_deref());
            prop_assert!(!matches!(r, Verdict::Hit(_)));
        }

        #[test]
        fn slab_and_indices_match_a_model(ops in proptest::collection::vec(
            (0u8..4, 0u8..12, 0u8..5, 0u8..3), 1..200)) {
            // One shard (capacity 1000): digest d → (key, tenant) or a refusal (None).
            let (_c, v) = setup(1000);
            let mut model = std::collections::BTreeMap::<u8, Option<(u8, u8)>>::new();
            for (op, d, k, t) in ops {
                let digest = [d; 32];
                match op {
                    0 => {
                        model.remove(&d);
                        model.retain(|_, e| e.is_none_or(|(kk, _)| kk != k));
                        model.insert(d, Some((k, t)));
                        v.insert(&digest, record(&format!("t{t}"), &format!("k{k}"), u32::from(d))).unwrap();
                    }
                    1 => {
                        model.insert(d, None);
                        v.insert_refusal(&digest);
                    }
                    2 => {
                        let had = model.values().any(|e| e.is_some_and(|(kk, _)| kk == k));
                        model.retain(|_, e| e.is_none_or(|(kk, _)| kk != k));
                        prop_assert_eq!(v.invalidate_key(&format!("k{k}")), had);
                    }
                    _ => {
                        let before = model.len();
                        model.retain(|_, e| e.is_none_or(|(_, tt)| tt != t));
                        prop_assert_eq!(v.invalidate_tenant(&format!("t{t}")), before - model.len());
                    }
                }
                prop_assert_eq!(v.len(), model.len());
                let key = generate_key(Env::Live).unwrap();
                let p = ParsedKey::parse(key.as_bytes()).unwrap().display_prefix();
                for dd in 0u8..12 {
                    let got = v.lookup(&[dd; 32], p, None, |x| *x);
                    let want = match model.get(&dd) {
                        None => Verdict::Miss(Miss { digest: [dd; 32], display_prefix: p }),
                        Some(None) => Verdict::Refused,
                        Some(Some(_)) => Verdict::Hit(u32::from(dd)),
                    };
                    prop_assert_eq!(got, want);
                }
            }
        }

        #[test]
        fn only_the_inserted_key_hits(n in 1usize..20) {
            let (_c, v) = setup(1000);
            let keys: Vec<String> = (0..n).map(|_| generate_key(Env::Test).unwrap()).collect();
            v.insert(&v.hash(keys[0].as_bytes()), record("t", "k", 1)).unwrap();
            prop_assert_eq!(v.verify(&header(&keys[0]), None), Verdict::Hit(1));
            for k in &keys[1..] {
                prop_assert!(matches!(v.verify(&header(k), None), Verdict::Miss(_)), "other key hit");
            }
        }
    }
}
