//! Key functions, `ParsedKey` and `KeyHasher`.

use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};
use tenantgate_core as core;
use tenantgate_core::{CoreError, Env, KeyFormatError};

use crate::convert::str_or_bytes;
use crate::errors::Error;

/// A new random key for `env` (`"live"` or `"test"`).
#[pyfunction]
#[pyo3(signature = (env = "live"))]
pub fn generate_key(env: &str) -> PyResult<String> {
    let env = Env::from_name(env).map_err(Error)?;
    Ok(core::generate_key(env).map_err(Error)?)
}

/// Checks a key's prefix, environment, length, alphabet and checksum.
///
/// Raises `tenantgate.errors.KeyFormatError` (a `ValueError`) naming the part that is wrong.
#[pyfunction]
pub fn parse_key(key: &Bound<'_, PyAny>) -> PyResult<ParsedKey> {
    let bytes = str_or_bytes(key, "key must be str or bytes")?
        .ok_or(Error(CoreError::KeyFormat(KeyFormatError::Alphabet)))?;
    let inner = core::ParsedKey::parse(bytes).map_err(Error::from)?;
    Ok(ParsedKey { inner })
}

/// The 6-character base62 CRC32 checksum of `body` (everything before the checksum).
#[pyfunction]
pub fn key_checksum(body: &str) -> String {
    core::checksum_string(body)
}

/// Compares two byte strings in time that depends only on their lengths.
#[pyfunction]
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    core::constant_time_eq(a, b)
}

/// The parts of a well-formed key. The secret part is not shown by `repr`.
#[pyclass(frozen, module = "tenantgate._native")]
pub struct ParsedKey {
    inner: core::ParsedKey,
}

#[pymethods]
impl ParsedKey {
    /// `"live"` or `"test"`.
    #[getter]
    fn env<'py>(&self, py: Python<'py>) -> &Bound<'py, PyString> {
        match self.inner.env() {
            Env::Live => intern!(py, "live"),
            Env::Test => intern!(py, "test"),
        }
    }

    /// The random part.
    #[getter]
    fn random(&self) -> &str {
        self.inner.random()
    }

    /// The 6 checksum characters.
    #[getter]
    fn checksum(&self) -> &str {
        self.inner.checksum()
    }

    /// `tg_<env>_` and the first 6 random characters, safe to show.
    #[getter]
    fn display_prefix(&self) -> String {
        self.inner.display_prefix().as_str().to_owned()
    }

    fn __repr__(&self) -> String {
        format!(
            "ParsedKey(env={:?}, display_prefix={:?})",
            self.inner.env().as_str(),
            self.inner.display_prefix().as_str()
        )
    }
}

/// HMAC-SHA-256 under a pepper of at least 16 bytes.
#[pyclass(frozen, module = "tenantgate._native")]
pub struct KeyHasher {
    inner: core::KeyHasher,
}

#[pymethods]
impl KeyHasher {
    #[new]
    fn new(pepper: &[u8]) -> PyResult<Self> {
        let inner = core::KeyHasher::new(pepper).map_err(Error)?;
        Ok(Self { inner })
    }

    /// The 32-byte HMAC-SHA-256 of `key` (a `str` is hashed as UTF-8).
    fn hash<'py>(&self, py: Python<'py>, key: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
        hash_with(py, key, |k| self.inner.hash(k))
    }

    fn __repr__(&self) -> &'static str {
        "KeyHasher(...)"
    }
}

/// `hasher.hash(key)` for a `str` or `bytes` key, as `bytes`.
pub fn hash_with<'py>(
    py: Python<'py>,
    key: &Bound<'py, PyAny>,
    hash: impl Fn(&[u8]) -> core::Digest,
) -> PyResult<Bound<'py, PyBytes>> {
    let digest = if let Ok(b) = key.cast::<PyBytes>() {
        hash(b.as_bytes())
    } else if let Ok(s) = key.cast::<PyString>() {
        hash(s.to_str()?.as_bytes())
    } else {
        return Err(PyTypeError::new_err("key must be str or bytes"));
    };
    Ok(PyBytes::new(py, &digest))
}
