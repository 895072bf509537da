"""The service's Redis connections: one bounded pool, created and closed here only.

The pool authenticates as the service's management user (``TENANTGATE_REDIS_URL``). The
management client (:func:`open_redis`'s ``Redis``) uses it to make and delete tenants' ACL users;
:class:`~tenantgate.cache.tenant_redis.TenantRedis` borrows the same connections to run tenants'
commands as the tenants' own users. Every wait is bounded by ``TENANTGATE_REDIS_TIMEOUT``:
for a free connection (``BlockingConnectionPool.timeout``), for connecting, for an answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from tenantgate.cache.connections import RedisClient
from tenantgate.cache.errors import translating

if TYPE_CHECKING:
    from tenantgate.settings import RedisSettings

__all__ = ["open_redis", "ping"]


@asynccontextmanager
async def open_redis(settings: RedisSettings) -> AsyncIterator[RedisClient]:
    """A client for ``settings`` on a bounded pool (it connects on first use); closed on exit.

    On a Redis Cluster (``TENANTGATE_REDIS_CLUSTER``) it is a ``RedisCluster``, with a bounded
    pool per node; it reads the cluster's topology on first use (``CLUSTER SLOTS``, and
    ``COMMAND`` for routing: the service user needs both there).

    redis-py retries a management command once, at once, on a fresh connection (a pooled one
    may have died while idle), never with a backoff that would hold a request beyond the
    timeout; tenants' commands are not retried by redis-py at all (they bypass it).
    """
    timeout = settings.timeout_seconds
    if settings.cluster:
        cluster = redis.asyncio.RedisCluster.from_url(
            settings.url,
            max_connections=settings.pool_max_size,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            health_check_interval=30,
            retry=Retry(NoBackoff(), 1),
        )
        try:
            yield cluster
        finally:
            await cluster.aclose()
        return
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        settings.url,
        max_connections=settings.pool_max_size,
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=30,
        # A pooled connection Redis closed while it idled (a restart) is reconnected once at
        # once. The connection's own retry is what counts: redis-py gives pooled connections
        # none, whatever the client is given. A slow Redis is not asked twice.
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
    )
    client = redis.asyncio.Redis(connection_pool=pool)
    try:
        yield client
    finally:
        await client.aclose()
        await pool.aclose()


async def ping(client: RedisClient) -> None:
    """One ``PING``; raises ServiceUnavailableError when Redis does not answer."""
    with translating():
        await client.ping()
