//! The key format, its checksum, generation from the OS CSPRNG, and keyed hashing.
//!
//! A key is `tg_<env>_<random><checksum>`:
//!
//! * `<env>` is `live` or `test`;
//! * `<random>` is 30 (generated) or 30..=64 (accepted) characters of `0-9A-Za-z`;
//! * `<checksum>` is the CRC32 (IEEE) of everything before it, in 6 base62 characters,
//!   big-endian and zero-padded with `0`.
//!
//! The checksum lets us refuse typos and garbage without hashing or a lookup. The keyed
//! hash (HMAC-SHA-256 under a server-side pepper) is what the database stores.

use std::fmt;

use sha2::block_api::compress256;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{CoreError, CoreResult, KeyFormatError};

/// The base62 alphabet, in value order.
pub const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Random characters in a generated key (30 × log2(62) ≈ 178.6 bits).
pub const GENERATED_RANDOM_LEN: usize = 30;
/// Fewest random characters a key may have.
pub const MIN_RANDOM_LEN: usize = 30;
/// Most random characters a key may have.
pub const MAX_RANDOM_LEN: usize = 64;
/// Length of the base62 checksum.
pub const CHECKSUM_LEN: usize = 6;
/// Length of `tg_<env>_`.
pub const HEAD_LEN: usize = 8;
/// Random characters shown in a display prefix.
pub const DISPLAY_RANDOM_LEN: usize = 6;
/// Length of a display prefix: `tg_<env>_` and 6 random characters.
pub const DISPLAY_PREFIX_LEN: usize = HEAD_LEN + DISPLAY_RANDOM_LEN;
/// Shortest well-formed key.
pub const MIN_KEY_LEN: usize = HEAD_LEN + MIN_RANDOM_LEN + CHECKSUM_LEN;
/// Longest well-formed key.
pub const MAX_KEY_LEN: usize = HEAD_LEN + MAX_RANDOM_LEN + CHECKSUM_LEN;
/// Length of a keyed hash.
pub const DIGEST_LEN: usize = 32;
/// Shortest pepper [`KeyHasher::new`] accepts.
pub const MIN_PEPPER_LEN: usize = 16;

/// A keyed hash of a key: HMAC-SHA-256(pepper, key).
pub type Digest = [u8; DIGEST_LEN];

const INVALID: u8 = 0xFF;

/// Base62 value of each byte, or [`INVALID`].
#[allow(clippy::cast_possible_truncation)] // i < 62
const DECODE: [u8; 256] = {
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < ALPHABET.len() {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// The environment a key belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Env {
    /// Production keys: `tg_live_`.
    Live,
    /// Test keys: `tg_test_`.
    Test,
}

impl Env {
    /// `"live"` or `"test"`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Live => "live",
            Self::Test => "test",
        }
    }

    /// Parses `"live"` or `"test"` (exact, lower case).
    ///
    /// # Errors
    /// [`CoreError::InvalidArgument`] for anything else.
    pub fn from_name(name: &str) -> CoreResult<Self> {
        match name {
            "live" => Ok(Self::Live),
            "test" => Ok(Self::Test),
            _ => Err(CoreError::InvalidArgument("env must be 'live' or 'test'")),
        }
    }

    const fn head(self) -> &'static [u8; HEAD_LEN] {
        match self {
            Self::Live => b"tg_live_",
            Self::Test => b"tg_test_",
        }
    }
}

impl fmt::Display for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The 6-character base62 encoding of the CRC32 (IEEE) of `body`.
#[must_use]
#[inline]
pub fn checksum(body: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut value = crc32fast::hash(body);
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(value % 62) as usize];
        value /= 62;
    }
    out
}

/// [`checksum`] as a `String`.
#[must_use]
pub fn checksum_string(body: &str) -> String {
    checksum(body.as_bytes())
        .iter()
        .map(|&b| char::from(b))
        .collect()
}

