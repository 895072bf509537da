"""Rate limits: GCRA token buckets keyed by any string, with shared, updatable quotas.

Everything here is the native core itself (:mod:`tenantgate._native`), re-exported with no
wrapper in between.

- :class:`Quota` — ``rate_per_second`` and ``burst``; one object is shared by every bucket
  that uses it, and :meth:`Quota.update` takes effect on the next acquire (a plan change
  applies at once, with no per-tenant bookkeeping).
- :class:`Limiter` — ``try_acquire(id, quota, cost=1)`` answers a :class:`Decision`. State is
  one theoretical arrival time per id (GCRA: emission interval ``1 / rate``, tolerance
  ``burst / rate``); no refill thread. ``capacity`` bounds the number of ids kept.
- :class:`Decision` — ``allowed``, and the numbers for the ``RateLimit-*`` headers:
  ``limit`` (= burst), ``remaining``, ``reset_after`` (seconds until the bucket is full) and
  ``retry_after`` (seconds until this request would be allowed; 0 when allowed).
"""

from __future__ import annotations

from tenantgate._native import Decision, Limiter, Quota

__all__ = ["Decision", "Limiter", "Quota"]
