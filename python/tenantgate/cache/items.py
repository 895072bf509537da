"""Items read through the tenant's cache, with no stale read once an update is acknowledged.

A cached item is ``t:{<tenant>}:i:<item id>`` holding the item's JSON after a *version*: a
random token kept in ``t:{<tenant>}:i:<item id>:v``. A copy is served only while it carries the
current version, and every write replaces the version (after its transaction committed, before
it answers), so:

- a reader that missed, read PostgreSQL, and stores its copy *after* a concurrent update
  committed stores it under the version it saw before, which that update has replaced: the
  late, stale copy is never served (the classic read-through race, without locks or scripts);
- the reader takes its version in the same round trip as its lookup (``SET … NX`` creates one
  when there is none), so a version is always read *before* PostgreSQL is.

Redis down or slow: lookups and copies are skipped (PostgreSQL answers), and an invalidation
that cannot be sent is kept in this process and sent before this process uses the cache again.
Redis is expected to run without persistence for the cache (the embedded one does): a Redis
that restarts with its data but missed invalidations sent meanwhile by *another* process could
serve that process's stale copies until they expire (:data:`ITEM_TTL_SECONDS`).
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import TYPE_CHECKING, Final

from tenantgate.errors import ServiceUnavailableError

if TYPE_CHECKING:
    from uuid import UUID

    from tenantgate.cache.connections import Command
    from tenantgate.cache.tenant_redis import RedisTenant, TenantRedis

__all__ = ["ITEM_TTL_SECONDS", "VERSION_TTL_SECONDS", "ItemCache"]

_logger = logging.getLogger("tenantgate.cache")

ITEM_TTL_SECONDS: Final = 300
"""How long a cached item lives (a bound on memory, and on the one staleness described in the
module docstring)."""

VERSION_TTL_SECONDS: Final = 24 * 3600
"""How long an item's version lives after it was made; when it expires, a new one is made
and every copy under the old one is merely a miss."""

_TOKEN_BYTES: Final = 16


class ItemCache:
    """Look up, store and invalidate cached items; one per process (it holds the unsent
    invalidations)."""

    __slots__ = ("_redis", "_unsent")

    def __init__(self, redis: TenantRedis) -> None:
        self._redis = redis
        self._unsent: dict[UUID, tuple[RedisTenant, set[UUID]]] = {}

    async def lookup(self, tenant: RedisTenant, item_id: UUID) -> tuple[bytes | None, bytes | None]:
        """The cached item's JSON (or None), and the version to store a fresh copy under (None
        when the cache cannot be used now)."""
        if self._unsent and not await self._send_unsent():
            return None, None
        names = tenant.names
        version_key = names.item_version_key(item_id)
        commands: list[Command] = [
            ("GET", names.item_key(item_id)),
            ("SET", version_key, os.urandom(_TOKEN_BYTES), "NX", "EX", VERSION_TTL_SECONDS),
            ("GET", version_key),
        ]
        try:
            entry, _, version = await self._redis.run(tenant, commands)
        except ServiceUnavailableError:
            return None, None
        if not isinstance(version, bytes) or len(version) != _TOKEN_BYTES:
            return None, None
        if isinstance(entry, bytes) and entry[:_TOKEN_BYTES] == version:
            return entry[_TOKEN_BYTES:], version
        return None, version

    async def store(self, tenant: RedisTenant, item_id: UUID, version: bytes, item: bytes) -> None:
        """Keep ``item`` (its JSON, read after ``version`` was) for the next lookups."""
        key = tenant.names.item_key(item_id)
        with contextlib.suppress(ServiceUnavailableError):  # a miss next time
            await self._redis.run(tenant, [("SET", key, version + item, "EX", ITEM_TTL_SECONDS)])

    async def invalidate(self, tenant: RedisTenant, item_id: UUID) -> None:
        """Make every cached copy of the item stale; call it after the write committed."""
        try:
            await self._send(tenant, [item_id])
        except ServiceUnavailableError:
            _, unsent = self._unsent.setdefault(tenant.names.tenant_id, (tenant, set()))
            unsent.add(item_id)
            _logger.warning(
                "Redis unavailable: invalidation of item %s kept until it is back", item_id
            )

    async def _send_unsent(self) -> bool:
        """Send the invalidations Redis missed; whether none is left."""
        for tenant_id, (tenant, item_ids) in list(self._unsent.items()):
            sending = list(item_ids)
            try:
                await self._send(tenant, sending)
            except ServiceUnavailableError:
                return False
            item_ids.difference_update(sending)  # others may have been added meanwhile
            if not item_ids:
                self._unsent.pop(tenant_id, None)
        return True

    async def _send(self, tenant: RedisTenant, item_ids: list[UUID]) -> None:
        replies = await self._redis.run(tenant, _invalidations(tenant, item_ids))
        if any(isinstance(reply, Exception) for reply in replies):
            raise ServiceUnavailableError("redis")


def _invalidations(tenant: RedisTenant, item_ids: list[UUID]) -> list[Command]:
    names = tenant.names
    commands: list[Command] = []
    for item_id in item_ids:
        commands.append(
            (
                "SET",
                names.item_version_key(item_id),
                os.urandom(_TOKEN_BYTES),
                "EX",
                VERSION_TTL_SECONDS,
            )
        )
        commands.append(("UNLINK", names.item_key(item_id)))
    return commands
