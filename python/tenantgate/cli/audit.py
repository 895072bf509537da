"""``tenantgate audit verify``: recompute every audit chain and name the first bad record.

Prints one JSON line on stdout (``{"ok", "checked", "first_bad", "problem"}``, as
``POST /admin/v1/audit/verify`` answers) and exits non-zero when a chain does not hold.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final, TextIO

from tenantgate.audit import VerifyReport, verify
from tenantgate.cli.exit_codes import ExitCode
from tenantgate.cli.reporting import failure_line, load_settings
from tenantgate.db.pool import open_database
from tenantgate.errors import TenantgateError

if TYPE_CHECKING:
    from tenantgate.cli import Subcommands
    from tenantgate.settings import Settings

__all__ = ["register", "run_verify"]

_PREFIX: Final = "tenantgate audit verify"


def register(commands: Subcommands) -> None:
    parser = commands.add_parser("audit", help="the tamper-evident audit log")
    audit_commands = parser.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")
    verify_parser = audit_commands.add_parser(
        "verify",
        help="recompute every audit chain and name the first record that does not hold",
        description=(
            "Recompute the hash chain of every tenant and of the operator, and print the result "
            f"as one JSON line. Exit status: {ExitCode.OK} when every chain holds, "
            f"{ExitCode.FAILURE} when one does not or PostgreSQL could not be reached, "
            f"{ExitCode.USAGE} for a settings error."
        ),
    )
    verify_parser.set_defaults(run=lambda args: run_verify())


def run_verify(
    *,
    environ: Mapping[str, str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> ExitCode:
    """``tenantgate audit verify``; returns the exit status."""
    out = sys.stdout if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr
    settings = load_settings(_PREFIX, environ, err)
    if settings is None:
        return ExitCode.USAGE
    try:
        report = asyncio.run(_verify(settings))
    except TenantgateError as exc:
        print(failure_line(_PREFIX, exc), file=err)
        return ExitCode.FAILURE
    first_bad = str(report.first_bad) if report.first_bad is not None else None
    line = {"ok": report.ok, "checked": report.checked, "first_bad": first_bad}
    print(json.dumps({**line, "problem": report.problem}), file=out)
    if not report.ok:
        print(f"{_PREFIX}: record {first_bad}: {report.problem}", file=err)
    return ExitCode.OK if report.ok else ExitCode.FAILURE


async def _verify(settings: Settings) -> VerifyReport:
    async with open_database(settings.database) as database:
        return await verify(database)