/// A fresh key for `env`: 30 random base62 characters drawn from the OS CSPRNG by unbiased
/// rejection sampling, then the checksum.
///
/// # Errors
/// [`CoreError::Random`] if the OS random number generator fails.
pub fn generate_key(env: Env) -> CoreResult<String> {
    // 248 = 4 × 62: bytes below it map uniformly onto the alphabet; the rest are rejected.
    const LIMIT: u8 = 248;
    let mut key = Vec::with_capacity(HEAD_LEN + GENERATED_RANDOM_LEN + CHECKSUM_LEN);
    key.extend_from_slice(env.head());
    let mut pool = [0u8; 48];
    while key.len() < HEAD_LEN + GENERATED_RANDOM_LEN {
        getrandom::fill(&mut pool).map_err(|e| CoreError::Random(e.to_string()))?;
        for &byte in &pool {
            if key.len() == HEAD_LEN + GENERATED_RANDOM_LEN {
                break;
            }
            if byte < LIMIT {
                key.push(ALPHABET[usize::from(byte % 62)]);
            }
        }
    }
    let sum = checksum(&key);
    key.extend_from_slice(&sum);
    // Every byte is ASCII by construction.
    String::from_utf8(key).map_err(|_| CoreError::Random("non-ASCII key".to_owned()))
}

/// A well-formed key, held inline (no allocation).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ParsedKey {
    bytes: [u8; MAX_KEY_LEN],
    len: u8,
    env: Env,
}

impl fmt::Debug for ParsedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret part.
        f.debug_struct("ParsedKey")
            .field("env", &self.env)
            .field("display_prefix", &self.display_prefix())
            .finish_non_exhaustive()
    }
}

/// Whether every byte is in `0-9A-Za-z`; branch-free so it vectorises.
#[inline]
fn all_base62(bytes: &[u8]) -> bool {
    bytes.iter().fold(true, |ok, &b| {
        let digit = b.wrapping_sub(b'0') < 10;
        let upper = b.wrapping_sub(b'A') < 26;
        let lower = b.wrapping_sub(b'a') < 26;
        // `&` rather than `&&`: no early exit, so the loop vectorises.
        #[allow(clippy::needless_bitwise_bool)]
        let all = ok & (digit | upper | lower);
        all
    })
}

/// Checks prefix, environment, length, alphabet and checksum, in that order, without
/// copying the key; returns its environment.
///
/// # Errors
/// The [`KeyFormatError`] of the first check that fails.
#[inline]
pub fn check_key(key: &[u8]) -> Result<Env, KeyFormatError> {
    if key.len() < 3 || &key[..3] != b"tg_" {
        return Err(KeyFormatError::Prefix);
    }
    let env = match key.get(3..HEAD_LEN) {
        Some(b"live_") => Env::Live,
        Some(b"test_") => Env::Test,
        _ => return Err(KeyFormatError::Environment),
    };
    if !(MIN_KEY_LEN..=MAX_KEY_LEN).contains(&key.len()) {
        return Err(KeyFormatError::Length);
    }
    if !all_base62(&key[HEAD_LEN..]) {
        return Err(KeyFormatError::Alphabet);
    }
    let (body, sum) = key.split_at(key.len() - CHECKSUM_LEN);
    // Decoding the 6 given digits (independent multiplies) is cheaper than encoding the
    // CRC (a chain of divisions); both are exact, as 62⁶ > 2³².
    if Some(u64::from(crc32fast::hash(body))) != base62_value(sum) {
        return Err(KeyFormatError::Checksum);
    }
    Ok(env)
}

/// The value of up to 6 base62 digits, most significant first; `None` if one is not a digit.
#[inline]
fn base62_value(digits: &[u8]) -> Option<u64> {
    let mut value = 0u64;
    let mut weight = 1u64;
    for &d in digits.iter().rev() {
        let v = DECODE[usize::from(d)];
        if v == INVALID {
            return None;
        }
        value += u64::from(v) * weight;
        weight *= 62;
    }
    Some(value)
}

impl ParsedKey {
    /// Checks prefix, environment, length, alphabet and checksum, in that order (see
    /// [`check_key`]), and keeps a copy.
    ///
    /// # Errors
    /// The [`KeyFormatError`] of the first check that fails.
    #[inline]
    pub fn parse(key: &[u8]) -> Result<Self, KeyFormatError> {
        let env = check_key(key)?;
        let mut bytes = [0u8; MAX_KEY_LEN];
        bytes[..key.len()].copy_from_slice(key);
        // MAX_KEY_LEN < 256, so the length fits.
        #[allow(clippy::cast_possible_truncation)]
        let len = key.len() as u8;
        Ok(Self { bytes, len, env })
    }

    /// The key's environment.
    #[must_use]
    pub const fn env(&self) -> Env {
        self.env
    }

    /// The whole key.
    #[must_use]
    pub fn as_str(&self) -> &str {
        ascii(&self.bytes[..usize::from(self.len)])
    }

