//! `Quota`, `Decision` and `Limiter`.

use std::sync::Arc;

use pyo3::prelude::*;
use tenantgate_core as core;

use crate::clock::ManualClock;
use crate::convert::{self, non_negative};
use crate::errors::{value_error, Error};
use crate::shared::SharedWords;

fn burst(value: i64) -> PyResult<u32> {
    match u32::try_from(value) {
        Ok(b) if b >= 1 => Ok(b),
        _ => Err(value_error("burst must be between 1 and 4294967295")),
    }
}

/// A rate and burst shared by every bucket that uses it; `update` applies to all of them
/// on their next call.
#[pyclass(frozen, module = "tenantgate._native")]
pub struct Quota {
    /// Shared with the key records inserted with this quota.
    pub(crate) inner: Arc<core::Quota>,
}

#[pymethods]
impl Quota {
    #[new]
    fn new(rate_per_second: f64, burst: i64) -> PyResult<Self> {
        let inner = core::Quota::new(rate_per_second, self::burst(burst)?).map_err(Error)?;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// Requests per second.
    #[getter]
    fn rate_per_second(&self) -> f64 {
        self.inner.rate_per_second()
    }

    /// Most requests at once.
    #[getter]
    fn burst(&self) -> u32 {
        self.inner.burst()
    }

    /// Replaces rate and burst atomically (ValueError, and no change, if invalid).
    fn update(&self, rate_per_second: f64, burst: i64) -> PyResult<()> {
        Ok(self
            .inner
            .update(rate_per_second, self::burst(burst)?)
            .map_err(Error)?)
    }

    fn __repr__(&self) -> String {
        let v = self.inner.get();
        format!(
            "Quota(rate_per_second={:?}, burst={})",
            v.rate_per_second, v.burst
        )
    }
}

/// The outcome of `Limiter.try_acquire` and, with the record's payload, of
/// `Verifier.verify_and_acquire`.
#[pyclass(frozen, module = "tenantgate._native")]
pub struct Decision {
    /// The payload of the key record `verify_and_acquire` found; `None` from `try_acquire`.
    /// (Carried here rather than in a `(payload, decision)` tuple: one allocation less on the
    /// per-request path.)
    #[pyo3(get)]
    payload: Option<Py<PyAny>>,
    /// Whether the request may proceed.
    #[pyo3(get)]
    allowed: bool,
    /// The quota's burst.
    #[pyo3(get)]
    limit: u32,
    /// Whole tokens left after this call.
    #[pyo3(get)]
    remaining: u32,
    /// Seconds until the bucket is full again.
    #[pyo3(get)]
    reset_after: f64,
    /// Seconds until the cost would be allowed; 0.0 when allowed, inf if never (cost > burst).
    #[pyo3(get)]
    retry_after: f64,
}

#[pymethods]
impl Decision {
    fn __repr__(&self) -> String {
        format!(
            "Decision(allowed={}, limit={}, remaining={}, reset_after={:?}, retry_after={:?})",
            if self.allowed { "True" } else { "False" },
            self.limit,
            self.remaining,
            self.reset_after,
            self.retry_after
        )
    }
}

impl Decision {
    /// `d`, carrying `payload`.
    pub fn with_payload(d: core::Decision, payload: Py<PyAny>) -> Self {
        Self {
            payload: Some(payload),
            ..Self::from(d)
        }
    }
}

impl From<core::Decision> for Decision {
    fn from(d: core::Decision) -> Self {
        Self {
            payload: None,
            allowed: d.allowed,
            limit: d.limit,
            remaining: d.remaining,
            reset_after: d.reset_after,
            retry_after: d.retry_after,
        }
    }
}

/// Where a `Limiter` keeps its buckets.
pub enum Buckets {
    /// This process's heap maps.
    Heap(core::Limiter),
    /// A slot table in memory shared by the worker processes of a host.
    Shared(core::shared::SharedLimiter<SharedWords>),
}

/// Token buckets (GCRA) keyed by id, each checked against the quota passed in.
#[pyclass(frozen, module = "tenantgate._native")]
pub struct Limiter {
    pub(crate) inner: Buckets,
}

#[pymethods]
impl Limiter {
    #[new]
    #[pyo3(signature = (*, capacity = 1_000_000, clock = None))]
    fn new(capacity: usize, clock: Option<&Bound<'_, ManualClock>>) -> PyResult<Self> {
        let inner = core::Limiter::new(capacity, convert::clock(clock)).map_err(Error)?;
        Ok(Self {
            inner: Buckets::Heap(inner),
        })
    }

    /// A limiter whose buckets live in `memory` (a writable buffer, e.g. an `mmap.mmap` of
    /// `shared_size(slots)` bytes, all zero when new), shared with every other limiter over
    /// the same memory, in this process or another. The first one writes the table's header.
    #[staticmethod]
    #[pyo3(signature = (memory, *, clock = None))]
    fn shared(memory: &Bound<'_, PyAny>, clock: Option<&Bound<'_, ManualClock>>) -> PyResult<Self> {
        let words = SharedWords::new(memory)?;
        let inner = match clock {
            None => core::shared::attach(words),
            Some(c) => core::shared::attach_with_clock(words, c.get().shared()),
        }
        .map_err(Error)?;
        Ok(Self {
            inner: Buckets::Shared(inner),
        })
    }

    /// The bytes of shared memory a table of at least `slots` buckets needs.
    #[staticmethod]
    fn shared_size(slots: usize) -> PyResult<usize> {
        if slots == 0 {
            return Err(value_error("slots must be at least 1"));
        }
        core::shared::words_for(slots)
            .checked_mul(8)
            .ok_or_else(|| value_error("slots is too large"))
    }

    /// Takes `cost` tokens from `id`'s bucket under `quota` if it has them.
    #[pyo3(signature = (id, quota, cost = 1))]
    fn try_acquire(&self, id: &str, quota: &Bound<'_, Quota>, cost: i64) -> PyResult<Decision> {
        let cost = non_negative(cost, "cost must not be negative")?;
        let quota = &quota.get().inner;
        Ok(match &self.inner {
            Buckets::Heap(l) => l.try_acquire(id, quota, cost),
            Buckets::Shared(l) => l.try_acquire(id, quota, cost),
        }
        .into())
    }

    /// The most buckets this limiter holds (when full, see the README: idle buckets go
    /// first).
    #[getter]
    fn capacity(&self) -> usize {
        match &self.inner {
            Buckets::Heap(l) => l.capacity(),
            Buckets::Shared(l) => l.capacity(),
        }
    }

    /// Whether the buckets are in shared memory.
    #[getter]
    fn is_shared(&self) -> bool {
        matches!(self.inner, Buckets::Shared(_))
    }

    fn __len__(&self) -> usize {
        match &self.inner {
            Buckets::Heap(l) => l.len(),
            Buckets::Shared(l) => l.len(),
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "Limiter(len={}, capacity={}, shared={})",
            self.__len__(),
            self.capacity(),
            if self.is_shared() { "True" } else { "False" }
        )
    }
}
