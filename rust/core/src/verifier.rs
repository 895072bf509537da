//! The hot path: from an `Authorization` header to a cached key record in one call.
//!
//! [`Verifier::verify_with`] parses the bearer token (refusing malformed keys without
//! hashing), computes the keyed hash, and looks it up in a bounded, sharded in-process cache
//! of key records. The cache is not the truth (the database is): on a miss the caller looks
//! the digest up, then [`Verifier::insert`]s a record or [`Verifier::insert_refusal`]s it, and
//! verifies again.
//!
//! # Layout
//!
//! * Entries are indexed by the first 8 bytes of the digest (already uniformly random, so an
//!   identity hasher), in a shard chosen by bytes 8..16; a hit compares all 32 bytes in
//!   constant time. A different digest with the same index replaces the older entry.
//! * Entries live in a per-shard slab; the tables hold 4-byte slot numbers (by index, by
//!   key), and each tenant's records are chained through their slots (about 164 B per
//!   record all-in, with the binding's payload).
//! * Key and tenant ids are stored as 128-bit keyed fingerprints, not strings; the per-shard
//!   key table and tenant lists make invalidation proportional to the shard count plus the
//!   entries removed, not the table size.
//! * Each shard holds at most its share of the capacity. When a new entry would exceed it,
//!   the shard drops entries whose TTL has passed, then the oldest (by TTL deadline, so
//!   refusals with their shorter TTL go first) down to 7/8 of its share, so the work is
//!   amortised: *evict expired, then oldest*.
//! * Verification takes one shard read lock (plus the domain map's read lock when a host is
//!   given and any domain is bound, never both at once).

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use hashbrown::HashTable;
use parking_lot::RwLock;
use subtle::ConstantTimeEq;

use crate::clock::{Clock, NANOS_PER_SECOND};
use crate::error::{CoreError, CoreResult};
use crate::keys::{check_key, Digest, DisplayPrefix, KeyHasher};
use crate::limiter::{keep_after_eviction, shard_layout, shard_of, Fp, IdentityBuild};

/// Longest host name (after normalisation) that can be bound to a tenant.
pub const MAX_DOMAIN_LEN: usize = 255;

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

/// No slot: the end of a tenant's list.
const NIL: u32 = u32::MAX;

struct Entry<P> {
    digest: Digest,
    /// Monotonic ns after which the entry is stale. Never 0 (the TTLs are at least 1 ns), so
    /// an empty slot (`Option<Entry>`) costs no tag.
    deadline_ns: NonZeroU64,
    /// Unix seconds after which the key is refused: infinity for never, -infinity for a key
    /// that is not usable (one field less than a separate flag).
    expires_at: f64,
    key: Fp,
    tenant: Fp,
    /// The neighbouring slots in the tenant's list (records only), or [`NIL`].
    prev: u32,
    next: u32,
    /// `None` for a cached refusal.
    payload: Option<P>,
}

/// The deadline `ttl_ns` (at least 1) after `now`.
#[inline]
fn deadline(now: u64, ttl_ns: u64) -> NonZeroU64 {
    NonZeroU64::new(now.saturating_add(ttl_ns)).unwrap_or(NonZeroU64::MAX)
}

/// The entry index of a digest: its first 8 bytes (uniformly random).
#[inline]
fn index_of(digest: &Digest) -> u64 {
    let mut lo = [0u8; 8];
    lo.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(lo)
}

/// One shard's entries: a slab of slots, with tables of 4-byte slot numbers over it (by
/// digest index, by key), and each tenant's records chained through their slots. Per entry,
/// that is the entry plus about 12 bytes, where maps of 64-bit indices and a B-tree of
/// (tenant, index) pairs cost about 100.
struct Shard<P> {
    slots: Vec<Option<Entry<P>>>,
    /// Empty slots, for reuse.
    free: Vec<u32>,
    /// Slots by digest index (hashed by the index itself).
    by_index: HashTable<u32>,
    /// Record slots by key fingerprint: one per key id.
    by_key: HashTable<u32>,
    /// The first slot of each tenant's list.
    tenants: HashMap<Fp, u32, IdentityBuild>,
}

