"""Tenant-scoped transactions: the only way request code reaches a tenant's rows.

A transaction opens with `BEGIN; SET LOCAL ROLE <tenant role>; SET LOCAL search_path TO
<tenant schema>` sent as one simple query (one round trip instead of three). `SET LOCAL` ends
with the transaction, so a pooled connection never carries a tenant into the next request;
the role makes another tenant's schema unreadable even to a schema-qualified query.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from tenantgate.db.translate import translate_driver_errors

if TYPE_CHECKING:
    import asyncpg

    from tenantgate.db.types import Connection
    from tenantgate.naming import TenantNames

__all__ = ["tenant_transaction"]


@asynccontextmanager
async def tenant_transaction(pool: asyncpg.Pool, names: TenantNames) -> AsyncIterator[Connection]:
    """Yield a connection inside a transaction that acts as the tenant; commit on success."""
    with translate_driver_errors():
        async with pool.acquire() as connection:
            await connection.execute("BEGIN; " + names.scope_sql)
            try:
                yield connection
            except BaseException:
                if not connection.is_closed():
                    await connection.execute("ROLLBACK")
                raise
            await connection.execute("COMMIT")
