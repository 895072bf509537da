"""The clients of the backing services: created in one place, closed in one place.

:func:`open_resources` is the only code that creates the PostgreSQL pool, the Redis client
and the S3 client, and the only code that closes them; the plugin's lifespan enters it once
per application. None of them connects while being created, so the service starts while a
backing service is down and recovers by itself when it comes back (``/readyz`` tells which
one is missing meanwhile).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final

import anyio.to_thread
import asyncpg
import boto3
import botocore.config
import botocore.exceptions
import redis.asyncio
import redis.exceptions

from tenantgate.db.pool import reset_on_release

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from tenantgate.settings import Settings

__all__ = ["Resources", "open_resources"]

CONNECT_TIMEOUT_SECONDS: Final = 2.0
"""How long opening a connection to any backing service may take."""

S3_READ_TIMEOUT_SECONDS: Final = 10.0
"""How long one S3 response may take to start arriving."""


class Resources:
    """The service's clients, shared by every request of one application.

    A plain class rather than a dataclass: Litestar would otherwise try to validate it
    field by field each time it is injected.
    """

    __slots__ = ("db_pool", "redis", "s3")

    def __init__(
        self, *, db_pool: asyncpg.Pool[asyncpg.Record], redis: redis.asyncio.Redis, s3: S3Client
    ) -> None:
        self.db_pool: Final = db_pool
        """The PostgreSQL pool of the service's own login role; it connects on demand."""
        self.redis: Final = redis
        """The Redis client of the administrator connection; it connects on demand."""
        self.s3: Final = s3
        """The boto3 S3 client. boto3 blocks: call it through ``anyio.to_thread.run_sync``."""


@asynccontextmanager
async def open_resources(settings: Settings) -> AsyncIterator[Resources]:
    """Create the clients for ``settings``, yield them, and close them all on exit."""
    db_pool = await asyncpg.create_pool(
        settings.database.url,
        min_size=0,
        init_size=0,
        max_size=settings.database.pool_max_size,
        timeout=CONNECT_TIMEOUT_SECONDS,
        reset=reset_on_release,
    )
    try:
        redis_client = redis.asyncio.Redis.from_url(
            settings.redis.url,
            socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
            health_check_interval=30,
        )
        try:
            s3_client = await anyio.to_thread.run_sync(_create_s3_client, settings)
            try:
                yield Resources(db_pool=db_pool, redis=redis_client, s3=s3_client)
            finally:
                await anyio.to_thread.run_sync(s3_client.close)
        finally:
            await redis_client.aclose()
    finally:
        await db_pool.close()


def _create_s3_client(settings: Settings) -> S3Client:
    s3 = settings.s3
    config = botocore.config.Config(
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        read_timeout=S3_READ_TIMEOUT_SECONDS,
        retries={"mode": "standard", "max_attempts": 2},
        signature_version="s3v4",
        # Self-hosted gateways (SeaweedFS, MinIO) have no per-bucket DNS names.
        s3={"addressing_style": "path" if s3.endpoint_url else "auto"},
    )
    session = boto3.session.Session()
    return session.client(
        "s3",
        endpoint_url=s3.endpoint_url,
        aws_access_key_id=s3.access_key_id,
        aws_secret_access_key=s3.secret_access_key,
        region_name=s3.region,
        config=config,
    )
