//! The audit log's record hash.

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use tenantgate_core::audit;

use crate::errors::Error;

/// The hash of an audit record with `fields` (text or `None`, in the log's fixed order) that
/// follows the record hashed `previous` (32 bytes; 32 zero bytes for a chain's first record).
#[pyfunction]
pub fn audit_record_hash<'py>(
    py: Python<'py>,
    previous: &[u8],
    fields: Vec<Option<String>>,
) -> PyResult<Bound<'py, PyBytes>> {
    let borrowed: Vec<Option<&str>> = fields.iter().map(Option::as_deref).collect();
    let hash = audit::record_hash(previous, &borrowed).map_err(Error)?;
    Ok(PyBytes::new(py, &hash))
}
