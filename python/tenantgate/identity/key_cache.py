"""The key cache: the native `Verifier` and what happens on a miss.

The verifier holds one record per key digest for a short time (its ``ttl_seconds``, the bound
on how late a change made through another instance is seen). On a miss, :meth:`KeyCache.resolve`
looks the digest up with the lookup function it was given and caches the answer — the key's
record, or a refusal — so the middleware's second native call decides. Concurrent misses for
one digest share one lookup.

A record's payload is a :class:`KeyEntry`: the caller's identity together with what the
middleware needs to render the rate-limit headers, all computed once per lookup, none of it
per request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from uuid import UUID

from tenantgate.identity.context import TenantIdentity
from tenantgate.identity.plans import Plans
from tenantgate.identity.source import KeyRecord, PlanRecord
from tenantgate.keys import Miss, Verifier
from tenantgate.limits import Quota
from tenantgate.naming import TenantNames

__all__ = ["KeyCache", "KeyEntry", "KeyLookup"]

KeyLookup = Callable[[bytes], Awaitable[KeyRecord | None]]
"""Find the key stored under a digest (:meth:`IdentitySource.find_key
<tenantgate.identity.source.IdentitySource.find_key>`)."""


class KeyEntry:
    """The verifier's payload for one key: who is calling, and its plan's quota."""

    __slots__ = ("identity", "policy_name", "quota")

    def __init__(self, identity: TenantIdentity, quota: Quota) -> None:
        self.identity = identity
        self.quota = quota
        """The plan's shared quota (the limiter charges the tenant's bucket against it)."""
        self.policy_name = identity.plan.encode()
        """The plan's name as the rate-limit headers quote it."""


class KeyCache:
    """The native key table, filled on demand from ``lookup``."""

    def __init__(self, verifier: Verifier, plans: Plans, lookup: KeyLookup) -> None:
        self.verifier = verifier
        """The native table and one-call check; the middleware calls it directly."""
        self._plans = plans
        self._lookup = lookup
        self._pending: dict[bytes, asyncio.Future[None]] = {}

    def forget_key(self, key_id: UUID) -> None:
        """Drop the key's record: its next request looks it up again."""
        self.verifier.invalidate_key(str(key_id))

    def forget_tenant(self, tenant_id: UUID) -> None:
        """Drop the records of all the tenant's keys."""
        self.verifier.invalidate_tenant(str(tenant_id))

    async def resolve(self, miss: Miss) -> None:
        """Look the missed digest up and cache the answer; one lookup per digest at a time."""
        pending = self._pending.get(miss.digest)
        if pending is not None:
            await asyncio.shield(pending)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending[miss.digest] = future
        try:
            self._cache(miss.digest, await self._lookup(miss.digest))
            future.set_result(None)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here, so an unawaited failure is not logged twice
            raise
        finally:
            del self._pending[miss.digest]

    def _cache(self, digest: bytes, record: KeyRecord | None) -> None:
        if record is None:
            self.verifier.insert_refusal(digest)
            return
        identity = TenantIdentity(
            tenant_id=record.tenant_id,
            key_id=record.key_id,
            name=record.tenant_name,
            plan=record.plan,
            tier=record.tier,
            names=TenantNames.of(record.tenant_id),
            redis_database=record.redis_database,
        )
        quota = self._plans.quota(PlanRecord(record.plan, record.rate_per_second, record.burst))
        tenant_id = str(record.tenant_id)
        self.verifier.insert(
            digest,
            tenant_id=tenant_id,
            key_id=str(record.key_id),
            expires_at=record.expires_at.timestamp() if record.expires_at is not None else None,
            usable=record.usable,
            payload=KeyEntry(identity, quota),
            quota=quota,
            bucket=tenant_id,
        )
