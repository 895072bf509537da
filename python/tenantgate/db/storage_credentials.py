"""SQL for `public.storage_credentials`: each tenant's S3 access key, its secret sealed.

The sealing itself is :mod:`tenantgate.storage.sealing`'s; this module only stores bytes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tenantgate.db.errors import translating

if TYPE_CHECKING:
    from uuid import UUID

    from tenantgate.db.database import Database
    from tenantgate.db.types import Connection

__all__ = ["find", "forget", "store"]


async def store(
    connection: Connection, tenant_id: UUID, access_key_id: str, sealed_secret: bytes
) -> None:
    """Record (or replace) the tenant's access key."""
    with translating():
        await connection.execute(
            """
            INSERT INTO storage_credentials (tenant_id, access_key_id, sealed_secret)
            VALUES ($1, $2, $3)
            ON CONFLICT (tenant_id) DO UPDATE
                SET access_key_id = excluded.access_key_id,
                    sealed_secret = excluded.sealed_secret,
                    created_at = clock_timestamp()
            """,
            tenant_id,
            access_key_id,
            sealed_secret,
        )


async def forget(connection: Connection, tenant_id: UUID) -> None:
    """Remove the tenant's access key record (a no-op when there is none)."""
    with translating():
        await connection.execute("DELETE FROM storage_credentials WHERE tenant_id = $1", tenant_id)


async def find(database: Database, tenant_id: UUID) -> tuple[str, bytes] | None:
    """The tenant's access key id and sealed secret, or ``None``."""
    row = await database.fetchrow(
        "SELECT access_key_id, sealed_secret FROM storage_credentials WHERE tenant_id = $1",
        tenant_id,
    )
    if row is None:
        return None
    return str(row["access_key_id"]), bytes(row["sealed_secret"])