impl<P> Default for Shard<P> {
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            by_index: HashTable::new(),
            by_key: HashTable::new(),
            tenants: HashMap::default(),
        }
    }
}

/// The entry in `slot` (always occupied when reached through a table).
#[inline]
fn occupied<P>(slots: &[Option<Entry<P>>], slot: u32) -> Option<&Entry<P>> {
    slots.get(slot as usize).and_then(Option::as_ref)
}

impl<P> Shard<P> {
    fn len(&self) -> usize {
        self.by_index.len()
    }

    #[inline]
    fn get(&self, index: u64) -> Option<&Entry<P>> {
        let slots = &self.slots;
        let &slot = self.by_index.find(index, |&s| {
            occupied(slots, s).is_some_and(|e| index_of(&e.digest) == index)
        })?;
        occupied(slots, slot)
    }

    /// The slot of `key`'s record, if any.
    fn slot_of_key(&self, key: Fp) -> Option<u32> {
        let slots = &self.slots;
        self.by_key
            .find(key.0, |&s| occupied(slots, s).is_some_and(|e| e.key == key))
            .copied()
    }

    fn remove(&mut self, index: u64) -> Option<Entry<P>> {
        let slots = &self.slots;
        let slot = *self.by_index.find(index, |&s| {
            occupied(slots, s).is_some_and(|e| index_of(&e.digest) == index)
        })?;
        self.remove_slot(slot)
    }

    fn remove_slot(&mut self, slot: u32) -> Option<Entry<P>> {
        let entry = self.slots.get_mut(slot as usize)?.take()?;
        self.free.push(slot);
        if let Ok(found) = self
            .by_index
            .find_entry(index_of(&entry.digest), |&s| s == slot)
        {
            found.remove();
        }
        if entry.payload.is_some() {
            if let Ok(found) = self.by_key.find_entry(entry.key.0, |&s| s == slot) {
                found.remove();
            }
            // Unlink from the tenant's list.
            match self
                .slots
                .get_mut(entry.prev as usize)
                .and_then(Option::as_mut)
            {
                Some(prev) => prev.next = entry.next,
                None if entry.next == NIL => {
                    self.tenants.remove(&entry.tenant);
                }
                None => {
                    self.tenants.insert(entry.tenant, entry.next);
                }
            }
            if let Some(next) = self
                .slots
                .get_mut(entry.next as usize)
                .and_then(Option::as_mut)
            {
                next.prev = entry.prev;
            }
        }
        Some(entry)
    }

