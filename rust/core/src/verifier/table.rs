//! The bounded, sharded table of key records (and cached refusals), keyed by digest.
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
//!   the shard drops entries whose TTL has passed, then cached refusals, then the oldest
//!   records (by TTL deadline) down to 7/8 of its share, so the work is amortised: *evict
//!   expired, then refusals, then oldest* — a flood of made-up keys evicts its own refusals,
//!   never the records of real keys while refusals are left.

use std::collections::HashMap;
use std::num::NonZeroU64;

use hashbrown::HashTable;
use parking_lot::RwLock;
use subtle::ConstantTimeEq;

use super::restrict::Restriction;
use crate::keys::Digest;
use crate::shard::{keep_after_eviction, shard_layout, shard_of, Fp, IdentityBuild};

/// No slot: the end of a tenant's list.
const NIL: u32 = u32::MAX;

/// One cached entry: a key record, or a refusal (no payload).
pub(super) struct Entry<P> {
    digest: Digest,
    /// Monotonic ns after which the entry is stale. Never 0 (the TTLs are at least 1 ns), so
    /// an empty slot (`Option<Entry>`) costs no tag.
    pub(super) deadline_ns: NonZeroU64,
    /// Unix seconds after which the key is refused: infinity for never, -infinity for a key
    /// that is not usable (one field less than a separate flag).
    pub(super) expires_at: f64,
    key: Fp,
    pub(super) tenant: Fp,
    /// The neighbouring slots in the tenant's list (records only), or [`NIL`].
    prev: u32,
    next: u32,
    /// `None` for a cached refusal.
    pub(super) payload: Option<P>,
    /// The record's scopes and networks; `None` (8 bytes, the common case) for none.
    pub(super) restriction: Option<Box<Restriction>>,
}

impl<P> Entry<P> {
    /// A key record of `tenant`'s key `key`, refused after `expires_at` (Unix seconds; -inf
    /// for an unusable key).
    pub(super) fn record(
        digest: Digest,
        deadline_ns: NonZeroU64,
        expires_at: f64,
        key: Fp,
        tenant: Fp,
        payload: P,
        restriction: Option<Box<Restriction>>,
    ) -> Self {
        Self {
            digest,
            deadline_ns,
            expires_at,
            key,
            tenant,
            prev: NIL,
            next: NIL,
            payload: Some(payload),
            restriction,
        }
    }

    /// A cached refusal.
    pub(super) fn refusal(digest: Digest, deadline_ns: NonZeroU64) -> Self {
        Self {
            digest,
            deadline_ns,
            expires_at: f64::NEG_INFINITY,
            key: Fp(0, 0),
            tenant: Fp(0, 0),
            prev: NIL,
            next: NIL,
            payload: None,
            restriction: None,
        }
    }
}

/// The deadline `ttl_ns` (at least 1) after `now`.
#[inline]
pub(super) fn deadline(now: u64, ttl_ns: u64) -> NonZeroU64 {
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
            // Refusals first (whatever their deadline: a flood of made-up keys must not push
            // out the records of real ones), then records, each oldest first.
            let mut by_age: Vec<(bool, u64, u32)> = self
                .slots
                .iter()
                .zip(0u32..)
                .filter_map(|(e, s)| {
                    let e = e.as_ref()?;
                    Some((e.payload.is_some(), e.deadline_ns.get(), s))
                })
                .collect();
            let drop = by_age.len() - keep;
            by_age.select_nth_unstable(drop - 1);
            for &(_, _, s) in &by_age[..drop] {
                graveyard.extend(self.remove_slot(s));
            }
        }
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

/// The sharded table: each shard's [`Shard`] behind its own lock.
pub(super) struct Table<P> {
    shards: Box<[RwLock<Shard<P>>]>,
    share: usize,
}

impl<P> Table<P> {
    /// A table of about `capacity` entries (at least 1).
    pub(super) fn new(capacity: usize) -> Self {
        let (n, share) = shard_layout(capacity);
        let shards = (0..n)
            .map(|_| RwLock::new(Shard::default()))
            .collect::<Vec<_>>()
            .into_boxed_slice();
        Self { shards, share }
    }

    /// The shard count (for `Debug`).
    pub(super) fn shard_count(&self) -> usize {
        self.shards.len()
    }

    #[inline]
    fn locate(&self, digest: &Digest) -> (u64, &RwLock<Shard<P>>) {
        let mut hi = [0u8; 8];
        hi.copy_from_slice(&digest[8..16]);
        let index = index_of(digest);
        let shard = shard_of(u64::from_le_bytes(hi), self.shards.len());
        (index, &self.shards[shard])
    }

    /// Calls `with` on `digest`'s entry if it is held (compared in constant time) and fresh
    /// at `now()`, under the shard's read lock. `now` is read after the shard is located.
    #[inline]
    pub(super) fn find<R>(
        &self,
        digest: &Digest,
        now: impl FnOnce() -> u64,
        with: impl FnOnce(Option<&Entry<P>>, u64) -> R,
    ) -> R {
        let (index, shard) = self.locate(digest);
        let now = now();
        let shard = shard.read();
        let fresh = shard
            .get(index)
            .filter(|e| digests_equal(&e.digest, digest) && e.deadline_ns.get() > now);
        with(fresh, now)
    }

    /// Stores `entry`, replacing whatever had its index, making room first if the shard is
    /// full.
    pub(super) fn put(&self, entry: Entry<P>, now: u64) {
        let (index, shard) = self.locate(&entry.digest);
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

    /// Drops the record of key `key`; whether there was one.
    pub(super) fn remove_key(&self, key: Fp) -> bool {
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

    /// Drops every record of `tenant`; how many.
    pub(super) fn remove_tenant(&self, tenant: Fp) -> usize {
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

    /// Drops every entry.
    pub(super) fn clear(&self) {
        for shard in &self.shards {
            // The guard is released at the end of the statement, before `old` is dropped.
            let old = std::mem::take(&mut *shard.write());
            drop(old);
        }
    }

    /// Moves the deadline of every record that stays fresh past `now + within` to a point in
    /// `(now, now + within]` picked by its digest; how many were moved.
    pub(super) fn shorten(&self, now: u64, within: u64) -> usize {
        let mut shortened = 0;
        for shard in &self.shards {
            let mut shard = shard.write();
            for entry in shard.slots.iter_mut().flatten() {
                if entry.payload.is_none() || entry.deadline_ns.get() <= now.saturating_add(within)
                {
                    continue;
                }
                // The digest is uniformly random: bytes 16..24 spread the new deadlines evenly.
                let mut spread = [0u8; 8];
                spread.copy_from_slice(&entry.digest[16..24]);
                entry.deadline_ns = deadline(now, 1 + u64::from_le_bytes(spread) % within);
                shortened += 1;
            }
        }
        shortened
    }

    /// Entries held, including stale ones not yet evicted.
    pub(super) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }

    /// The most entries held.
    pub(super) fn capacity(&self) -> usize {
        self.share * self.shards.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
