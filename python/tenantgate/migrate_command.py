"""``tenantgate migrate``: bring the shared tables and every tenant schema up to date.

:func:`migrate_everything` connects as the service's own role, migrates ``public`` and then
every tenant schema, ``concurrency`` at a time, each in a transaction of its own (see
:mod:`tenantgate.db.migrator`). A run that fails part-way, is interrupted or crashes leaves
every schema at one version or the next; running it again finishes the rest. ``tenantgate
dev`` calls it before serving.

:func:`run_migrate` is the command-line glue: settings from the environment, a progress bar
when stderr is a terminal, a one-line summary, and the exit status (0 when every schema is
up to date, 1 when one failed or PostgreSQL could not be reached, 2 for a settings error).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Final, TextIO

import asyncpg

from tenantgate.db.migrator import Migration, MigrationReport, migrate_public, migrate_tenants
from tenantgate.errors import SettingsError
from tenantgate.settings import Settings, redact_url

if TYPE_CHECKING:
    from rich.progress import Progress

__all__ = ["DEFAULT_CONCURRENCY", "migrate_everything", "run_migrate"]

DEFAULT_CONCURRENCY: Final = 8
"""Tenant schemas migrated at once (and connections opened) by default."""

CONNECT_TIMEOUT_SECONDS: Final = 10.0

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130

_PREFIX: Final = "tenantgate migrate"


async def migrate_everything(
    database_url: str,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: bool = False,
    migrations: Sequence[Migration] | None = None,
    on_progress: Callable[[MigrationReport], None] | None = None,
) -> MigrationReport:
    """Migrate ``public``, then every tenant schema; returns what was done.

    ``migrations`` replaces the packaged tenant migrations (tests add a version);
    ``progress`` draws a progress bar on stderr; ``on_progress`` is called with the report
    after each schema. Connection errors (``OSError``, asyncpg's) propagate.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, not {concurrency}")
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
        with _progress_bar(enabled=progress) as show:

            def report_progress(report: MigrationReport) -> None:
                show(report)
                if on_progress is not None:
                    on_progress(report)

            report = await migrate_tenants(
                pool,
                concurrency=concurrency,
                migrations=migrations,
                on_progress=report_progress,
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


def run_migrate(
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    environ: Mapping[str, str] | None = None,
    stderr: TextIO | None = None,
    migrations: Sequence[Migration] | None = None,
) -> int:
    """``tenantgate migrate``; returns the exit status."""
    err = sys.stderr if stderr is None else stderr
    try:
        settings = Settings.from_env(os.environ if environ is None else environ)
    except SettingsError as exc:
        print(f"{_PREFIX}: {exc}", file=err)
        return EXIT_USAGE
    database_url = settings.database.url
    try:
        report = asyncio.run(
            migrate_everything(
                database_url,
                concurrency=concurrency,
                progress=_is_terminal(err),
                migrations=migrations,
            )
        )
    except KeyboardInterrupt:
        print(f"{_PREFIX}: interrupted; run it again to finish", file=err)
        return EXIT_INTERRUPTED
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        print(
            f"{_PREFIX}: PostgreSQL at {redact_url(database_url)} failed: "
            f"{type(exc).__name__}: {exc}",
            file=err,
        )
        return EXIT_FAILURE
    if report.public_applied:
        versions = ", ".join(str(version) for version in report.public_applied)
        print(f"{_PREFIX}: shared tables: applied version(s) {versions}", file=err)
    print(f"{_PREFIX}: {report.summary()}", file=err)
    for tenant_id, error in sorted(report.failed.items(), key=lambda failure: str(failure[0])):
        print(f"{_PREFIX}: tenant {tenant_id} failed: {error}", file=err)
    return EXIT_FAILURE if report.failed else EXIT_OK


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


@contextmanager
def _progress_bar(*, enabled: bool) -> Iterator[Callable[[MigrationReport], None]]:
    """Yield a function that shows a report's progress: on a rich bar, or nowhere."""
    if not enabled:
        yield lambda report: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.progress import Progress as RichProgress

    bar: Progress = RichProgress(
        TextColumn("tenant schemas"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]} failed"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )
    task = bar.add_task("migrate", total=None, failed=0)

    def show(report: MigrationReport) -> None:
        bar.update(task, total=report.total, completed=report.done, failed=len(report.failed))

    with bar:
        yield show
