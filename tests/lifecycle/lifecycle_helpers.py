"""What the provisioning and migration tests share: what PostgreSQL holds of tenants, and
tenants made and removed many at a time through the provisioner."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import asyncpg

from tenantgate.db import Database
from tenantgate.db.migrator import Migration
from tenantgate.db.provisioning import postgres_steps
from tenantgate.db.tenants import NewTenant
from tenantgate.naming import TenantNames
from tenantgate.tenancy.provisioning import Provisioner

if TYPE_CHECKING:
    from tenantgate.tenancy.keyring import KeyIssuer


def new_tenant(name: str = "acme") -> NewTenant:
    return NewTenant(name=name, plan="free", tier="standard", custom_domain=None)


def provisioner(pool: asyncpg.Pool, migrations: Sequence[Migration] | None = None) -> Provisioner:
    """The PostgreSQL provisioning steps over `pool`, as the service runs them."""
    return Provisioner(Database(pool), postgres_steps(migrations))


async def traces(connection: asyncpg.Connection, tenant_id: uuid.UUID) -> dict[str, Any]:
    """What PostgreSQL holds of a tenant: its row, role, schema and keys."""
    names = TenantNames.of(tenant_id)
    return {
        "row": await connection.fetchval("SELECT count(*) FROM tenants WHERE id = $1", tenant_id),
        "role": await connection.fetchval(
            "SELECT count(*) FROM pg_roles WHERE rolname = $1", names.role
        ),
        "schema": await connection.fetchval(
            "SELECT count(*) FROM pg_namespace WHERE nspname = $1", names.schema
        ),
        "keys": await connection.fetchval(
            "SELECT count(*) FROM api_keys WHERE tenant_id = $1", tenant_id
        ),
    }


NOTHING = {"row": 0, "role": 0, "schema": 0, "keys": 0}


NOTHING = {"row": 0, "role": 0, "schema": 0, "keys": 0}


async def schema_versions(admin_url: str) -> dict[str, int]:
    """Every tenant schema's migration version, read as the superuser."""
    connection = await asyncpg.connect(admin_url)
    try:
        schemas = [
            row["nspname"]
            for row in await connection.fetch(
                r"SELECT nspname FROM pg_namespace WHERE nspname LIKE 't\_%' ORDER BY 1"
            )
        ]
        versions: dict[str, int] = {}
        for start in range(0, len(schemas), 200):
            union = " UNION ALL ".join(
                f"SELECT '{schema}' AS s, max(version) AS v FROM \"{schema}\".schema_migrations"
                for schema in schemas[start : start + 200]
            )
            versions.update({row["s"]: row["v"] for row in await connection.fetch(union)})
        return versions
    finally:
        await connection.close()


async def schema_shapes(admin_url: str) -> dict[str, str]:
    """Every tenant schema's tables, columns and indexes, as one comparable string each."""
    connection = await asyncpg.connect(admin_url)
    try:
        rows = await connection.fetch(
            r"""
            SELECT n.nspname AS schema,
                   string_agg(
                       c.relname || ':' || c.relkind::text || coalesce('(' || (
                           SELECT string_agg(
                                      a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                                      || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END,
                                      ', ' ORDER BY a.attnum)
                             FROM pg_attribute a
                            WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                       ) || ')', ''),
                       '; ' ORDER BY c.relname) AS shape
              FROM pg_namespace n JOIN pg_class c ON c.relnamespace = n.oid
             WHERE n.nspname LIKE 't\_%'
             GROUP BY n.nspname
            """
        )
        return {row["schema"]: row["shape"] for row in rows}
    finally:
        await connection.close()


async def wait_for_other_backends(admin_url: str, database: str) -> None:
    """Until the server has noticed every connection of an aborted run is gone (and so has
    rolled back its transactions)."""
    connection = await asyncpg.connect(admin_url)
    try:
        for _ in range(200):
            others = await connection.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = $1 AND pid <> pg_backend_pid()",
                database,
            )
            if others == 0:
                return
            await asyncio.sleep(0.05)
        raise AssertionError("connections of the interrupted run did not go away")
    finally:
        await connection.close()


async def create_many(
    pool: asyncpg.Pool, issuer: KeyIssuer, count: int, concurrency: int
) -> list[uuid.UUID]:
    gate = asyncio.Semaphore(concurrency)
    making = provisioner(pool)

    async def one(number: int) -> uuid.UUID:
        async with gate:
            row = await making.create(
                new_tenant(f"tenant {number}"), issuer.issue(name="default", expires_at=None).row
            )
            tenant_id: uuid.UUID = row["id"]
            return tenant_id

    return list(await asyncio.gather(*(one(number) for number in range(count))))


async def delete_many(
    pool: asyncpg.Pool, tenant_ids: Sequence[uuid.UUID], concurrency: int
) -> None:
    gate = asyncio.Semaphore(concurrency)
    removing = provisioner(pool)

    async def one(tenant_id: uuid.UUID) -> None:
        async with gate:
            assert await removing.delete(tenant_id)

    await asyncio.gather(*(one(tenant_id) for tenant_id in tenant_ids))


__all__ = [
    "NOTHING",
    "create_many",
    "delete_many",
    "new_tenant",
    "provisioner",
    "schema_shapes",
    "schema_versions",
    "traces",
    "wait_for_other_backends",
]
