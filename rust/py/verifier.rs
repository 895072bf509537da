//! `Verifier` and `Miss`.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};
use tenantgate_core as core;
use tenantgate_core::{Check, Digest, DisplayPrefix, RequestContext, Verdict};

use crate::clock::ManualClock;
use crate::convert::{self, non_negative, str_or_bytes};
use crate::errors::Error;
use crate::keys::hash_with;
use crate::limiter::{Buckets, Decision, Limiter, Quota};

/// What the binding caches per key: the caller's payload, and the rate limit
/// `verify_and_acquire` charges.
pub struct Payload {
    object: Py<PyAny>,
    limit: Option<core::Limit<BucketName>>,
}

impl core::Limited for Payload {
    type Bucket = BucketName;

    fn limit(&self) -> Option<&core::Limit<BucketName>> {
        self.limit.as_ref()
    }
}

/// A bucket id as an interned Python string, so the records of one tenant share one object.
pub struct BucketName(Py<PyString>);

impl core::BucketId for BucketName {
    type Error = PyErr;

    fn with_id<R>(&self, f: impl FnOnce(&str) -> R) -> PyResult<R> {
        Python::attach(|py| Ok(f(self.0.bind(py).to_str()?)))
    }
}

/// An `Authorization` header value and an optional `Host`, as bytes.
type Request<'a> = (&'a [u8], Option<&'a [u8]>);

/// `authorization` and `host` as bytes; `None` when the request is refused outright.
fn header_and_host<'a>(
    authorization: Option<&'a Bound<'_, PyAny>>,
    host: Option<&'a Bound<'_, PyAny>>,
) -> PyResult<Option<Request<'a>>> {
    let Some(authorization) = authorization else {
        return Ok(None);
    };
    let Some(header) = str_or_bytes(authorization, "authorization must be str, bytes or None")?
    else {
        return Ok(None);
    };
    let host = match host {
        Some(h) => match str_or_bytes(h, "host must be str, bytes or None")? {
            Some(h) => Some(h),
            // A host that is not valid text cannot be a bound domain.
            None => return Ok(None),
        },
        None => None,
    };
    Ok(Some((header, host)))
}

fn miss_object(py: Python<'_>, m: core::Miss) -> PyResult<Py<PyAny>> {
    let miss = Miss {
        digest: m.digest,
        display_prefix: m.display_prefix,
    };
    Ok(Py::new(py, miss)?.into_any())
}

/// A cache miss: look `digest` up in the database, insert the result, verify again.
#[pyclass(frozen, module = "tenantgate._native")]
pub struct Miss {
    digest: Digest,
    display_prefix: DisplayPrefix,
}

#[pymethods]
impl Miss {
    /// The 32-byte keyed hash of the presented key.
    #[getter]
    fn digest<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.digest)
    }

    /// `tg_<env>_` and the first 6 random characters of the presented key.
    #[getter]
    fn display_prefix<'py>(&self, py: Python<'py>) -> Bound<'py, PyString> {
        PyString::new(py, self.display_prefix.as_str())
    }

    fn __repr__(&self) -> String {
        format!("Miss(display_prefix={:?})", self.display_prefix.as_str())
    }
}

/// A hit of `verify_and_acquire` on a key restricted by scope or network that was stopped
/// before anything was charged: `check` names the check that failed (`"scope"` or
/// `"source address"`), or is `None` when the call lacked what it needs (the request's scope
/// bit, or its source address): call again with them.
#[pyclass(frozen, module = "tenantgate._native")]
pub struct Restricted {
    /// The key record's payload.
    #[pyo3(get)]
    payload: Py<PyAny>,
    check: Check,
}

