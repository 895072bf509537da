//! Argument conversions shared by the classes.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};
use std::sync::{Arc, OnceLock};
use tenantgate_core::{Clock, Digest, SystemClock};

use crate::clock::ManualClock;
use crate::errors::value_error;

/// The bytes of a `str` (UTF-8) or `bytes` argument.
///
/// `Ok(None)` for a `str` that cannot be encoded (lone surrogates): never a valid key.
pub fn str_or_bytes<'a>(
    obj: &'a Bound<'_, PyAny>,
    what: &'static str,
) -> PyResult<Option<&'a [u8]>> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Some(b.as_bytes()));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(s.to_str().ok().map(str::as_bytes));
    }
    Err(PyTypeError::new_err(what))
}

/// A 32-byte digest argument.
pub fn digest(bytes: &[u8]) -> PyResult<Digest> {
    Digest::try_from(bytes).map_err(|_| value_error("digest must be 32 bytes"))
}

/// The core clock behind an optional `ManualClock` argument: `None` means the one system
/// clock every verifier and limiter shares (so a combined call can read it once).
pub fn clock(clock: Option<&Bound<'_, ManualClock>>) -> Arc<dyn Clock> {
    static SYSTEM: OnceLock<Arc<dyn Clock>> = OnceLock::new();
    match clock {
        Some(c) => c.get().shared(),
        None => SYSTEM.get_or_init(|| Arc::new(SystemClock::new())).clone(),
    }
}

/// A non-negative integer argument that the core takes as `u64`.
pub fn non_negative(value: i64, message: &'static str) -> PyResult<u64> {
    u64::try_from(value).map_err(|_| value_error(message))
}
