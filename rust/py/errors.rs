//! The one place core errors become Python exceptions.
//!
//! | core                          | Python                                   |
//! |-------------------------------|------------------------------------------|
//! | `CoreError::KeyFormat`        | `tenantgate.errors.KeyFormatError`       |
//! | `CoreError::InvalidArgument`  | `ValueError`                             |
//! | `CoreError::Random`           | `OSError`                                |

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::PyErr;
use tenantgate_core::CoreError;

pyo3::import_exception!(tenantgate.errors, KeyFormatError);

/// A core error on its way to Python (a local type, so `From` can be implemented here).
#[derive(Debug)]
pub struct Error(pub CoreError);

impl From<CoreError> for Error {
    fn from(e: CoreError) -> Self {
        Self(e)
    }
}

impl From<tenantgate_core::KeyFormatError> for Error {
    fn from(e: tenantgate_core::KeyFormatError) -> Self {
        Self(CoreError::KeyFormat(e))
    }
}

impl From<Error> for PyErr {
    fn from(Error(e): Error) -> Self {
        let message = e.to_string();
        match e {
            CoreError::KeyFormat(_) => KeyFormatError::new_err(message),
            CoreError::InvalidArgument(_) => PyValueError::new_err(message),
            CoreError::Random(_) => PyOSError::new_err(message),
        }
    }
}

/// A `ValueError` for argument checks done in the binding itself.
pub fn value_error(message: &'static str) -> PyErr {
    Error(CoreError::InvalidArgument(message)).into()
}
