"""Plan quotas: one native `Quota` per plan, shared by the buckets of all its tenants.

A plan's `Quota` is updated in place, so a change applies to every bucket on its next
request, with no per-tenant bookkeeping. The one writer of a known plan's limits is
:meth:`Plans.reload`, which reads every plan from the source of truth (every second, and at
once after a change through this instance); reloads run one at a time, so a reload that
read older data never applies it after one that read newer data.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from tenantgate.identity.source import PlanRecord
from tenantgate.limits import Quota

__all__ = ["Plans"]


class Plans:
    """This instance's plan quotas, reloaded from the source of truth."""

    def __init__(self, load: Callable[[], Awaitable[Sequence[PlanRecord]]]) -> None:
        self._load = load
        self._quotas: dict[str, Quota] = {}
        self._lock = asyncio.Lock()

    def quota(self, plan: PlanRecord) -> Quota:
        """The plan's shared `Quota`. A plan not known here yet (created since the last
        reload) gets one with ``plan``'s limits; a known plan's limits are left to
        :meth:`reload`, so a key lookup that read them before a change cannot undo it."""
        quota = self._quotas.get(plan.name)
        if quota is None:
            quota = self._quotas[plan.name] = Quota(plan.rate_per_second, plan.burst)
        return quota

    async def reload(self) -> None:
        """Read every plan from the source of truth and apply its limits."""
        async with self._lock:
            for plan in await self._load():
                quota = self._quotas.get(plan.name)
                if quota is None:
                    self._quotas[plan.name] = Quota(plan.rate_per_second, plan.burst)
                elif (quota.rate_per_second, quota.burst) != (plan.rate_per_second, plan.burst):
                    quota.update(plan.rate_per_second, plan.burst)
