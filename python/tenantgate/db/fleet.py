"""Migrating the whole fleet: the shared tables, then every tenant schema.

:func:`migrate_everything` connects as the service's own role, migrates ``public`` and then
every tenant schema, ``concurrency`` at a time, each in a transaction of its own (see
:mod:`tenantgate.db.migrator`). A run that fails part-way, is interrupted or crashes leaves
every schema at one version or the next; running it again finishes the rest.
``tenantgate migrate`` and ``tenantgate dev`` call it.

A schema that fails is recorded in the report and the run goes on. What stops the run is
translated here, naming the server (password redacted) for the operator: PostgreSQL out of
reach (as :mod:`tenantgate.db.errors` decides) is
:class:`~tenantgate.errors.ServiceUnavailableError`; anything else it refuses outside the
tenant schemas (a login, the shared tables, listing the tenants) is
:class:`FleetMigrationError`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Final

import asyncpg

from tenantgate.db.errors import translate
from tenantgate.db.migrator import Migration, MigrationReport, migrate_public, migrate_tenants
from tenantgate.errors import ServiceUnavailableError, TenantgateError
from tenantgate.settings import redact_url

__all__ = ["DEFAULT_CONCURRENCY", "FleetMigrationError", "migrate_everything"]

DEFAULT_CONCURRENCY: Final = 8
"""Tenant schemas migrated at once (and connections opened) by default."""

CONNECT_TIMEOUT_SECONDS: Final = 10.0


class FleetMigrationError(TenantgateError):
    """PostgreSQL refused the run itself (a login, the shared tables, listing the tenants);
    the message says what, with the server's password redacted."""


async def migrate_everything(
    database_url: str,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    migrations: Sequence[Migration] | None = None,
    on_progress: Callable[[MigrationReport], None] | None = None,
) -> MigrationReport:
    """Migrate ``public``, then every tenant schema; returns what was done.

    ``migrations`` replaces the packaged tenant migrations (tests add a version);
    ``on_progress`` is called with the report after each schema.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, not {concurrency}")
    with _translated(database_url):
        connection = await asyncpg.connect(database_url, timeout=CONNECT_TIMEOUT_SECONDS)
        try:
            public_applied = await migrate_public(connection)
        finally:
            await connection.close()

        pool = await asyncpg.create_pool(
            database_url,
            min_size=0,
            max_size=concurrency,
            timeout=CONNECT_TIMEOUT_SECONDS,
        )
        finished = False
        try:
            report = await migrate_tenants(
                pool, concurrency=concurrency, migrations=migrations, on_progress=on_progress
            )
            finished = True
        finally:
            if finished:
                await pool.close()
            else:
                # Cancelled or crashed: connections may be mid-query; their transactions roll
                # back when the server sees them go, which is exactly what resuming needs.
                pool.terminate()
    report.public_applied = public_applied
    return report


@contextmanager
def _translated(database_url: str) -> Iterator[None]:
    where = f"PostgreSQL at {redact_url(database_url)}"
    try:
        yield
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
        if isinstance(translate(exc), ServiceUnavailableError):
            raise ServiceUnavailableError(where) from exc
        raise FleetMigrationError(f"{where}: {type(exc).__name__}: {exc}") from exc