    /// Inserts `entry`; the caller has removed any entry with the same index.
    fn insert(&mut self, mut entry: Entry<P>, graveyard: &mut Vec<Entry<P>>) {
        let record = entry.payload.is_some();
        if record {
            // One cached entry per key id per shard, so the key index stays exact.
            if let Some(old) = self.slot_of_key(entry.key) {
                graveyard.extend(self.remove_slot(old));
            }
        }
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            // A shard holds far fewer than 2^32 - 1 entries.
            #[allow(clippy::cast_possible_truncation)]
            let s = (self.slots.len() - 1) as u32;
            s
        });
        let index = index_of(&entry.digest);
        let key = entry.key.0;
        entry.prev = NIL;
        entry.next = NIL;
        if record {
            // Push onto the front of the tenant's list.
            if let Some(head) = self.tenants.insert(entry.tenant, slot) {
                entry.next = head;
                if let Some(h) = self.slots.get_mut(head as usize).and_then(Option::as_mut) {
                    h.prev = slot;
                }
            }
        }
        self.slots[slot as usize] = Some(entry);
        let slots = &self.slots;
        self.by_index.insert_unique(index, slot, |&s| {
            occupied(slots, s).map_or(0, |e| index_of(&e.digest))
        });
        if record {
            self.by_key
                .insert_unique(key, slot, |&s| occupied(slots, s).map_or(0, |e| e.key.0));
        }
    }

    /// The slots of `tenant`'s records.
    fn tenant_slots(&self, tenant: Fp) -> Vec<u32> {
        let mut out = Vec::new();
        let mut at = self.tenants.get(&tenant).copied().unwrap_or(NIL);
        while let Some(e) = occupied(&self.slots, at) {
            out.push(at);
            at = e.next;
        }
        out
    }

    /// Drops stale entries, then the oldest, down to `keep`.
    fn evict(&mut self, now: u64, keep: usize, graveyard: &mut Vec<Entry<P>>) {
        let live = || {
            self.slots
                .iter()
                .zip(0u32..)
                .filter_map(|(e, s)| Some((e.as_ref()?, s)))
        };
        let stale: Vec<u32> = live()
            .filter(|(e, _)| e.deadline_ns.get() <= now)
            .map(|(_, s)| s)
            .collect();
        for s in stale {
            graveyard.extend(self.remove_slot(s));
        }
        if self.len() > keep {
            let mut by_age: Vec<(u64, u32)> = self
                .slots
                .iter()
                .zip(0u32..)
                .filter_map(|(e, s)| Some((e.as_ref()?.deadline_ns.get(), s)))
                .collect();
            let drop = by_age.len() - keep;
            by_age.select_nth_unstable(drop - 1);
            for &(_, s) in &by_age[..drop] {
                graveyard.extend(self.remove_slot(s));
            }
        }
    }
}

/// Words of the bound-domain filter: 2¹⁴ bits, 2 KiB.
const DOMAIN_FILTER_WORDS: usize = 256;

/// A one-hash Bloom filter of the bound (normalised) domain names, read without a lock: a
/// clear bit means the host is bound to no tenant. Bits are set under the domain map's write
/// lock and cleared only by [`DomainFilter::rebuild`] under it, which stores, word by word, a
/// subset of the old bits: a name still bound never reads as absent.
struct DomainFilter {
    words: Box<[AtomicU64]>,
    seed: u64,
}

impl DomainFilter {
    fn new() -> Self {
        Self {
            words: (0..DOMAIN_FILTER_WORDS)
                .map(|_| AtomicU64::new(0))
                .collect(),
            seed: ahash::RandomState::new().hash_one(DOMAIN_FILTER_WORDS),
        }
    }

    /// The word and bit of `name` (raw or normalised: case is folded).
    #[inline]
    fn slot(&self, name: &[u8]) -> (usize, u64) {
        let h = folded_hash(self.seed, name);
        #[allow(clippy::cast_possible_truncation)] // < DOMAIN_FILTER_WORDS
        let word = (h >> 6) as usize % DOMAIN_FILTER_WORDS;
        (word, 1 << (h & 63))
    }

    #[inline]
    fn may_contain(&self, name: &[u8]) -> bool {
        let (word, bit) = self.slot(name);
        self.words[word].load(Ordering::Acquire) & bit != 0
    }

    fn add(&self, name: &[u8]) {
        let (word, bit) = self.slot(name);
        self.words[word].fetch_or(bit, Ordering::Release);
    }

    /// Resets the filter to exactly `names`.
    fn rebuild<'a>(&self, names: impl Iterator<Item = &'a [u8]>) {
        let mut fresh = [0u64; DOMAIN_FILTER_WORDS];
        for name in names {
            let (word, bit) = self.slot(name);
            fresh[word] |= bit;
        }
        for (w, v) in self.words.iter().zip(fresh) {
            w.store(v, Ordering::Release);
        }
    }
}

/// The bounded, sharded cache of key records with its key hasher and domain bindings.
pub struct Verifier<P> {
    shards: Box<[RwLock<Shard<P>>]>,
    share: usize,
    hasher: KeyHasher,
    ttl_ns: u64,
    negative_ttl_ns: u64,
    clock: Arc<dyn Clock>,
    domains: RwLock<HashMap<Box<[u8]>, Fp, ahash::RandomState>>,
    any_domains: AtomicBool,
    domain_filter: DomainFilter,
    seeds: (ahash::RandomState, ahash::RandomState),
}

