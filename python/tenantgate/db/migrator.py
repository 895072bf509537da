"""Versioned SQL migrations for the shared tables and for every tenant schema.

Files are `NNNN_name.sql` under `migrations/public` and `migrations/tenant`, applied in order.
The shared tables record their version in `public.tenantgate_migrations`; each tenant schema
records its own in its `schema_migrations` table, so a tenant's version lives beside its data.

Each schema is migrated in one transaction, as that tenant's role: at rest every schema is at
one version or the next, never half-way, and a crashed run is resumed by running it again.
Concurrent runners are safe: the shared table is guarded by an advisory lock and a tenant's
`schema_migrations` table by an exclusive lock taken before its version is read.

Why not Alembic or yoyo: they are built around one schema and a synchronous driver; the job
here — the same few SQL files over many schemas, concurrently, on asyncpg — is a short loop.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from uuid import UUID

from tenantgate.naming import TenantNames

if TYPE_CHECKING:
    import asyncpg

    from tenantgate.db.types import Connection

__all__ = [
    "Migration",
    "MigrationReport",
    "load_migrations",
    "load_migrations_from",
    "migrate_public",
    "migrate_tenant_schema",
    "migrate_tenants",
]

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Any constant key works; this one spells "tenantgt" in ASCII.
_PUBLIC_MIGRATION_LOCK = 0x74656E616E746774

_TENANT_TRACKING_SQL = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT clock_timestamp()
)"""

_PUBLIC_TRACKING_SQL = """
CREATE TABLE IF NOT EXISTS public.tenantgate_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT clock_timestamp()
)"""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


@dataclass(slots=True)
class MigrationReport:
    """What a run over the tenant schemas did."""

    total: int = 0
    """Tenant schemas to visit (a tenant deleted during the run is taken off again)."""
    migrated: int = 0
    """Schemas that were behind and are now up to date."""
    up_to_date: int = 0
    """Schemas that were up to date already."""
    failed: dict[UUID, str] = field(default_factory=dict)
    """Tenant id → the error that left its schema at its previous version."""
    public_applied: list[int] = field(default_factory=list)
    """Versions of the shared tables' migrations applied by this run (filled by callers that
    migrate `public` too)."""

    @property
    def done(self) -> int:
        """Schemas finished so far, successfully or not."""
        return self.migrated + self.up_to_date + len(self.failed)

    def summary(self) -> str:
        return (
            f"migrated {self.migrated}, up to date {self.up_to_date}, "
            f"failed {len(self.failed)} of {self.total} tenant schemas"
        )


def load_migrations(kind: Literal["public", "tenant"]) -> tuple[Migration, ...]:
    """Read the packaged migrations of one kind, checking their versions are 1, 2, 3, ..."""
    folder = resources.files("tenantgate.db.migrations").joinpath(kind)
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda migration: migration.version)
    _check_versions(kind, found)
    return tuple(found)


def load_migrations_from(folder: Path) -> tuple[Migration, ...]:
    """Read a folder of tenant migrations (``NNNN_name.sql``, versions 1, 2, 3, ...): the
    complete set, the packaged ones included, e.g. ours copied plus a plugin user's own.
    Raises ``ValueError`` for a missing folder, no migration in it, or a gap in the versions."""
    if not folder.is_dir():
        raise ValueError(f"not a folder: {folder}")
    found = [
        Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if (match := _FILE_NAME.match(entry.name))
    ]
    if not found:
        raise ValueError(f"no NNNN_name.sql migration in {folder}")
    found.sort(key=lambda migration: migration.version)
    try:
        _check_versions("tenant", found)
    except RuntimeError as exc:
        raise ValueError(f"{folder}: {exc}") from None
    return tuple(found)


def _check_versions(kind: str, migrations: Sequence[Migration]) -> None:
    for expected, migration in enumerate(migrations, start=1):
        if migration.version != expected:
            raise RuntimeError(
                f"{kind} migrations: expected version {expected}, found {migration.version} "
                f"({migration.name})"
            )