    /// The random part (between `tg_<env>_` and the checksum).
    #[must_use]
    pub fn random(&self) -> &str {
        ascii(&self.bytes[HEAD_LEN..usize::from(self.len) - CHECKSUM_LEN])
    }

    /// The 6 checksum characters.
    #[must_use]
    pub fn checksum(&self) -> &str {
        let len = usize::from(self.len);
        ascii(&self.bytes[len - CHECKSUM_LEN..len])
    }

    /// `tg_<env>_` and the first 6 random characters: safe to show in listings.
    #[must_use]
    pub fn display_prefix(&self) -> DisplayPrefix {
        let mut out = [0u8; DISPLAY_PREFIX_LEN];
        out.copy_from_slice(&self.bytes[..DISPLAY_PREFIX_LEN]);
        DisplayPrefix(out)
    }
}

/// `tg_<env>_` and the first 6 random characters of a key, held inline.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct DisplayPrefix([u8; DISPLAY_PREFIX_LEN]);

impl DisplayPrefix {
    /// The display prefix of a key that passed [`check_key`] (`None` if it is too short).
    #[must_use]
    #[inline]
    pub fn of_checked_key(key: &[u8]) -> Option<Self> {
        let mut out = [0u8; DISPLAY_PREFIX_LEN];
        out.copy_from_slice(key.get(..DISPLAY_PREFIX_LEN)?);
        Some(Self(out))
    }

    /// The prefix as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        ascii(&self.0)
    }
}

impl fmt::Debug for DisplayPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for DisplayPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Bytes already checked to be ASCII as text.
fn ascii(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).unwrap_or_default()
}

/// SHA-256's initial state (FIPS 180-4, 5.3.3).
const SHA256_IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];
const BLOCK: usize = 64;

/// HMAC-SHA-256 under a pepper (RFC 2104), with the pepper's inner and outer SHA-256 states
/// computed once.
///
/// A call then costs exactly the compressions of the message and one for the outer hash
/// (two for a key of up to 55 bytes), straight through `sha2`'s block function, which uses
/// the CPU's SHA extensions when present (detected at run time). Tests check it against the
/// `hmac` crate and RFC 4231.
#[derive(Clone)]
pub struct KeyHasher {
    inner: [u32; 8],
    outer: [u32; 8],
}

impl fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyHasher { .. }")
    }
}

impl KeyHasher {
    /// A hasher keyed by `pepper`.
    ///
    /// # Errors
    /// [`CoreError::InvalidArgument`] if `pepper` is shorter than 16 bytes.
    pub fn new(pepper: &[u8]) -> CoreResult<Self> {
        if pepper.len() < MIN_PEPPER_LEN {
            return Err(CoreError::InvalidArgument(
                "pepper must be at least 16 bytes",
            ));
        }
        Ok(Self::with_any_key(pepper))
    }

