//! `ManualClock`: a clock tests move by hand.

use std::sync::Arc;

use pyo3::prelude::*;
use tenantgate_core as core;
use tenantgate_core::Clock;

use crate::errors::Error;

/// A clock that moves only when told to; pass it to `Verifier` and `Limiter` in tests.
///
/// Monotonic time starts at 0.0; `advance` moves monotonic and Unix time together.
#[pyclass(frozen, module = "tenantgate._native")]
pub struct ManualClock {
    inner: Arc<core::ManualClock>,
}

impl ManualClock {
    /// The core clock, shared.
    pub fn shared(&self) -> Arc<dyn Clock> {
        self.inner.clone()
    }
}

#[pymethods]
impl ManualClock {
    #[new]
    #[pyo3(signature = (unix_time = 1_700_000_000.0))]
    fn new(unix_time: f64) -> PyResult<Self> {
        let inner = core::ManualClock::new(unix_time).map_err(Error)?;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// Moves monotonic and Unix time forward by `seconds` (ValueError if negative).
    fn advance(&self, seconds: f64) -> PyResult<()> {
        Ok(self.inner.advance(seconds).map_err(Error)?)
    }

    /// Sets the Unix time; monotonic time is unaffected.
    fn set_unix_time(&self, unix_time: f64) -> PyResult<()> {
        Ok(self.inner.set_unix(unix_time).map_err(Error)?)
    }

    /// Seconds since the Unix epoch.
    fn unix_time(&self) -> f64 {
        self.inner.unix_seconds()
    }

    /// Monotonic seconds (from 0.0 at construction).
    fn monotonic(&self) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let ns = self.inner.monotonic_ns() as f64;
        ns / 1e9
    }

    fn __repr__(&self) -> String {
        format!(
            "ManualClock(unix_time={:?}, monotonic={:?})",
            self.unix_time(),
            self.monotonic()
        )
    }
}