impl<P> fmt::Debug for Verifier<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("shards", &self.shards.len())
            .field("share", &self.share)
            .field("ttl_ns", &self.ttl_ns)
            .field("negative_ttl_ns", &self.negative_ttl_ns)
            .finish_non_exhaustive()
    }
}

/// Compares two digests in constant time: XOR-OR of four words, then `subtle` on the result
/// (one optimisation barrier rather than one per byte).
#[inline]
fn digests_equal(a: &Digest, b: &Digest) -> bool {
    let mut diff = 0u64;
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        let mut xa = [0u8; 8];
        let mut ya = [0u8; 8];
        xa.copy_from_slice(x);
        ya.copy_from_slice(y);
        diff |= u64::from_ne_bytes(xa) ^ u64::from_ne_bytes(ya);
    }
    diff.ct_eq(&0).into()
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

/// The token of an `Authorization: Bearer <token>` header: the scheme is matched without
/// regard to case, followed by one or more spaces or tabs; trailing whitespace is trimmed.
#[must_use]
#[inline]
pub fn bearer_token(header: &[u8]) -> Option<&[u8]> {
    const SCHEME: &[u8] = b"bearer";
    let (scheme, rest) = header.split_at_checked(SCHEME.len())?;
    if !scheme.eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    let gap = rest
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    if gap == 0 {
        return None;
    }
    let mut token = &rest[gap..];
    while let [head @ .., last] = token {
        if matches!(last, b' ' | b'\t' | b'\r' | b'\n' | 0x0b | 0x0c) {
            token = head;
        } else {
            break;
        }
    }
    (!token.is_empty()).then_some(token)
}

/// The name part of a `Host` header value, not yet case-folded: drops a `:port` (and the
/// brackets of `[ipv6]:port`) and one trailing dot. `None` if it is empty or longer than
/// [`MAX_DOMAIN_LEN`].
#[inline]
fn host_name(host: &[u8]) -> Option<&[u8]> {
    let name = if let Some(rest) = host.strip_prefix(b"[") {
        let end = rest.iter().position(|&b| b == b']')?;
        &rest[..end]
    } else {
        match only_colon(host) {
            Some(at) => &host[..at],
            // No port, or a bare IPv6 address.
            None => host,
        }
    };
    let name = name.strip_suffix(b".").unwrap_or(name);
    if name.is_empty() || name.len() > MAX_DOMAIN_LEN {
        return None;
    }
    Some(name)
}

/// Eight bytes of `bytes` from `at`, zero-extended past the end, as a little-endian word.
#[inline]
fn word_at(bytes: &[u8], at: usize) -> u64 {
    match bytes.get(at..at + 8) {
        Some(w) => {
            let mut a = [0u8; 8];
            a.copy_from_slice(w);
            u64::from_le_bytes(a)
        }
        None => match bytes.last_chunk::<8>() {
            // The tail as the top of the last whole word, shifted down: no byte loop.
            Some(last) if at < bytes.len() => {
                u64::from_le_bytes(*last) >> (8 * (8 - (bytes.len() - at)))
            }
            _ => bytes[at.min(bytes.len())..]
                .iter()
                .rev()
                .fold(0u64, |w, &b| (w << 8) | u64::from(b)),
        },
    }
}

/// The index of the `:` in `host` if there is exactly one (eight bytes at a time: this runs
/// on every request that sends a `Host`).
#[inline]
fn only_colon(host: &[u8]) -> Option<usize> {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const COLONS: u64 = 0x3a3a_3a3a_3a3a_3a3a;
    let mut count = 0;
    let mut last = 0;
    for at in (0..host.len()).step_by(8) {
        let x = word_at(host, at) ^ COLONS;
        // The high bit of each byte that was a colon (exact, no carries between bytes).
        let hits = !(((x & LOW7) + LOW7) | x) & !LOW7;
        if hits != 0 {
            count += hits.count_ones();
            last = at + (63 - hits.leading_zeros() as usize) / 8;
        }
    }
    (count == 1).then_some(last)
}

