//! The request headers the hot path reads: the `Authorization: Bearer <token>` scheme and
//! the `Host` name, with the word-at-a-time scans that make them cheap (they run on every
//! request).

/// Longest host name (after normalisation) that can be bound to a tenant.
pub const MAX_DOMAIN_LEN: usize = 255;

/// The token of an `Authorization: Bearer <token>` header: the scheme is matched without
/// regard to case, followed by one or more spaces or tabs; trailing whitespace is trimmed.
///
/// Always inlined: it runs first on every request, and with two callers (`verify` and
/// `verify_and_acquire`) the compiler would otherwise keep it out of line.
#[must_use]
#[allow(clippy::inline_always)] // measured: see the doc comment
#[inline(always)]
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
pub(crate) fn host_name(host: &[u8]) -> Option<&[u8]> {
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
pub(crate) fn folded_hash(seed: u64, name: &[u8]) -> u64 {
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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

    }
}
