"""Rate limits: GCRA token buckets keyed by any string, with shared, updatable quotas.

Everything here is the core itself (:mod:`tenantgate._native`, or its twin: see
:mod:`tenantgate.core`), re-exported with no
wrapper in between.

- :class:`Quota` — ``rate_per_second`` and ``burst``; one object is shared by every bucket
  that uses it, and :meth:`Quota.update` takes effect on the next acquire (a plan change
  applies at once, with no per-tenant bookkeeping: a bucket last charged under the values
  the update replaced is forgiven its debt after a raise, and still owes its tokens, at the
  new rate, after a cut).
- :class:`Limiter` — ``try_acquire(id, quota, cost=1)`` answers a :class:`Decision`. State is
  one theoretical arrival time per id (GCRA: emission interval ``1 / rate``, tolerance
  ``burst / rate``); no refill thread. ``capacity`` bounds the number of ids kept.
  ``Limiter.shared(memory)`` keeps the buckets in memory shared with other processes instead
  (``Limiter.shared_size(slots)`` bytes; see :mod:`tenantgate.host_limits`).
- :class:`Decision` — ``allowed``, and the numbers for the ``RateLimit-*`` headers:
  ``limit`` (= burst), ``remaining``, ``reset_after`` (seconds until the bucket is full) and
  ``retry_after`` (seconds until this request would be allowed; 0 when allowed).
"""

from __future__ import annotations

from tenantgate.core import implementation as _core

Decision = _core.Decision
Limiter = _core.Limiter
Quota = _core.Quota

__all__ = ["Decision", "Limiter", "Quota"]