#[pymethods]
impl Restricted {
    /// `"scope"`, `"source address"`, or `None` (not checked yet: call again with the
    /// request's scope and address).
    #[getter]
    fn check<'py>(&self, py: Python<'py>) -> Option<&Bound<'py, PyString>> {
        match self.check {
            Check::Unchecked => None,
            Check::Scope => Some(intern!(py, "scope")),
            Check::SourceAddress => Some(intern!(py, "source address")),
        }
    }

    fn __repr__(&self) -> &'static str {
        match self.check {
            Check::Unchecked => "Restricted(check=None)",
            Check::Scope => "Restricted(check='scope')",
            Check::SourceAddress => "Restricted(check='source address')",
        }
    }
}

/// The in-process cache of key records and the one-call `verify` hot path.
#[pyclass(frozen, module = "tenantgate._native")]
pub struct Verifier {
    inner: core::Verifier<Payload>,
}

#[pymethods]
impl Verifier {
    #[new]
    #[pyo3(signature = (
        pepper,
        *,
        capacity = 1_000_000,
        ttl_seconds = 30.0,
        negative_ttl_seconds = 5.0,
        clock = None,
    ))]
    fn new(
        pepper: &[u8],
        capacity: usize,
        ttl_seconds: f64,
        negative_ttl_seconds: f64,
        clock: Option<&Bound<'_, ManualClock>>,
    ) -> PyResult<Self> {
        let config = core::VerifierConfig {
            capacity,
            ttl_seconds,
            negative_ttl_seconds,
        };
        let inner = core::Verifier::new(pepper, config, convert::clock(clock)).map_err(Error)?;
        Ok(Self { inner })
    }

    /// The payload on a hit, a `Miss` on a cache miss, `None` when refused (for any reason).
    #[pyo3(signature = (authorization, host = None))]
    fn verify(
        &self,
        py: Python<'_>,
        authorization: Option<&Bound<'_, PyAny>>,
        host: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Option<Py<PyAny>>> {
        let Some((header, host)) = header_and_host(authorization, host)? else {
            return Ok(None);
        };
        match self
            .inner
            .verify_with(header, host, |p| p.object.clone_ref(py))
        {
            Verdict::Hit(payload) => Ok(Some(payload)),
            Verdict::Refused => Ok(None),
            Verdict::Miss(m) => Ok(Some(miss_object(py, m)?)),
        }
    }

    /// `verify`, then on a hit checks the record's scopes and networks (when it was inserted
    /// with any) against `scope` (the bit of the scope the request needs, 0 for none) and
    /// `address` (its source address), and if they pass `limiter.try_acquire(bucket, quota,
    /// cost)` with the bucket and quota inserted with the record, in one call: on a hit, a
    /// `Decision` whose `payload` is the record's (a record without a quota gets an allowed
    /// `Decision` with `limit == 0`, having charged nothing), or `Restricted` if a check
    /// stopped it (nothing charged); `Miss` on a miss; `None` if refused.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (authorization, host, limiter, cost = 1, scope = None, address = None))]
    fn verify_and_acquire(
        &self,
        py: Python<'_>,
        authorization: Option<&Bound<'_, PyAny>>,
        host: Option<&Bound<'_, PyAny>>,
        limiter: &Bound<'_, Limiter>,
        cost: i64,
        scope: Option<u16>,
        address: Option<&str>,
    ) -> PyResult<Option<Py<PyAny>>> {
        let cost = non_negative(cost, "cost must not be negative")?;
        let Some((header, host)) = header_and_host(authorization, host)? else {
            return Ok(None);
        };
        let context = RequestContext { scope, address };
        let on_hit = |p: &Payload| p.object.clone_ref(py);
        let verdict = match &limiter.get().inner {
            Buckets::Heap(l) => self
                .inner
                .verify_and_acquire(header, host, l, cost, context, on_hit),
            Buckets::Shared(l) => self
                .inner
                .verify_and_acquire(header, host, l, cost, context, on_hit),
        };
        match verdict {
            Verdict::Hit(hit) => match hit? {
                (object, Ok(decision)) => Ok(Some(
                    Py::new(py, Decision::with_payload(decision, object))?.into_any(),
                )),
                (payload, Err(check)) => {
                    Ok(Some(Py::new(py, Restricted { payload, check })?.into_any()))
                }
            },
            Verdict::Refused => Ok(None),
            Verdict::Miss(m) => Ok(Some(miss_object(py, m)?)),
        }
    }

    /// The 32-byte keyed hash of `key` (any text or bytes; not checked for format).
    fn hash<'py>(&self, py: Python<'py>, key: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
        hash_with(py, key, |k| self.inner.hash(k))
    }

    /// Caches a key record for `digest` for the TTL (or `ttl_seconds`). `quota` and `bucket`
    /// (default: the tenant id), `scopes` (a mask of scope bits; `None`: every scope) and
    /// `networks` (CIDRs the key may be used from, parsed here; empty: anywhere) are only used
    /// by `verify_and_acquire`.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (
        digest, *, tenant_id, key_id, expires_at, usable, payload, quota = None, bucket = None,
        scopes = None, networks = Vec::new(), ttl_seconds = None,
    ))]
    fn insert(
        &self,
        py: Python<'_>,
        digest: &[u8],
        tenant_id: Bound<'_, PyString>,
        key_id: &str,
        expires_at: Option<f64>,
        usable: bool,
        payload: Py<PyAny>,
        quota: Option<Py<Quota>>,
        bucket: Option<Bound<'_, PyString>>,
        scopes: Option<u16>,
        networks: Vec<String>,
        ttl_seconds: Option<f64>,
    ) -> PyResult<()> {
        let digest = convert::digest(digest)?;
        let restriction = core::Restriction::new(scopes, &networks).map_err(Error)?;
        let tenant = tenant_id.to_str()?;
        let limit = match quota {
            None => None,
            Some(quota) => {
                // Interned, so the records of one tenant share one string object.
                let bucket = match &bucket {
                    Some(b) => PyString::intern(py, b.to_str()?),
                    None => PyString::intern(py, tenant),
                };
                Some(core::Limit::new(
                    quota.get().inner.clone(),
                    BucketName(bucket.unbind()),
                ))
            }
        };
        let record = core::Record {
            tenant_id: tenant.to_owned(),
            key_id: key_id.to_owned(),
            expires_at,
            usable,
            payload: Payload {
                object: payload,
                limit,
            },
            restriction,
        };
        let inserted = match ttl_seconds {
            None => self.inner.insert(&digest, record),
            Some(ttl) => self.inner.insert_for(&digest, record, ttl),
        };
        Ok(inserted.map_err(Error)?)
    }

    /// Caches a refusal for `digest` for the negative TTL.
    fn insert_refusal(&self, digest: &[u8]) -> PyResult<()> {
        self.inner.insert_refusal(&convert::digest(digest)?);
        Ok(())
    }

    /// Drops the cached record of `key_id`; whether there was one.
    fn invalidate_key(&self, key_id: &str) -> bool {
        self.inner.invalidate_key(key_id)
    }

    /// Drops every cached record of `tenant_id`; how many.
    fn invalidate_tenant(&self, tenant_id: &str) -> usize {
        self.inner.invalidate_tenant(tenant_id)
    }

    /// Binds a host name to a tenant: other tenants' keys are refused on it.
    fn bind_domain(&self, domain: &str, tenant_id: &str) -> PyResult<()> {
        Ok(self.inner.bind_domain(domain, tenant_id).map_err(Error)?)
    }

    /// Removes a domain binding (no error if there was none).
    fn unbind_domain(&self, domain: &str) {
        self.inner.unbind_domain(domain);
    }

    /// Drops every cached entry (domain bindings stay).
    fn clear(&self) {
        self.inner.clear();
    }

    /// Makes every record that would stay fresh longer than `within_seconds` go stale within
    /// them, each at its own point (spread by digest); refusals stay. How many were shortened.
    fn shorten(&self, within_seconds: f64) -> PyResult<usize> {
        Ok(self.inner.shorten(within_seconds).map_err(Error)?)
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __repr__(&self) -> String {
        format!(
            "Verifier(len={}, capacity={})",
            self.inner.len(),
            self.inner.capacity()
        )
    }
}
