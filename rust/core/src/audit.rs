//! The audit log's canonical record encoding and its hash chain.
//!
//! A record is a fixed sequence of fields, each text or absent. Its canonical encoding is
//! [`DOMAIN`], then per field either `0x00` (absent) or `0x01`, the length as a big-endian
//! `u32` and the UTF-8 bytes: unambiguous (no separator a value could contain, absent distinct
//! from empty) and independent of any serializer's choices. A record's hash is
//! `SHA-256(previous hash ‖ encoding)`, the previous hash of a chain's first record being 32
//! zero bytes: editing, removing or reordering a record changes every hash after it.

use sha2::{Digest as _, Sha256};

use crate::error::{CoreError, CoreResult};

/// Separates this use of SHA-256 from every other (and names the encoding's version).
pub const DOMAIN: &[u8] = b"tenantgate/audit-record/v1\0";

/// Bytes in a record hash.
pub const HASH_LEN: usize = 32;

/// The previous hash of a chain's first record.
pub const GENESIS: [u8; HASH_LEN] = [0; HASH_LEN];

/// The canonical encoding of `fields` (see the module docs).
///
/// # Errors
/// [`CoreError::InvalidArgument`] for a field longer than `u32::MAX` bytes.
pub fn canonical_encoding(fields: &[Option<&str>]) -> CoreResult<Vec<u8>> {
    let size = DOMAIN.len()
        + fields
            .iter()
            .map(|f| 5 + f.map_or(0, str::len))
            .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(DOMAIN);
    for field in fields {
        match field {
            None => out.push(0),
            Some(text) => {
                let len = u32::try_from(text.len())
                    .map_err(|_| CoreError::InvalidArgument("an audit field is over 4 GiB"))?;
                out.push(1);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(text.as_bytes());
            }
        }
    }
    Ok(out)
}

/// The hash of a record with `fields` that follows a record hashed `previous`.
///
/// # Errors
/// [`CoreError::InvalidArgument`] when `previous` is not [`HASH_LEN`] bytes, or a field is
/// longer than `u32::MAX` bytes.
pub fn record_hash(previous: &[u8], fields: &[Option<&str>]) -> CoreResult<[u8; HASH_LEN]> {
    if previous.len() != HASH_LEN {
        return Err(CoreError::InvalidArgument(
            "the previous audit hash must be 32 bytes",
        ));
    }
    let mut hasher = Sha256::new();
    hasher.update(previous);
    hasher.update(canonical_encoding(fields)?);
    Ok(hasher.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_and_empty_fields_differ() {
        let absent = record_hash(&GENESIS, &[None, Some("x")]).unwrap();
        let empty = record_hash(&GENESIS, &[Some(""), Some("x")]).unwrap();
        assert_ne!(absent, empty);
    }

    #[test]
    fn field_boundaries_cannot_be_moved() {
        let a = record_hash(&GENESIS, &[Some("ab"), Some("c")]).unwrap();
        let b = record_hash(&GENESIS, &[Some("a"), Some("bc")]).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn the_previous_hash_is_part_of_the_hash() {
        let first = record_hash(&GENESIS, &[Some("x")]).unwrap();
        let again = record_hash(&first, &[Some("x")]).unwrap();
        assert_ne!(first, again);
        assert!(record_hash(&first[..31], &[Some("x")]).is_err());
    }

    #[test]
    fn the_encoding_is_the_documented_one() {
        let encoded = canonical_encoding(&[None, Some("é")]).unwrap();
        let mut expected = DOMAIN.to_vec();
        expected.extend_from_slice(&[0, 1, 0, 0, 0, 2, 0xc3, 0xa9]);
        assert_eq!(encoded, expected);
    }
}
