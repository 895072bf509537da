//! Domain bindings: a host name bound to a tenant refuses the keys of every other tenant.
//!
//! Most requests carry a `Host` bound to no tenant, so a lock-free one-hash Bloom filter of
//! the bound names answers "not bound" from the raw header value, before the name is
//! normalised (a copy) or the map's read lock is taken.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::RwLock;

use crate::error::{CoreError, CoreResult};
use crate::header::{folded_hash, host_name, normalize_host, MAX_DOMAIN_LEN};
use crate::shard::Fp;

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

/// The bound domains (normalised name to tenant fingerprint) and their filter.
pub(super) struct Domains {
    map: RwLock<HashMap<Box<[u8]>, Fp, ahash::RandomState>>,
    any: AtomicBool,
    filter: DomainFilter,
}

impl Domains {
    pub(super) fn new() -> Self {
        Self {
            map: RwLock::new(HashMap::default()),
            any: AtomicBool::new(false),
            filter: DomainFilter::new(),
        }
    }

    /// The tenant `host` (a raw `Host` header value) is bound to, if any.
    #[inline]
    pub(super) fn bound_tenant(&self, host: Option<&[u8]>) -> Option<Fp> {
        let host = host?;
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        self.bound_tenant_of(host)
    }

    /// [`Domains::bound_tenant`] once some domain is bound.
    fn bound_tenant_of(&self, host: &[u8]) -> Option<Fp> {
        // Most hosts are bound to no tenant: the filter says so from the raw name, without
        // the copy to fold case or the lock (two atomic read-modify-writes).
        if !self.filter.may_contain(host_name(host)?) {
            return None;
        }
        let mut buf = [0u8; MAX_DOMAIN_LEN];
        let name = normalize_host(host, &mut buf)?;
        self.map.read().get(name).copied()
    }

    /// Binds `domain` to `tenant`.
    ///
    /// # Errors
    /// [`CoreError::InvalidArgument`] if the domain is empty or too long once normalised.
    pub(super) fn bind(&self, domain: &str, tenant: Fp) -> CoreResult<()> {
        let mut buf = [0u8; MAX_DOMAIN_LEN];
        let name = normalize_host(domain.as_bytes(), &mut buf).ok_or(
            CoreError::InvalidArgument("domain must be a non-empty host name of at most 255 bytes"),
        )?;
        let mut map = self.map.write();
        map.insert(name.into(), tenant);
        self.filter.add(name);
        self.any.store(true, Ordering::Release);
        Ok(())
    }

    /// Removes `domain`'s binding, if any.
    pub(super) fn unbind(&self, domain: &str) {
        let mut buf = [0u8; MAX_DOMAIN_LEN];
        if let Some(name) = normalize_host(domain.as_bytes(), &mut buf) {
            let mut map = self.map.write();
            if map.remove(name).is_some() {
                self.filter.rebuild(map.keys().map(|k| &**k));
            }
            self.any.store(!map.is_empty(), Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_filter_tracks_bindings() {
        let d = Domains::new();
        let f = &d.filter;
        let t = Fp(1, 2);
        assert!(!f.may_contain(b"a.example"));
        d.bind("A.Example", t).unwrap();
        d.bind("b.example", t).unwrap();
        assert!(f.may_contain(b"a.example") && f.may_contain(b"A.EXAMPLE"));
        d.unbind("a.example");
        assert!(f.may_contain(b"b.example"));
        d.unbind("b.example");
        assert!(f.words.iter().all(|w| w.load(Ordering::Relaxed) == 0));
    }

    #[test]
    fn bound_hosts_name_their_tenant() {
        let d = Domains::new();
        assert_eq!(d.bound_tenant(Some(b"a.example")), None);
        d.bind("a.example", Fp(1, 2)).unwrap();
        assert_eq!(d.bound_tenant(Some(b"A.EXAMPLE:443")), Some(Fp(1, 2)));
        assert_eq!(d.bound_tenant(Some(b"b.example")), None);
        assert_eq!(d.bound_tenant(None), None);
        assert!(d.bind("", Fp(1, 2)).is_err());
    }
}