async def _tenant_is_gone(pool: asyncpg.Pool, tenant_id: UUID) -> bool:
    try:
        found = await pool.fetchval("SELECT true FROM tenants WHERE id = $1", tenant_id)
    except Exception:
        return False
    return found is None


async def migrate_public(connection: Connection) -> list[int]:
    """Bring the shared tables up to date; returns the versions applied now."""
    migrations = load_migrations("public")
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1)", _PUBLIC_MIGRATION_LOCK)
        await connection.execute(_PUBLIC_TRACKING_SQL)
        current = await connection.fetchval(
            "SELECT coalesce(max(version), 0) FROM public.tenantgate_migrations"
        )
        applied = []
        for migration in (m for m in migrations if m.version > current):
            await connection.execute(migration.sql)
            await connection.execute(
                "INSERT INTO public.tenantgate_migrations (version, name) VALUES ($1, $2)",
                migration.version,
                migration.name,
            )
            applied.append(migration.version)
    return applied


async def migrate_tenant_schema(
    connection: Connection,
    names: TenantNames,
    migrations: Sequence[Migration],
) -> int:
    """Apply the pending migrations to one tenant schema, inside the caller's transaction.

    The caller has put the transaction into the tenant's role and schema (see
    `tenantgate.db.Database.transaction`); returns how many migrations were applied.
    """
    await connection.execute(_TENANT_TRACKING_SQL)
    await connection.execute("LOCK TABLE schema_migrations IN EXCLUSIVE MODE")
    current = await connection.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations")
    pending = [migration for migration in migrations if migration.version > current]
    for migration in pending:
        await connection.execute(migration.sql)
        await connection.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            migration.version,
            migration.name,
        )
    return len(pending)


async def migrate_tenants(
    pool: asyncpg.Pool,
    *,
    concurrency: int = 8,
    on_progress: Callable[[MigrationReport], None] | None = None,
    migrations: Sequence[Migration] | None = None,
) -> MigrationReport:
    """Bring every tenant schema up to date, `concurrency` schemas at a time.

    `migrations` defaults to the packaged tenant migrations. Each schema migrates in a
    transaction of its own: a schema that fails is reported and left at its previous version
    while the others go on, and a run that is cancelled or crashes leaves every schema at one
    version or the next, so running again finishes the rest.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, not {concurrency}")
    migrations = load_migrations("tenant") if migrations is None else tuple(migrations)
    _check_versions("tenant", migrations)
    tenant_ids: list[UUID] = [
        row["id"]
        for row in await pool.fetch(
            # Tenants being provisioned get the latest version from their provisioning step;
            # those being deleted need none.
            "SELECT id FROM tenants WHERE status IN ('active', 'suspended') ORDER BY created_at, id"
        )
    ]
    report = MigrationReport(total=len(tenant_ids))
    if on_progress is not None:
        on_progress(report)  # the total, before the first schema is done
    gate = asyncio.Semaphore(concurrency)

    async def migrate_one(tenant_id: UUID) -> None:
        names = TenantNames.of(tenant_id)
        async with gate:
            try:
                async with pool.acquire() as connection, connection.transaction():
                    await connection.execute(names.scope_sql)
                    applied = await migrate_tenant_schema(connection, names, migrations)
            except Exception as exc:
                if await _tenant_is_gone(pool, tenant_id):
                    report.total -= 1  # deleted while we ran: nothing left to migrate
                else:
                    report.failed[tenant_id] = f"{type(exc).__name__}: {exc}"
            else:
                if applied:
                    report.migrated += 1
                else:
                    report.up_to_date += 1
        if on_progress is not None:
            on_progress(report)

    await asyncio.gather(*(migrate_one(tenant_id) for tenant_id in tenant_ids))
    return report
