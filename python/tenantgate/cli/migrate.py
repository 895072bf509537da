"""``tenantgate migrate``: bring the shared tables and every tenant schema up to date.

The command-line glue around :func:`tenantgate.db.fleet.migrate_everything`: settings from
the environment, a progress bar when stderr is a terminal, plain progress lines otherwise (a
log or a CI job: about a hundred per run, each flushed, so a watcher sees them as they come),
a one-line summary, and the exit status. ``--tenant-migrations DIR`` takes the tenant
migrations from a folder (the complete set: ours copied, plus a plugin user's own tables).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Final, TextIO

from tenantgate.cli.arguments import at_least_one
from tenantgate.cli.exit_codes import ExitCode
from tenantgate.cli.reporting import failure_line, load_settings
from tenantgate.db.fleet import DEFAULT_CONCURRENCY, migrate_everything
from tenantgate.db.migrator import load_migrations_from
from tenantgate.errors import TenantgateError

if TYPE_CHECKING:
    from tenantgate.cli import Subcommands
    from tenantgate.db.migrator import Migration, MigrationReport

__all__ = ["register", "run_migrate"]

_PREFIX: Final = "tenantgate migrate"
_PLAIN_LINES: Final = 100
"""Progress lines a run prints at most on a non-terminal (plus the first and the summary)."""


def register(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "migrate",
        help="bring the shared tables and every tenant schema up to the latest migration",
        description=(
            "Migrate the shared tables, then every tenant schema, each in a transaction of its "
            "own: an interrupted or failed run is finished by running it again. Exit status: "
            f"{ExitCode.OK} when every schema is up to date, {ExitCode.FAILURE} when one failed "
            f"or PostgreSQL could not be reached, {ExitCode.USAGE} for a settings error, "
            f"{ExitCode.INTERRUPTED} when interrupted."
        ),
    )
    parser.add_argument(
        "--concurrency",
        type=at_least_one,
        default=DEFAULT_CONCURRENCY,
        help=f"tenant schemas migrated at once (default {DEFAULT_CONCURRENCY})",
    )
    parser.add_argument(
        "--tenant-migrations",
        metavar="DIR",
        type=Path,
        default=None,
        help=(
            "take the tenant migrations from DIR (NNNN_name.sql, versions 1, 2, 3, ...: the "
            "complete set, the packaged ones included) instead of the packaged ones"
        ),
    )
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> ExitCode:
    migrations = None
    if args.tenant_migrations is not None:
        try:
            migrations = load_migrations_from(args.tenant_migrations)
        except (ValueError, OSError) as exc:
            print(f"{_PREFIX}: --tenant-migrations: {exc}", file=sys.stderr)
            return ExitCode.USAGE
    return run_migrate(concurrency=args.concurrency, migrations=migrations)


def run_migrate(
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    environ: Mapping[str, str] | None = None,
    stderr: TextIO | None = None,
    migrations: Sequence[Migration] | None = None,
) -> ExitCode:
    """``tenantgate migrate``; returns the exit status."""
    err = sys.stderr if stderr is None else stderr
    settings = load_settings(_PREFIX, environ, err)
    if settings is None:
        return ExitCode.USAGE
    try:
        with _progress(err) as show:
            report = asyncio.run(
                migrate_everything(
                    # Behind PgBouncer, migrations bypass it: their pool keeps prepared
                    # statements, which transaction pooling would hand to other sessions.
                    settings.database.session_url,
                    concurrency=concurrency,
                    migrations=migrations,
                    on_progress=show,
                )
            )
    except KeyboardInterrupt:
        print(f"{_PREFIX}: interrupted; run it again to finish", file=err)
        return ExitCode.INTERRUPTED
    except TenantgateError as exc:  # PostgreSQL unreachable, or it refused the run
        print(failure_line(_PREFIX, exc), file=err)
        return ExitCode.FAILURE
    if report.public_applied:
        versions = ", ".join(str(version) for version in report.public_applied)
        print(f"{_PREFIX}: shared tables: applied version(s) {versions}", file=err)
    print(f"{_PREFIX}: {report.summary()}", file=err)
    for tenant_id, error in sorted(report.failed.items(), key=lambda failure: str(failure[0])):
        print(f"{_PREFIX}: tenant {tenant_id} failed: {error}", file=err)
    return ExitCode.FAILURE if report.failed else ExitCode.OK


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


@contextmanager
def _progress(stream: TextIO) -> Iterator[Callable[[MigrationReport], None]]:
    """Yield a function that shows a report's progress: a bar on a terminal, lines otherwise."""
    if _is_terminal(stream):
        with _progress_bar(stream) as show:
            yield show
    else:
        yield _progress_lines(stream)


def _progress_lines(stream: TextIO) -> Callable[[MigrationReport], None]:
    """A line when the run starts and then every 1% of the schemas (at most ~100 lines)."""
    shown = -1

    def show(report: MigrationReport) -> None:
        nonlocal shown
        step = max(1, report.total // _PLAIN_LINES)
        if shown >= 0 and report.done < report.total and report.done - shown < step:
            return
        if report.done == shown:
            return
        shown = report.done
        print(
            f"{_PREFIX}: {report.done}/{report.total} tenant schemas "
            f"(migrated {report.migrated}, up to date {report.up_to_date}, "
            f"failed {len(report.failed)})",
            file=stream,
            flush=True,
        )

    return show


@contextmanager
def _progress_bar(stream: TextIO) -> Iterator[Callable[[MigrationReport], None]]:
    """Yield a function that shows a report's progress on a rich bar."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(
        TextColumn("tenant schemas"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]} failed"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(file=stream),
    )
    task = bar.add_task("migrate", total=None, failed=0)

    def show(report: MigrationReport) -> None:
        bar.update(task, total=report.total, completed=report.done, failed=len(report.failed))

    with bar:
        yield show
