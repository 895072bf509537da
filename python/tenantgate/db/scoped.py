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

import asyncpg

from tenantgate.db.translate import translate_driver_errors
from tenantgate.errors import TenantGoneError

if TYPE_CHECKING:
    from tenantgate.db.types import Connection
    from tenantgate.naming import TenantNames

__all__ = ["tenant_transaction"]


@asynccontextmanager
async def tenant_transaction(pool: asyncpg.Pool, names: TenantNames) -> AsyncIterator[Connection]:
    """Yield a connection inside a transaction that acts as the tenant; commit on success."""
    # Errors of the caller's own queries pass through untouched: they are thrown into this
    # generator by Litestar's dependency clean-up, which treats a different exception coming
    # back out as a clean-up failure. The caller translates them where it runs its queries.
    with translate_driver_errors():
        connection = await pool.acquire()
    try:
        try:
            # Inside the try: when the scope statements fail (the tenant's role is gone,
            # say), BEGIN has already opened the transaction and it must be rolled back.
            with translate_driver_errors():
                try:
                    await connection.execute("BEGIN; " + names.scope_sql)
                except asyncpg.InvalidParameterValueError as exc:
                    # `SET LOCAL ROLE` of a role that no longer exists: the tenant was deleted.
                    raise TenantGoneError(str(names.tenant_id)) from exc
            yield connection
        except BaseException:
            if not connection.is_closed() and connection.is_in_transaction():
                try:
                    await connection.execute("ROLLBACK")
                except Exception:
                    # A connection in an unknown state never goes back to the pool, and
                    # the error that got us here is the one the caller should see.
                    connection.terminate()
            raise
        with translate_driver_errors():
            await connection.execute("COMMIT")
    finally:
        await pool.release(connection)
