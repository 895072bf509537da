"""Time as the native core reads it.

The verifier and the limiter read the system clocks unless given a :class:`ManualClock`, which
moves only when told to (``advance``, ``set_unix_time``); tests use it to drive TTLs, key
expiry and token refill deterministically. Re-exported from the core (:mod:`tenantgate.core`).
"""

from __future__ import annotations

from tenantgate.core import implementation as _core

ManualClock = _core.ManualClock

__all__ = ["ManualClock"]