    /// HMAC keying without the length policy (for the RFC test vectors).
    fn with_any_key(key: &[u8]) -> Self {
        let mut padded = [0u8; BLOCK];
        if key.len() > BLOCK {
            padded[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            padded[..key.len()].copy_from_slice(key);
        }
        let pad = |byte: u8| {
            let mut block = padded;
            for b in &mut block {
                *b ^= byte;
            }
            let mut state = SHA256_IV;
            compress256(&mut state, &[block]);
            state
        };
        Self {
            inner: pad(0x36),
            outer: pad(0x5c),
        }
    }

    /// HMAC-SHA-256(pepper, `key`).
    #[must_use]
    #[inline]
    pub fn hash(&self, key: &[u8]) -> Digest {
        finish(self.outer, &finish(self.inner, key))
    }
}

/// Continues SHA-256 from `state` (one 64-byte block already absorbed) over `message` and
/// returns the digest bytes. Always inlined: the compiler would otherwise keep it out of
/// line once more than one verifier type calls it, a call on every request.
#[allow(clippy::inline_always)] // measured: see the doc comment
#[inline(always)]
fn finish(mut state: [u32; 8], message: &[u8]) -> [u8; DIGEST_LEN] {
    let (blocks, rest) = message.as_chunks::<BLOCK>();
    compress256(&mut state, blocks);
    let mut tail = [[0u8; BLOCK]; 2];
    let n = if rest.len() < BLOCK - 8 { 1 } else { 2 };
    {
        let flat = tail.as_flattened_mut();
        flat[..rest.len()].copy_from_slice(rest);
        flat[rest.len()] = 0x80;
        // Bits hashed: the pad block plus the message. A slice is at most isize::MAX bytes.
        let bits = ((BLOCK + message.len()) as u64).wrapping_mul(8);
        flat[n * BLOCK - 8..n * BLOCK].copy_from_slice(&bits.to_be_bytes());
    }
    compress256(&mut state, &tail[..n]);
    let mut out = [0u8; DIGEST_LEN];
    for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// Constant-time equality (the time depends only on the lengths).
#[must_use]
#[inline]
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(bytes: &[u8]) -> String {
        use std::fmt::Write;
        bytes.iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }

    #[test]
    fn generated_keys_parse() {
        for env in [Env::Live, Env::Test] {
            let key = generate_key(env).unwrap();
            assert_eq!(key.len(), MIN_KEY_LEN);
            let parsed = ParsedKey::parse(key.as_bytes()).unwrap();
            assert_eq!(parsed.env(), env);
            assert_eq!(parsed.as_str(), key);
            assert_eq!(parsed.random().len(), GENERATED_RANDOM_LEN);
            assert_eq!(parsed.checksum(), &key[key.len() - 6..]);
            assert_eq!(parsed.display_prefix().as_str(), &key[..14]);
        }
    }

    #[test]
    fn generated_keys_differ() {
        let a = generate_key(Env::Live).unwrap();
        let b = generate_key(Env::Live).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn generated_characters_are_roughly_uniform() {
        let mut counts = [0u32; 62];
        for _ in 0..2000 {
            let key = generate_key(Env::Test).unwrap();
            for &b in &key.as_bytes()[HEAD_LEN..HEAD_LEN + GENERATED_RANDOM_LEN] {
                counts[usize::from(DECODE[usize::from(b)])] += 1;
            }
        }
        // 60,000 draws: each count is ~968 ± 31; 6 sigma either side.
        for c in counts {
            assert!((780..1160).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn base62_value_inverts_checksum() {
        for body in [
            &b""[..],
            b"tg_live_",
            b"tg_test_0123456789abcdefghijABCDEFGHIJ",
        ] {
            let sum = checksum(body);
            assert_eq!(base62_value(&sum), Some(u64::from(crc32fast::hash(body))));
        }
        assert_eq!(base62_value(b"000010"), Some(62));
        assert_eq!(base62_value(b"zzzzzz"), Some(62u64.pow(6) - 1));
        assert_eq!(base62_value(b"00000_"), None);
    }

    #[test]
    fn base62_check_matches_the_table() {
        for b in 0..=255u8 {
            assert_eq!(all_base62(&[b]), DECODE[usize::from(b)] != INVALID, "{b}");
        }
    }

    #[test]
    fn checksum_is_fixed_width_big_endian() {
        assert_eq!(checksum(b""), *b"000000");
        // CRC32("123456789") = 0xCBF43926 = 3421780262 = base62 "3jmiYg"... computed below.
        let mut v = 0xCBF4_3926u32;
        let mut expect = [b'0'; 6];
        for slot in expect.iter_mut().rev() {
            *slot = ALPHABET[(v % 62) as usize];
            v /= 62;
        }
        assert_eq!(checksum(b"123456789"), expect);
        assert_eq!(checksum_string("123456789").as_bytes(), &expect);
    }

    #[test]
    fn each_malformation_has_its_own_error() {
        let key = generate_key(Env::Live).unwrap();
        let k = key.as_bytes();
        let parse = |b: &[u8]| ParsedKey::parse(b).err();
        assert_eq!(parse(b""), Some(KeyFormatError::Prefix));
        assert_eq!(parse(b"sk_live_abc"), Some(KeyFormatError::Prefix));
        assert_eq!(parse(b"tg_prod_abc"), Some(KeyFormatError::Environment));
        assert_eq!(parse(b"tg_live"), Some(KeyFormatError::Environment));
        assert_eq!(parse(b"tg_LIVE_abc"), Some(KeyFormatError::Environment));
        assert_eq!(parse(&k[..k.len() - 1]), Some(KeyFormatError::Length));
        assert_eq!(parse(b"tg_test_"), Some(KeyFormatError::Length));
        let mut long = key.clone().into_bytes();
        long.extend_from_slice(&[b'a'; 40]);
        assert_eq!(parse(&long), Some(KeyFormatError::Length));
        let mut bad = k.to_vec();
        bad[20] = b'-';
        assert_eq!(parse(&bad), Some(KeyFormatError::Alphabet));
        let mut bad = k.to_vec();
        bad[20] = if bad[20] == b'a' { b'b' } else { b'a' };
        assert_eq!(parse(&bad), Some(KeyFormatError::Checksum));
    }

    #[test]
    fn accepts_random_lengths_30_to_64() {
        for n in MIN_RANDOM_LEN..=MAX_RANDOM_LEN {
            let mut body = b"tg_test_".to_vec();
            body.extend(std::iter::repeat_n(b'Z', n));
            let sum = checksum(&body);
            body.extend_from_slice(&sum);
            assert!(ParsedKey::parse(&body).is_ok(), "{n}");
        }
    }

    #[test]
    fn debug_does_not_print_the_key() {
        let key = generate_key(Env::Live).unwrap();
        let parsed = ParsedKey::parse(key.as_bytes()).unwrap();
        let shown = format!("{parsed:?}");
        assert!(!shown.contains(&key[14..]));
    }

    #[test]
    fn hmac_rfc4231_case_2() {
        // RFC 4231 test case 2: key "Jefe" (4 bytes, below our pepper minimum).
        let h = KeyHasher::with_any_key(b"Jefe");
        assert_eq!(
            hex(&h.hash(b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn hmac_rfc4231_case_6_long_key() {
        // RFC 4231 test case 6: 131-byte key 0xaa (hashed first).
        let h = KeyHasher::new(&[0xaa; 131]).unwrap();
        assert_eq!(
            hex(&h.hash(b"Test Using Larger Than Block-Size Key - Hash Key First")),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn hmac_rfc4231_case_1() {
        let h = KeyHasher::with_any_key(&[0x0b; 20]);
        assert_eq!(
            hex(&h.hash(b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
    }

    #[test]
    fn hmac_matches_the_hmac_crate_at_every_length() {
        use hmac::{Hmac, KeyInit, Mac};
        let pepper = [0x42u8; 32];
        let ours = KeyHasher::new(&pepper).unwrap();
        let message: Vec<u8> = (0..=255u8).collect();
        for len in 0..message.len() {
            let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&pepper).unwrap();
            mac.update(&message[..len]);
            let expect: [u8; 32] = mac.finalize().into_bytes().into();
            assert_eq!(ours.hash(&message[..len]), expect, "length {len}");
        }
    }

    #[test]
    fn short_pepper_is_refused() {
        assert!(KeyHasher::new(&[0; 15]).is_err());
        assert!(KeyHasher::new(&[0; 16]).is_ok());
    }

    #[test]
    fn constant_time_eq_works() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }

    proptest! {
        #[test]
        fn round_trip(env in prop_oneof![Just(Env::Live), Just(Env::Test)],
                      random in "[0-9A-Za-z]{30,64}") {
            let mut body = format!("tg_{env}_{random}");
            body.push_str(&checksum_string(&body));
            let parsed = ParsedKey::parse(body.as_bytes()).unwrap();
            prop_assert_eq!(parsed.env(), env);
            prop_assert_eq!(parsed.random(), random.as_str());
            prop_assert_eq!(parsed.as_str(), body.as_str());
        }

        #[test]
        fn every_single_character_change_is_rejected(pos in 0usize..MIN_KEY_LEN, byte in any::<u8>()) {
            let key = generate_key(Env::Live).unwrap();
            let mut bytes = key.into_bytes();
            prop_assume!(bytes[pos] != byte);
            bytes[pos] = byte;
            prop_assert!(ParsedKey::parse(&bytes).is_err());
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = ParsedKey::parse(&bytes);
        }

        #[test]
        fn hash_is_deterministic_and_keyed(key in proptest::collection::vec(any::<u8>(), 0..100)) {
            let a = KeyHasher::new(&[1; 32]).unwrap();
            let b = KeyHasher::new(&[2; 32]).unwrap();
            prop_assert_eq!(a.hash(&key), a.hash(&key));
            prop_assert_ne!(a.hash(&key), b.hash(&key));
        }
    }

    #[test]
    fn every_single_character_change_is_rejected_exhaustively() {
        let key = generate_key(Env::Test).unwrap();
        let original = key.into_bytes();
        for pos in 0..original.len() {
            for byte in 0..=255u8 {
                if byte == original[pos] {
                    continue;
                }
                let mut bytes = original.clone();
                bytes[pos] = byte;
                assert!(ParsedKey::parse(&bytes).is_err(), "pos {pos} byte {byte}");
            }
        }
    }
}
