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
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final

import asyncpg

from tenantgate.db.database import Database

if TYPE_CHECKING:
    from tenantgate.settings import DatabaseSettings

__all__ = ["CONNECT_TIMEOUT_SECONDS", "open_database", "ping", "reset_on_release"]

CONNECT_TIMEOUT_SECONDS: Final = 2.0
"""How long opening one connection may take."""


async def reset_on_release(connection: asyncpg.Connection) -> None:
    if connection.is_in_transaction():
        await connection.execute("ROLLBACK")


@asynccontextmanager
async def open_database(settings: DatabaseSettings) -> AsyncIterator[Database]:
    """The service's :class:`Database` for ``settings``; its pool is closed on exit."""
    pool = await asyncpg.create_pool(
        settings.url,
        min_size=0,
        init_size=0,
        max_size=settings.pool_max_size,
        timeout=CONNECT_TIMEOUT_SECONDS,
        command_timeout=settings.statement_timeout_seconds,
        reset=reset_on_release,
    )
    try:
        yield Database(pool, acquire_timeout=settings.acquire_timeout_seconds)
    finally:
        await pool.close()


async def ping(database: Database) -> None:
    """One round trip to PostgreSQL (``SELECT 1``); raises when it does not answer."""
    await database.fetchval("SELECT 1")
