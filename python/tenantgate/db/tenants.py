"""SQL for `public.tenants`: registration, lifecycle status, reads and changes.

A tenant is registered `provisioning`, becomes `active` when every provisioning step is done,
may be `suspended` and back, and is `deleting` while its steps are undone. Operators' changes
(`change`) apply to `active` and `suspended` tenants only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal
from uuid import UUID

from tenantgate.db.errors import translating

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    import asyncpg

    from tenantgate.db.database import Database
    from tenantgate.db.types import Connection
    from tenantgate.naming import TenantNames

__all__ = [
    "TENANT_COLUMNS",
    "LifecycleStatus",
    "NewTenant",
    "allocate_redis_database",
    "change",
    "find",
    "page",
    "redis_database",
    "register",
    "remove",
    "set_status",
    "unfinished",
]

TENANT_COLUMNS: Final = "id, name, plan, tier, status, custom_domain, created_at"
"""Every column a client may see."""

LifecycleStatus = Literal["provisioning", "active", "suspended", "deleting"]


@dataclass(frozen=True, slots=True)
class NewTenant:
    name: str
    plan: str
    tier: str
    custom_domain: str | None


async def register(
    connection: Connection, tenant_id: UUID, names: TenantNames, tenant: NewTenant
) -> asyncpg.Record:
    """Insert the tenant as `provisioning`: a taken custom domain is a ConflictError, an
    unknown plan an InvalidInputError (by constraint, in `db.errors`)."""
    with translating():
        row: asyncpg.Record | None = await connection.fetchrow(
            f"""
            INSERT INTO tenants (id, name, plan, tier, custom_domain, schema_name, role_name,
                                 status)
            VALUES ($1, $2, $3, $4, $5, $6, $7, 'provisioning')
            RETURNING {TENANT_COLUMNS}
            """,
            tenant_id,
            tenant.name,
            tenant.plan,
            tenant.tier,
            tenant.custom_domain,
            names.schema,
            names.role,
        )
    assert row is not None
    return row


async def set_status(
    connection: Connection,
    tenant_id: UUID,
    status: LifecycleStatus,
    *,
    only_from: tuple[LifecycleStatus, ...],
) -> asyncpg.Record | None:
    """Move the tenant to `status` if it is in one of `only_from`; its row, else None."""
    with translating():
        row: asyncpg.Record | None = await connection.fetchrow(
            f"""
            UPDATE tenants SET status = $2, status_changed_at = clock_timestamp()
             WHERE id = $1 AND status = ANY($3::text[])
            RETURNING {TENANT_COLUMNS}
            """,
            tenant_id,
            status,
            list(only_from),
        )
    return row


async def remove(connection: Connection, tenant_id: UUID) -> None:
    """Delete the tenant's row (its keys go with it: ON DELETE CASCADE)."""
    with translating():
        await connection.execute("DELETE FROM tenants WHERE id = $1", tenant_id)


async def find(database: Database, tenant_id: UUID) -> asyncpg.Record | None:
    return await database.fetchrow(f"SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1", tenant_id)


async def page(database: Database, keyset_sql: str, parameters: tuple[Any, ...]) -> list[Any]:
    """A page of tenants, oldest first, by the keyset pagination tail `keyset_sql`."""
    return await database.fetch(f"SELECT {TENANT_COLUMNS} FROM tenants {keyset_sql}", *parameters)


_CHANGEABLE: Final = frozenset({"name", "plan", "status", "custom_domain"})


async def change(
    database: Database, tenant_id: UUID, changes: dict[str, Any]
) -> asyncpg.Record | None:
    """Apply an operator's `changes` (column → value) to an active or suspended tenant; its
    row, or None when there is no such tenant (or it is being provisioned or deleted)."""
    unknown = changes.keys() - _CHANGEABLE
    if unknown:
        raise ValueError(f"not changeable: {sorted(unknown)}")
    assignments = ", ".join(f"{column} = ${n}" for n, column in enumerate(changes, start=2))
    if "status" in changes:
        assignments += ", status_changed_at = clock_timestamp()"
    return await database.fetchrow(
        f"""
        UPDATE tenants SET {assignments}
         WHERE id = $1 AND status IN ('active', 'suspended')
        RETURNING {TENANT_COLUMNS}
        """,
        tenant_id,
        *changes.values(),
    )


async def unfinished(database: Database) -> list[tuple[UUID, LifecycleStatus]]:
    """Tenants a provisioning or deletion left part-way (or still works on), oldest first."""
    rows = await database.fetch(
        "SELECT id, status FROM tenants WHERE status IN ('provisioning', 'deleting')"
        " ORDER BY status_changed_at"
    )
    return [(row["id"], row["status"]) for row in rows]


async def redis_database(connection: Connection, tenant_id: UUID) -> int | None:
    """The tenant's own Redis database (the ``database`` placement), or None."""
    with translating():
        number: int | None = await connection.fetchval(
            "SELECT redis_database FROM tenants WHERE id = $1", tenant_id
        )
    return number


async def allocate_redis_database(
    connection: Connection, tenant_id: UUID, exists: Callable[[int], Awaitable[bool]]
) -> int | None:
    """Give the tenant the lowest Redis database number no other tenant holds (database 0 is
    the service's and the ``namespace`` placement's), keep the one it already has, or None
    when ``exists`` says Redis has no database of the next free number.

    Allocations are serialized by a transaction-scoped advisory lock, so two tenants made at
    once never get the same number; the unique index is the backstop. ``exists`` (a Redis
    round trip) runs under the lock, before the number is written.
    """
    with translating():
        async with connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", _REDIS_DATABASE_LOCK)
            held: int | None = await connection.fetchval(
                "SELECT redis_database FROM tenants WHERE id = $1", tenant_id
            )
            if held is not None:
                return held
            free: int = await connection.fetchval(_LOWEST_FREE_REDIS_DATABASE)
            if not await exists(free):
                return None
            await connection.execute(
                "UPDATE tenants SET redis_database = $2 WHERE id = $1", tenant_id, free
            )
    return free


_REDIS_DATABASE_LOCK: Final = 0x7467_7264_6200_0001
"""The advisory lock that serializes Redis database allocation ("tgrdb" and a version)."""

_LOWEST_FREE_REDIS_DATABASE: Final = """
SELECT COALESCE(min(n), 1) FROM (
    SELECT 1 AS n WHERE NOT EXISTS (SELECT 1 FROM tenants WHERE redis_database = 1)
    UNION ALL
    SELECT redis_database + 1 FROM tenants t
     WHERE redis_database IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM tenants u WHERE u.redis_database = t.redis_database + 1)
) AS gaps
"""
