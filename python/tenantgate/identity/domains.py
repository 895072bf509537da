"""Custom-domain bindings: which host names accept only their tenant's keys.

The bindings live in the native verifier (its one-call check compares the request's `Host`
with them). Their one writer is :meth:`Domains.reload`, which reads every binding from the
source of truth and applies the difference: every second, and at once after a change made
through this instance. Reloads run one at a time, each reading and applying under one lock,
so a reload that read the bindings before a change can never apply them after the reload
that read the change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from uuid import UUID

from tenantgate.keys import Verifier

__all__ = ["Domains"]


class Domains:
    """The custom-domain bindings of ``verifier``, reloaded from the source of truth."""

    def __init__(
        self, verifier: Verifier, load: Callable[[], Awaitable[Mapping[str, UUID]]]
    ) -> None:
        self._verifier = verifier
        self._load = load
        self._applied: dict[str, UUID] = {}
        """What the verifier holds (it cannot list its bindings): written by `reload` only."""
        self._lock = asyncio.Lock()

    @property
    def any_bound(self) -> bool:
        """Whether any custom domain is bound (then a request must name its host)."""
        return bool(self._applied)

    def tenant_of(self, domain: str) -> UUID | None:
        """The tenant ``domain`` is bound to here, if any."""
        return self._applied.get(domain)

    async def reload(self) -> None:
        """Read every binding from the source of truth and make the verifier hold exactly
        those."""
        async with self._lock:
            wanted = await self._load()
            for domain in self._applied.keys() - wanted.keys():
                self._verifier.unbind_domain(domain)
                del self._applied[domain]
            for domain, tenant_id in wanted.items():
                if self._applied.get(domain) != tenant_id:
                    self._verifier.bind_domain(domain, str(tenant_id))
                    self._applied[domain] = tenant_id
