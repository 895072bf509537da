//! `tenantgate._native`: the PyO3 binding of `tenantgate-core`.
//!
//! This crate only converts arguments, maps errors and registers classes; all logic lives
//! in the core. Every class is `frozen` (the core uses atomics and locks inside), and the
//! module declares `gil_used = false`.

// Denied rather than forbidden so that one module (`shared`, a buffer seen as atomics) can
// allow it.
#![deny(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod audit;
mod clock;
mod convert;
mod errors;
mod keys;
mod limiter;
mod shared;
mod verifier;

use pyo3::prelude::*;

/// The native core of tenantgate: API keys, the verifier cache and the rate limiter.
#[pymodule(gil_used = false)]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(keys::generate_key, m)?)?;
    m.add_function(wrap_pyfunction!(keys::parse_key, m)?)?;
    m.add_function(wrap_pyfunction!(keys::key_checksum, m)?)?;
    m.add_function(wrap_pyfunction!(keys::constant_time_eq, m)?)?;
    m.add_function(wrap_pyfunction!(audit::audit_record_hash, m)?)?;
    m.add_class::<keys::ParsedKey>()?;
    m.add_class::<keys::KeyHasher>()?;
    m.add_class::<clock::ManualClock>()?;
    m.add_class::<verifier::Miss>()?;
    m.add_class::<verifier::Verifier>()?;
    m.add_class::<verifier::Restricted>()?;
    m.add_class::<limiter::Quota>()?;
    m.add_class::<limiter::Decision>()?;
    m.add_class::<limiter::Limiter>()?;
    Ok(())
}
