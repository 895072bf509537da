"""The clients of the backing services: opened together at start-up, closed together.

:func:`open_resources` enters each room's opener — :func:`tenantgate.db.open_database`,
:func:`tenantgate.cache.open_redis`, :func:`tenantgate.storage.open_s3` — and is entered once
per application by the plugin's lifespan. None of them connects while being created, so the
service starts while a backing service is down and recovers by itself when it comes back
(``/readyz`` tells which one is missing meanwhile). No driver is imported here: each room is
the only importer of its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Final

from tenantgate.cache import ItemCache, RedisUser, TenantRedis, open_redis
from tenantgate.db.pool import open_database
from tenantgate.storage import open_s3

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from tenantgate.cache import RedisClient
    from tenantgate.db.database import Database
    from tenantgate.settings import Settings

__all__ = ["Resources", "open_resources"]


class Resources:
    """The service's clients, shared by every request of one application.

    A plain class rather than a dataclass: Litestar would otherwise try to validate it
    field by field each time it is injected.
    """

    __slots__ = ("database", "item_cache", "redis", "s3", "tenant_redis")

    def __init__(
        self,
        *,
        database: Database,
        redis: RedisClient,
        tenant_redis: TenantRedis,
        s3: S3Client,
    ) -> None:
        self.database: Final = database
        """PostgreSQL as the service's own login role; it connects on demand."""
        self.redis: Final = redis
        """The Redis (or Redis Cluster) client of the service's management user (tenants' ACL
        users); it connects on demand."""
        self.tenant_redis: Final = tenant_redis
        """Runs commands as tenants' own Redis users, on the same bounded pool."""
        self.item_cache: Final = ItemCache(tenant_redis)
        """Items read through the tenants' caches (it keeps invalidations Redis missed)."""
        self.s3: Final = s3
        """The boto3 S3 client. boto3 blocks: call it through ``anyio.to_thread.run_sync``."""


@asynccontextmanager
async def open_resources(settings: Settings) -> AsyncIterator[Resources]:
    """Create the clients for ``settings``, yield them, and close them all on exit."""
    async with AsyncExitStack() as stack:
        database = await stack.enter_async_context(open_database(settings.database))
        redis = await stack.enter_async_context(open_redis(settings.redis))
        users = RedisUser(redis, settings.security.key_pepper)
        tenant_redis = TenantRedis(
            redis,
            pepper=settings.security.key_pepper,
            remake_user=lambda tenant: users.make(tenant.names),
        )
        stack.push_async_callback(tenant_redis.aclose)
        s3 = await stack.enter_async_context(open_s3(settings.s3))
        yield Resources(database=database, redis=redis, tenant_redis=tenant_redis, s3=s3)
