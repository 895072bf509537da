"""One rate-limit budget per tenant across instances sharing a Redis
(``TENANTGATE_RATELIMIT_SCOPE=cluster``), by leasing tokens in batches.

**Design.** Each tenant's cluster budget is a GCRA bucket in Redis
(:mod:`tenantgate.cache.leases`). An instance does not ask Redis per request: it leases a
batch of up to :func:`lease_size` tokens (``burst // 32``, at least 1) in one round trip and
spends them locally, one per request, with no I/O; when a lease runs down to half a batch, the
next batch is fetched in the background, off the request path. A request waits for Redis only
when its instance holds no token at all (a batch of 1 for plans with a burst under 64, or a
spike faster than a round trip). What instances hold unused is at most 1.5 batches each
(under 5% of the burst): the cluster never allows more than its budget, and allows less by at
most that. Leases not refilled for :data:`LEASE_SECONDS` are dropped, by a task, within as
long again (a tenant gone idle does not keep tokens for a later burst on top of a refilled
bucket), and held tokens are not spent after a plan change.

This runs *after* the host tier (:mod:`tenantgate.host_limits`), which still charges every
request in the one native call: the cluster tier can only refuse more. So the host tier is
also the fallback, ready at every moment: when Redis does not answer within
:data:`LEASE_TIMEOUT_SECONDS` (``TENANTGATE_RATELIMIT_REDIS_TIMEOUT``; or refuses the
connection), the host's decision stands —
limits still apply, each instance its own host budget, never open — and the decision is
counted in :attr:`ClusterBudget.fallback_decisions` (per plan). For
:data:`RETRY_SECONDS` no request waits on Redis; then the first request that needs a lease
asks again in the background, and the instance goes back to the shared budget by itself once
Redis answers.

When Redis says the bucket is empty, it says for how long; the instance refuses (429) without
asking again until then and until a whole batch has accrued (a flood of refused requests
costs no round trips, and a tenant held at its rate costs one per batch, not one per token).

Only authenticated requests reach this tier: identification never depends on Redis here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from typing import TYPE_CHECKING, Final

from tenantgate.cache.leases import take_tokens
from tenantgate.errors import ServiceUnavailableError

if TYPE_CHECKING:
    from collections.abc import Callable

    from tenantgate.cache.connections import RedisClient
    from tenantgate.limits import Quota

__all__ = [
    "LEASE_SECONDS",
    "LEASE_TIMEOUT_SECONDS",
    "RETRY_SECONDS",
    "ClusterBudget",
    "lease_size",
]

LEASE_TIMEOUT_SECONDS: Final = 0.1
"""How long one lease round trip may take before Redis counts as down, unless told otherwise
(``TENANTGATE_RATELIMIT_REDIS_TIMEOUT``)."""

RETRY_SECONDS: Final = 1.0
"""After Redis failed, how long requests are decided by the host tier alone before the next
lease is attempted (in the background)."""

LEASE_SECONDS: Final = 1.0
"""How long leased tokens may be held unused."""

_LEASE_FRACTION: Final = 32
"""A batch is ``burst // _LEASE_FRACTION`` tokens: with a refill started at half a batch, an
instance holds at most 1.5 batches, under 5% of the burst."""

_MOST_LEASES: Final = 100_000
"""Tenants whose leases are remembered (stale ones are dropped every second anyway)."""

_ATTEMPTS: Final = 3
"""Lease round trips one request may wait for (other requests may spend a batch first)."""

_logger = logging.getLogger(__name__)


def lease_size(burst: int) -> int:
    """The tokens one lease asks for under a plan of ``burst``."""
    return max(1, burst // _LEASE_FRACTION)


class _Lease:
    """The tokens an instance holds of one tenant's cluster budget."""

    __slots__ = (
        "bucket",
        "burst",
        "expires",
        "low_water",
        "rate",
        "refill",
        "retry_at",
        "size",
        "tokens",
    )

    def __init__(self, bucket: str, rate: float, burst: int) -> None:
        self.bucket = bucket
        """The Redis bucket's name (the tenant id)."""
        self.rate = rate
        self.burst = burst
        self.size = lease_size(burst)
        self.low_water = self.size // 2 if self.size > 1 else -1
        """At this many tokens held the next batch is fetched ahead (never for batches of
        one: holding a spare token of a small burst is too much of it)."""
        self.tokens = 0
        self.expires = 0.0
        self.retry_at = 0.0
        """Until then Redis said the bucket is empty (monotonic seconds)."""
        self.refill: asyncio.Task[None] | None = None


