"""``tenantgate migrate``: bring the shared tables and every tenant schema up to date.

The command-line glue around :func:`tenantgate.db.fleet.migrate_everything`: settings from
the environment, a progress bar when stderr is a terminal (plain lines otherwise), a one-line
summary, and the exit status.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Final, TextIO

from tenantgate.cli.arguments import at_least_one
from tenantgate.cli.exit_codes import ExitCode
from tenantgate.cli.reporting import failure_line, load_settings
from tenantgate.db.fleet import DEFAULT_CONCURRENCY, migrate_everything
from tenantgate.errors import TenantgateError

if TYPE_CHECKING:
    from tenantgate.cli import Subcommands
    from tenantgate.db.migrator import Migration, MigrationReport

__all__ = ["register", "run_migrate"]

_PREFIX: Final = "tenantgate migrate"


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
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> ExitCode:
    return run_migrate(concurrency=args.concurrency)


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
        with _progress_bar(enabled=_is_terminal(err)) as show:
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
def _progress_bar(*, enabled: bool) -> Iterator[Callable[[MigrationReport], None] | None]:
    """Yield a function that shows a report's progress on a rich bar, or ``None``."""
    if not enabled:
        yield None
        return
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
        console=Console(stderr=True),
    )
    task = bar.add_task("migrate", total=None, failed=0)

    def show(report: MigrationReport) -> None:
        bar.update(task, total=report.total, completed=report.done, failed=len(report.failed))

    with bar:
        yield show
