"""Where a tenant's cache lives in Redis: the two placements, and the step that allocates one.

- ``namespace``: the tenant's keys are ``t:{<id>}:*`` in database 0, next to every other
  tenant's. Works on Redis Cluster (the hash tag keeps a tenant on one slot) and scales to any
  number of tenants.
- ``database``: the tenant also gets its own logical database ``n`` (``SELECT n``), allocated at
  provisioning, stored on the tenant (``tenants.redis_database``) and never given to another
  tenant while it exists. Bounded by the server's ``databases`` setting and impossible on
  Cluster, which has only database 0. Redis ACLs ignore database numbers, so the database alone
  is no wall: the tenant's ACL user is, in both placements.

``TENANTGATE_REDIS_ISOLATION`` picks one for every new tenant, or ``auto``: ``database`` for
enterprise tenants, ``namespace`` for the others. A tenant keeps the placement it was made
with.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Literal

from tenantgate.cache.connections import DatabaseRefusedError, round_trip, source_of
from tenantgate.cache.errors import translating
from tenantgate.db.tenants import allocate_redis_database
from tenantgate.errors import ConflictError

if TYPE_CHECKING:
    from tenantgate.cache.connections import RedisClient
    from tenantgate.settings import RedisIsolation
    from tenantgate.tenancy.provisioning import TenantUnderway

__all__ = ["Placement", "RedisDatabase", "RedisDatabasesUsedUpError", "placement_for"]

Placement = Literal["namespace", "database"]


def placement_for(isolation: RedisIsolation, tier: str) -> Placement:
    """The placement of a new tenant of ``tier`` under ``TENANTGATE_REDIS_ISOLATION``."""
    if isolation == "auto":
        return "database" if tier == "enterprise" else "namespace"
    return isolation


class RedisDatabasesUsedUpError(ConflictError):
    """Every logical database of the Redis server is held by a tenant (409)."""

    def __init__(self) -> None:
        super().__init__(
            "Redis has no free logical database for this tenant: every one of the server's "
            "`databases` is held by a tenant; raise `databases` in the Redis configuration or "
            "set TENANTGATE_REDIS_ISOLATION=namespace"
        )


class RedisDatabase:
    """Allocates the tenant's own Redis database when its placement is ``database``.

    ``undo`` does nothing: the number is the tenant row's, and goes with it (the keys in it are
    removed by :class:`~tenantgate.cache.provisioning.RedisUser`'s undo, which runs first).
    """

    name: Final = "redis database"

    def __init__(self, redis: RedisClient, isolation: RedisIsolation) -> None:
        self._redis = redis
        self._isolation = isolation

    async def apply(self, tenant: TenantUnderway) -> None:
        if placement_for(self._isolation, tenant.tier) != "database":
            return
        number = await allocate_redis_database(tenant.connection, tenant.id, self._exists)
        if number is None:
            raise RedisDatabasesUsedUpError

    async def undo(self, tenant: TenantUnderway) -> None:
        return None

    async def _exists(self, number: int) -> bool:
        """Whether the server has database ``number`` (``SELECT`` it, and back)."""
        with translating():
            try:
                await round_trip(source_of(self._redis), b"", [("PING",)], database=number)
            except DatabaseRefusedError:
                return False
        return True