class ClusterBudget:
    """The cluster tier of one instance: its leases, and the Redis they come from."""

    __slots__ = (
        "_clock",
        "_down_until",
        "_leases",
        "_redis",
        "_sweeper",
        "_timeout",
        "fallback_decisions",
        "round_trips",
    )

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        timeout_seconds: float = LEASE_TIMEOUT_SECONDS,
    ) -> None:
        self._clock = clock
        self._timeout = timeout_seconds
        self._redis: RedisClient | None = None
        self._leases: dict[str, _Lease] = {}
        self._down_until = 0.0
        self._sweeper: asyncio.Task[None] | None = None
        self.fallback_decisions: Counter[str] = Counter()
        """Requests decided by the host tier alone because Redis was unavailable, per plan."""
        self.round_trips = 0
        """Lease round trips attempted (for ``/metrics`` and the benches)."""

    def attach(self, redis: RedisClient | None) -> None:
        """Lease from ``redis`` (``None``: no Redis, the host tier decides). Called in the
        event loop that will serve: it starts the task that drops stale leases."""
        self._redis = redis
        self._leases.clear()
        self._down_until = 0.0
        if redis is not None and self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def _sweep(self) -> None:
        """Every :data:`LEASE_SECONDS`, forget leases not refilled for as long (their tokens
        with them): the request path reads no clock, so staleness is checked here."""
        while True:
            await asyncio.sleep(LEASE_SECONDS)
            now = self._clock()
            for bucket, lease in list(self._leases.items()):
                if lease.refill is None and now >= lease.expires:
                    del self._leases[bucket]

    def spend_held(self, bucket: str, quota: Quota) -> bool:
        """Spend one of the tokens this instance holds for ``bucket``, if it holds one (the
        local path: no I/O, no coroutine, no clock read); a lease running low is refilled in
        the background. ``False``: the request must go through :meth:`admit`."""
        lease = self._leases.get(bucket)
        if (
            lease is None
            or lease.tokens <= 0
            or lease.rate != quota.rate_per_second
            or lease.burst != quota.burst  # the plan changed: held tokens are the old plan's
        ):
            return False
        lease.tokens -= 1
        if lease.tokens <= lease.low_water and lease.refill is None:
            self._prefetch(bucket, lease)
        return True

    def _prefetch(self, bucket: str, lease: _Lease) -> None:
        if self._clock() >= self._down_until:
            self._start_refill(bucket, lease)

    async def admit(self, bucket: str, quota: Quota, plan: str) -> float | None:
        """Spend one of ``bucket``'s (a tenant id's) cluster tokens, leasing more if none is
        held: ``None`` when the request may go on (a token spent, or Redis unavailable and
        the host tier's allowance standing), else the seconds until the cluster bucket has a
        token (the request is refused)."""
        if self.spend_held(bucket, quota):
            return None
        lease = self._leases.get(bucket)
        rate, burst = quota.rate_per_second, quota.burst
        if lease is None or lease.rate != rate or lease.burst != burst:
            # New, or the plan changed: what was held was leased under other values.
            lease = self._replace(bucket, rate, burst)
        lease.tokens = 0
        for _ in range(_ATTEMPTS):
            if self._redis is None or self._clock() < self._down_until:
                self._fall_back(bucket, lease, plan)
                return None
            if self._clock() < lease.retry_at:
                return lease.retry_at - self._clock()
            await asyncio.shield(self._start_refill(bucket, lease))
            if lease.tokens > 0 and self._leases.get(bucket) is lease:
                lease.tokens -= 1
                return None
        if self._clock() < self._down_until:
            self._fall_back(bucket, lease, plan)
            return None
        return max(lease.retry_at - self._clock(), 1 / rate)

    def _replace(self, bucket: str, rate: float, burst: int) -> _Lease:
        if len(self._leases) >= _MOST_LEASES:
            # More tenants busy within a second than that: forget the leases (their held
            # tokens are lost, which under-allows) rather than grow without bound.
            self._leases.clear()
        lease = self._leases[bucket] = _Lease(bucket, rate, burst)
        return lease

    def _fall_back(self, bucket: str, lease: _Lease, plan: str) -> None:
        """Count a decision left to the host tier; past the retry pause, ask Redis again in
        the background (a probe: the next requests share the budget again if it answers)."""
        self.fallback_decisions[plan] += 1
        if self._redis is not None and self._clock() >= self._down_until:
            self._start_refill(bucket, lease)

    def _start_refill(self, bucket: str, lease: _Lease) -> asyncio.Task[None]:
        if lease.refill is None:
            lease.refill = asyncio.get_running_loop().create_task(self._refill(bucket, lease))
        return lease.refill

    async def _refill(self, bucket: str, lease: _Lease) -> None:
        redis = self._redis
        try:
            if redis is None:
                return
            self.round_trips += 1
            try:
                async with asyncio.timeout(self._timeout):
                    grant = await take_tokens(
                        redis,
                        lease.bucket,
                        rate_per_second=lease.rate,
                        burst=lease.burst,
                        want=lease.size,
                    )
            except (ServiceUnavailableError, TimeoutError):
                if self._clock() >= self._down_until:
                    _logger.warning(
                        "Redis did not lease rate-limit tokens: the host tier decides alone "
                        "for %.0f s",
                        RETRY_SECONDS,
                    )
                self._down_until = self._clock() + RETRY_SECONDS
                return
            except Exception:
                _logger.exception("leasing rate-limit tokens failed; the host tier decides")
                self._down_until = self._clock() + RETRY_SECONDS
                return
            now = self._clock()
            self._down_until = 0.0
            if self._leases.get(bucket) is not lease:
                return  # replaced meanwhile (a plan change): these tokens were for the old plan
            if grant.tokens:
                if now >= lease.expires:
                    lease.tokens = 0
                lease.tokens += grant.tokens
                lease.expires = now + LEASE_SECONDS
                lease.retry_at = 0.0
            else:
                # Ask again once a whole batch has accrued, not at the first token: past its
                # budget a tenant would otherwise cost a round trip per token. The tokens wait
                # in the bucket meanwhile (it is not full), so at most a batch is held back.
                lease.retry_at = now + grant.retry_after + (lease.size - 1) / lease.rate
        finally:
            lease.refill = None

    async def close(self) -> None:
        """Wait for no refill (cancel those under way) and stop leasing."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        for lease in list(self._leases.values()):
            if lease.refill is not None:
                lease.refill.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await lease.refill
        self.attach(None)
