"""The service's Redis client: created and closed here only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final

import redis.asyncio

from tenantgate.cache.errors import translating

if TYPE_CHECKING:
    from tenantgate.settings import RedisSettings

__all__ = ["CONNECT_TIMEOUT_SECONDS", "open_redis", "ping"]

CONNECT_TIMEOUT_SECONDS: Final = 2.0
"""How long opening a connection to Redis may take."""


@asynccontextmanager
async def open_redis(settings: RedisSettings) -> AsyncIterator[redis.asyncio.Redis]:
    """A client for ``settings`` (it connects on first use); closed on exit."""
    client = redis.asyncio.Redis.from_url(
        settings.url,
        socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        health_check_interval=30,
    )
    try:
        yield client
    finally:
        await client.aclose()


async def ping(client: redis.asyncio.Redis) -> None:
    """One ``PING``; raises ServiceUnavailableError when Redis does not answer."""
    with translating():
        await client.ping()