/// Normalises a `Host` header value into `out`: drops a `:port` (and the brackets of
/// `[ipv6]:port`), folds ASCII case, drops one trailing dot. `None` if the result is empty or
/// longer than [`MAX_DOMAIN_LEN`].
#[must_use]
pub fn normalize_host<'a>(host: &[u8], out: &'a mut [u8; MAX_DOMAIN_LEN]) -> Option<&'a [u8]> {
    let name = host_name(host)?;
    let out = &mut out[..name.len()];
    for (o, &b) in out.iter_mut().zip(name) {
        *o = b.to_ascii_lowercase();
    }
    Some(out)
}

/// Eight bytes with ASCII upper case folded to lower case (SWAR: no per-byte branches).
#[inline]
fn fold_case_8(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let low7 = w & !HIGH;
    // The high bit of each byte: set if the byte's low 7 bits are >= 'A', resp. > 'Z'.
    let ge_a = low7 + ONES * u64::from(0x80 - b'A');
    let gt_z = low7 + ONES * u64::from(0x80 - b'Z' - 1);
    let upper = ge_a & !gt_z & !w & HIGH;
    w | (upper >> 2)
}

/// A seeded 64-bit hash of `name` with ASCII case folded, so a raw host name and its
/// normalised form hash alike. For the domain filter only: a collision just costs a lookup.
#[inline]
fn folded_hash(seed: u64, name: &[u8]) -> u64 {
    #[inline]
    fn mix(x: u64) -> u64 {
        let m = u128::from(x) * 0x9e37_79b9_7f4a_7c15_u128;
        #[allow(clippy::cast_possible_truncation)]
        let (lo, hi) = (m as u64, (m >> 64) as u64);
        lo ^ hi
    }
    let (words, rest) = name.as_chunks::<8>();
    let mut h = seed ^ name.len() as u64;
    for w in words {
        h = mix(h ^ fold_case_8(u64::from_le_bytes(*w)));
    }
    if !rest.is_empty() {
        // The tail as one word, zero-extended, without a byte-wise copy through memory (a
        // wide load of narrow stores stalls store forwarding).
        let last = match name.last_chunk::<8>() {
            Some(tail) => u64::from_le_bytes(*tail) >> (8 * (8 - rest.len())),
            None => word_at(rest, 0),
        };
        h = mix(h ^ fold_case_8(last));
    }
    mix(h ^ seed.rotate_left(32))
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
        let (n, share) = shard_layout(config.capacity);
        let shards = (0..n)
            .map(|_| RwLock::new(Shard::default()))
            .collect::<Vec<_>>()
            .into_boxed_slice();
        Ok(Self {
            shards,
            share,
            hasher,
            ttl_ns: ttl,
            negative_ttl_ns: negative_ttl,
            clock,
            domains: RwLock::new(HashMap::default()),
            any_domains: AtomicBool::new(false),
            domain_filter: DomainFilter::new(),
            seeds: (ahash::RandomState::new(), ahash::RandomState::new()),
        })
    }

    /// The keyed hash of `key` (any bytes; not checked for format).
    #[must_use]
    #[inline]
    pub fn hash(&self, key: &[u8]) -> Digest {
        self.hasher.hash(key)
    }

    fn fingerprint(&self, id: &str) -> Fp {
        Fp(self.seeds.0.hash_one(id), self.seeds.1.hash_one(id))
    }

    #[inline]
    fn locate(&self, digest: &Digest) -> (u64, &RwLock<Shard<P>>) {
        let mut hi = [0u8; 8];
        hi.copy_from_slice(&digest[8..16]);
        let index = index_of(digest);
        let shard = shard_of(u64::from_le_bytes(hi), self.shards.len());
        (index, &self.shards[shard])
    }

    /// The tenant `host` is bound to, if any.
    #[inline]
    fn bound_tenant(&self, host: Option<&[u8]>) -> Option<Fp> {
        let host = host?;
        if !self.any_domains.load(Ordering::Acquire) {
            return None;
        }
        // Most hosts are bound to no tenant: the filter says so from the raw name, without
        // the copy to fold case or the lock (two atomic read-modify-writes).
        if !self.domain_filter.may_contain(host_name(host)?) {
            return None;
        }
        let mut buf = [0u8; MAX_DOMAIN_LEN];
        let name = normalize_host(host, &mut buf)?;
        self.domains.read().get(name).copied()
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
        self.verify_timed(header, host, |p, _| on_hit(p))
    }

    /// [`Verifier::verify_with`], also passing the callback the monotonic time (ns) the
    /// verdict was reached at, so a caller can reuse it (say, for a rate limiter on the same
    /// clock) instead of reading the clock again.
    #[inline]
    pub fn verify_timed<R>(
        &self,
        header: &[u8],
        host: Option<&[u8]>,
        on_hit: impl FnOnce(&P, u64) -> R,
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
        self.lookup_timed(digest, display_prefix, host, |p, _| on_hit(p))
    }

    #[inline]
    fn lookup_timed<R>(
        &self,
        digest: &Digest,
        display_prefix: DisplayPrefix,
        host: Option<&[u8]>,
        on_hit: impl FnOnce(&P, u64) -> R,
    ) -> Verdict<R> {
        let bound = self.bound_tenant(host);
        let (index, shard) = self.locate(digest);
        let now = self.clock.monotonic_ns();
        let shard = shard.read();
        let fresh = shard
            .get(index)
            .filter(|e| digests_equal(&e.digest, digest) && e.deadline_ns.get() > now);
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
        Verdict::Hit(on_hit(payload, now))
    }

    /// The clock this verifier reads.
    #[must_use]
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    fn put(&self, digest: &Digest, entry: Entry<P>) {
        let (index, shard) = self.locate(digest);
        let now = self.clock.monotonic_ns();
        // Removed entries are dropped after the lock is released: dropping a payload may run
        // arbitrary code (a Python `__del__`), which must not find the shard locked.
        let mut graveyard = Vec::new();
        {
            let mut shard = shard.write();
            graveyard.extend(shard.remove(index));
            if shard.len() >= self.share {
                shard.evict(now, keep_after_eviction(self.share), &mut graveyard);
            }
            shard.insert(entry, &mut graveyard);
        }
        drop(graveyard);
    }

    /// Caches a record for `digest`, replacing whatever had the same index.
    ///
    /// # Errors
    /// [`CoreError::InvalidArgument`] if `expires_at` is NaN.
    pub fn insert(&self, digest: &Digest, record: Record<P>) -> CoreResult<()> {
        let expires_at = match record.expires_at {
            None => f64::INFINITY,
            Some(t) if t.is_nan() => {
                return Err(CoreError::InvalidArgument("expires_at must not be NaN"))
            }
            Some(t) => t,
        };
        let entry = Entry {
            digest: *digest,
            deadline_ns: deadline(self.clock.monotonic_ns(), self.ttl_ns),
            expires_at: if record.usable {
                expires_at
            } else {
                f64::NEG_INFINITY
            },
            key: self.fingerprint(&record.key_id),
            tenant: self.fingerprint(&record.tenant_id),
            prev: NIL,
            next: NIL,
            payload: Some(record.payload),
        };
        self.put(digest, entry);
        Ok(())
    }

    /// Caches a refusal for `digest` (a key the database does not know), for the negative TTL.
    pub fn insert_refusal(&self, digest: &Digest) {
        let entry = Entry {
            digest: *digest,
            deadline_ns: deadline(self.clock.monotonic_ns(), self.negative_ttl_ns),
            expires_at: f64::NEG_INFINITY,
            key: Fp(0, 0),
            tenant: Fp(0, 0),
            prev: NIL,
            next: NIL,
            payload: None,
        };
        self.put(digest, entry);
    }

    /// Drops the cached record of `key_id`; whether there was one.
    pub fn invalidate_key(&self, key_id: &str) -> bool {
        let key = self.fingerprint(key_id);
        let mut removed = false;
        for shard in &self.shards {
            if shard.read().slot_of_key(key).is_none() {
                continue;
            }
            let entry = {
                let mut shard = shard.write();
                let slot = shard.slot_of_key(key);
                slot.and_then(|s| shard.remove_slot(s))
            };
            removed |= entry.is_some();
        }
        removed
    }

    /// Drops every cached record of `tenant_id`; how many.
    pub fn invalidate_tenant(&self, tenant_id: &str) -> usize {
        let tenant = self.fingerprint(tenant_id);
        let mut removed = 0;
        for shard in &self.shards {
            if !shard.read().tenants.contains_key(&tenant) {
                continue;
            }
            let graveyard: Vec<Entry<P>> = {
                let mut shard = shard.write();
                let slots = shard.tenant_slots(tenant);
                slots
                    .into_iter()
                    .filter_map(|s| shard.remove_slot(s))
                    .collect()
            };
            removed += graveyard.len();
        }
        removed
    }

    /// Binds a host name to a tenant: keys of other tenants are refused on that host.
    ///
    /// # Errors
    /// [`CoreError::InvalidArgument`] if the domain is empty or too long once normalised.
    pub fn bind_domain(&self, domain: &str, tenant_id: &str) -> CoreResult<()> {
        let mut buf = [0u8; MAX_DOMAIN_LEN];
        let name = normalize_host(domain.as_bytes(), &mut buf).ok_or(
            CoreError::InvalidArgument("domain must be a non-empty host name of at most 255 bytes"),
        )?;
        let tenant = self.fingerprint(tenant_id);
        let mut domains = self.domains.write();
        domains.insert(name.into(), tenant);
        self.domain_filter.add(name);
        self.any_domains.store(true, Ordering::Release);
        Ok(())
    }

    /// Removes a domain binding (no error if there was none).
    pub fn unbind_domain(&self, domain: &str) {
        let mut buf = [0u8; MAX_DOMAIN_LEN];
        if let Some(name) = normalize_host(domain.as_bytes(), &mut buf) {
            let mut domains = self.domains.write();
            if domains.remove(name).is_some() {
                self.domain_filter.rebuild(domains.keys().map(|k| &**k));
            }
            self.any_domains
                .store(!domains.is_empty(), Ordering::Release);
        }
    }

    /// Drops every cached entry (domain bindings stay).
    pub fn clear(&self) {
        for shard in &self.shards {
            // The guard is released at the end of the statement, before `old` is dropped.
            let old = std::mem::take(&mut *shard.write());
            drop(old);
        }
    }

    /// Entries held: records and refusals, including stale ones not yet evicted.
    #[must_use]
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }

    /// Whether no entry is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most entries held.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.share * self.shards.len()
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
    fn an_empty_slot_costs_no_tag() {
        assert_eq!(
            std::mem::size_of::<Option<Entry<u32>>>(),
            std::mem::size_of::<Entry<u32>>()
        );
    }

    #[test]
    fn digest_comparison() {
        let a = [5u8; 32];
        assert!(digests_equal(&a, &a));
        for i in 0..32 {
            let mut b = a;
            b[i] ^= 1;
            assert!(!digests_equal(&a, &b));
        }
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer_token(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"bEaReR \t abc \r\n"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"Bearer\tabc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"Bearerabc"), None);
        assert_eq!(bearer_token(b"Bearer "), None);
        assert_eq!(bearer_token(b"Basic abc"), None);
        assert_eq!(bearer_token(b" Bearer abc"), None);
        assert_eq!(bearer_token(b""), None);
        assert_eq!(bearer_token(b"Bear"), None);
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
    fn folded_hash_ignores_ascii_case_only() {
        let names: [&[u8]; 6] = [
            b"a",
            b"example.com",
            b"api.tenantgate.test",
            b"0123456789-abcdefghijklmnopqrstuvwxyz.example",
            b"@[`{\x7f\x80\xc1\xdb\xe1",
            b"fe80::1",
        ];
        for name in names {
            let lower: Vec<u8> = name.to_ascii_lowercase();
            let upper: Vec<u8> = name.to_ascii_uppercase();
            assert_eq!(folded_hash(7, name), folded_hash(7, &lower));
            assert_eq!(folded_hash(7, name), folded_hash(7, &upper));
            for i in 0..name.len() {
                let mut w = [0u8; 8];
                let n = name.len().min(i + 8) - i;
                w[..n].copy_from_slice(&name[i..i + n]);
                let folded = fold_case_8(u64::from_le_bytes(w)).to_le_bytes();
                let expected: Vec<u8> = w.iter().map(u8::to_ascii_lowercase).collect();
                assert_eq!(&folded[..], &expected[..], "{name:?} at {i}");
            }
        }
        assert_ne!(folded_hash(7, b"ab"), folded_hash(7, b"ab\0"));
        assert_ne!(folded_hash(7, b"ab"), folded_hash(8, b"ab"));
    }

    #[test]
    fn domain_filter_tracks_bindings() {
        let (_c, v) = setup(10);
        let f = &v.domain_filter;
        assert!(!f.may_contain(b"a.example"));
        v.bind_domain("A.Example", "t").unwrap();
        v.bind_domain("b.example", "t").unwrap();
        assert!(f.may_contain(b"a.example") && f.may_contain(b"A.EXAMPLE"));
        v.unbind_domain("a.example");
        assert!(f.may_contain(b"b.example"));
        v.unbind_domain("b.example");
        assert!(f.words.iter().all(|w| w.load(Ordering::Relaxed) == 0));
    }

    #[test]
    fn only_colon_finds_a_single_colon() {
        let mut long = vec![b'a'; 40];
        for (host, expected) in [
            (&b""[..], None),
            (b":", Some(0)),
            (b"a:80", Some(1)),
            (b"api.tenantgate.test:443", Some(19)),
            (b"abcdefg:", Some(7)),
            (b"abcdefgh:", Some(8)),
            (b"::1", None),
            (b"a:b:c", None),
            (b"\xba\xbb:\xfa", Some(2)),
            (b"no-colon.example", None),
        ] {
            assert_eq!(only_colon(host), expected, "{host:?}");
        }
        for i in 0..long.len() {
            long[i] = b':';
            assert_eq!(only_colon(&long), Some(i));
            long[i] = b'a';
        }
    }

    #[test]
    fn host_normalisation() {
        let mut buf = [0u8; MAX_DOMAIN_LEN];
        let mut n = |h: &[u8]| normalize_host(h, &mut buf).map(<[u8]>::to_vec);
        assert_eq!(n(b"Example.COM"), Some(b"example.com".to_vec()));
        assert_eq!(n(b"example.com:80"), Some(b"example.com".to_vec()));
        assert_eq!(n(b"example.com.:80"), Some(b"example.com".to_vec()));
        assert_eq!(n(b"[FE80::1]:80"), Some(b"fe80::1".to_vec()));
        assert_eq!(n(b"fe80::1"), Some(b"fe80::1".to_vec()));
        assert_eq!(n(b"[::1"), None);
        assert_eq!(n(b""), None);
        assert_eq!(n(b":80"), None);
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
        fn host_scans_match_the_obvious_code(host in proptest::collection::vec(
            prop_oneof![Just(b':'), Just(b'A'), Just(b'z'), Just(b'.'), any::<u8>()], 0..40)) {
            let colons: Vec<usize> = (0..host.len()).filter(|&i| host[i] == b':').collect();
            prop_assert_eq!(only_colon(&host), (colons.len() == 1).then(|| colons[0]));
            let lower = host.to_ascii_lowercase();
            prop_assert_eq!(folded_hash(3, &host), folded_hash(3, &lower));
            for at in 0..=host.len() {
                let obvious = host[at..].iter().take(8).rev().fold(0u64, |w, &b| (w << 8) | u64::from(b));
                prop_assert_eq!(word_at(&host, at), obvious);
            }
        }

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
