"""Opening and closing the service's PostgreSQL pool, and how a connection goes back to it.

:func:`open_database` is the only code that creates the pool. It connects lazily, so the
service starts while PostgreSQL is down and recovers by itself when it comes back. Acquiring
a connection and each statement are bounded by the settings' timeouts (an exceeded one is a
503, never a request that hangs).

asyncpg's default reset on release (`RESET ALL`, `CLOSE ALL`, `UNLISTEN *`, advisory unlocks)
costs a round trip on every release — a quarter of a tenant-scoped read. tenantgate keeps no
session state: every tenant setting is `SET LOCAL` and dies with its transaction, there are no
LISTENs or cursors, and the one session advisory lock (a provisioning lease) is released
explicitly before its connection goes back. So the only thing that can be left behind is an
open transaction, and that is checked locally, with no round trip when there is none.

**Through PgBouncer** (``TENANTGATE_DATABASE_PGBOUNCER``, transaction pooling): a server
session lasts one transaction, so the pool keeps no prepared statements
(``statement_cache_size=0``: asyncpg then sends each statement's Parse with its Bind, which
PgBouncer forwards to whichever server connection runs it), and the provisioning leases — a
session advisory lock held across several transactions — take their connections from a second,
lazily opened pool on ``TENANTGATE_DATABASE_DIRECT_URL``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final

import asyncpg

from tenantgate.db.database import Database

if TYPE_CHECKING:
    from tenantgate.settings import DatabaseSettings

__all__ = [
    "ASYNCPG_STATEMENT_CACHE_SIZE",
    "CONNECT_TIMEOUT_SECONDS",
    "open_database",
    "ping",
    "reset_on_release",
    "statement_cache_size",
]

CONNECT_TIMEOUT_SECONDS: Final = 2.0
"""How long opening one connection may take."""


async def reset_on_release(connection: asyncpg.Connection) -> None:
    if connection.is_in_transaction():
        await connection.execute("ROLLBACK")


@asynccontextmanager
async def open_database(settings: DatabaseSettings) -> AsyncIterator[Database]:
    """The service's :class:`Database` for ``settings``; its pools are closed on exit."""
    pool = await _create_pool(settings, settings.url, pooled_by_pgbouncer=settings.pgbouncer)
    lease_pool = None
    try:
        if settings.pgbouncer:
            lease_pool = await _create_pool(
                settings, settings.session_url, pooled_by_pgbouncer=False
            )
        yield Database(
            pool, acquire_timeout=settings.acquire_timeout_seconds, lease_pool=lease_pool
        )
    finally:
        if lease_pool is not None:
            await lease_pool.close()
        await pool.close()


ASYNCPG_STATEMENT_CACHE_SIZE: Final = 100
"""asyncpg's own default, for connections straight to PostgreSQL."""


def statement_cache_size(*, pooled_by_pgbouncer: bool) -> int:
    """asyncpg's ``statement_cache_size`` for a server reached directly or through PgBouncer
    in transaction mode, where no prepared statement outlives its transaction."""
    return 0 if pooled_by_pgbouncer else ASYNCPG_STATEMENT_CACHE_SIZE


async def _create_pool(
    settings: DatabaseSettings, url: str, *, pooled_by_pgbouncer: bool
) -> asyncpg.Pool[asyncpg.Record]:
    pool: asyncpg.Pool[asyncpg.Record] = await asyncpg.create_pool(
        url,
        min_size=0,
        init_size=0,
        max_size=settings.pool_max_size,
        timeout=CONNECT_TIMEOUT_SECONDS,
        command_timeout=settings.statement_timeout_seconds,
        reset=reset_on_release,
        statement_cache_size=statement_cache_size(pooled_by_pgbouncer=pooled_by_pgbouncer),
    )
    return pool


async def ping(database: Database) -> None:
    """One round trip to PostgreSQL (``SELECT 1``); raises when it does not answer."""
    await database.fetchval("SELECT 1")
