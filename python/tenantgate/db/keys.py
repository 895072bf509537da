"""SQL for `public.api_keys`. Only a keyed hash of a key is ever stored."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

import asyncpg

from tenantgate.db.types import Connection

__all__ = [
    "KEY_COLUMNS",
    "NewKeyRow",
    "due_keys",
    "insert_key",
    "list_keys",
    "revoke_key",
    "rotate_key",
]

# Every column a client may see; `key_hash` is deliberately absent.
KEY_COLUMNS = (
    "id, tenant_id, name, prefix, hash_scheme, status, created_at, expires_at, last_used_at, "
    "scopes, allowed_cidrs::text[] AS allowed_cidrs"
)


@dataclass(frozen=True, slots=True)
class NewKeyRow:
    id: UUID
    name: str | None
    digest: bytes
    hash_scheme: str
    prefix: str
    expires_at: datetime | None
    scopes: tuple[str, ...]
    allowed_cidrs: tuple[str, ...] = ()


async def insert_key(connection: Connection, tenant_id: UUID, key: NewKeyRow) -> asyncpg.Record:
    row: asyncpg.Record | None = await connection.fetchrow(
        f"""
        INSERT INTO api_keys (id, tenant_id, name, key_hash, hash_scheme, prefix, expires_at,
                              scopes, allowed_cidrs)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text[], $9::text[]::cidr[])
        RETURNING {KEY_COLUMNS}
        """,
        key.id,
        tenant_id,
        key.name,
        key.digest,
        key.hash_scheme,
        key.prefix,
        key.expires_at,
        list(key.scopes),
        list(key.allowed_cidrs),
    )
    assert row is not None
    return row


async def list_keys(connection: Connection, tenant_id: UUID) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await connection.fetch(
        f"SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1 ORDER BY created_at, id",
        tenant_id,
    )
    return rows


async def due_keys(connection: Connection, within: timedelta) -> list[asyncpg.Record]:
    """Active keys that expire within ``within`` (of active tenants), soonest first."""
    rows: list[asyncpg.Record] = await connection.fetch(
        f"""
        SELECT {KEY_COLUMNS} FROM api_keys
         WHERE status = 'active' AND replaced_by IS NULL
           AND expires_at IS NOT NULL AND expires_at > now()
           AND expires_at <= now() + $1::interval
           AND tenant_id IN (SELECT id FROM tenants WHERE status = 'active')
         ORDER BY expires_at, id
        """,
        within,
    )
    return rows


async def revoke_key(connection: Connection, tenant_id: UUID, key_id: UUID) -> bool:
    result: str = await connection.execute(
        "UPDATE api_keys SET status = 'revoked' WHERE tenant_id = $1 AND id = $2",
        tenant_id,
        key_id,
    )
    return result != "UPDATE 0"


async def rotate_key(
    connection: Connection,
    tenant_id: UUID,
    key_id: UUID,
    successor: NewKeyRow,
    grace_ends_at: datetime,
) -> asyncpg.Record | None:
    """Issue `successor` and let the old key live until `grace_ends_at` (never longer than
    it already would); None when the old key does not exist or is revoked. Runs inside the
    caller's transaction, so both changes commit together."""
    updated = await connection.fetchval(
        """
        UPDATE api_keys
           SET expires_at = LEAST(coalesce(expires_at, $3), $3)
         WHERE tenant_id = $1 AND id = $2 AND status = 'active'
        RETURNING id
        """,
        tenant_id,
        key_id,
        grace_ends_at,
    )
    if updated is None:
        return None
    row = await insert_key(connection, tenant_id, successor)
    await connection.execute(
        "UPDATE api_keys SET replaced_by = $2 WHERE id = $1", key_id, row["id"]
    )
    return row
