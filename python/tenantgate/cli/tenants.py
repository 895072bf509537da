"""``tenantgate tenants repair``: finish what a crash left part-way.

A process killed while it provisioned or deleted a tenant leaves that tenant ``provisioning``
or ``deleting``, with some of its layers made. ``repair`` removes each such tenant from every
layer (see :mod:`tenantgate.tenancy.provisioning`), skipping those a live process is still
working on. The service also does this at start-up; the command is for operators who want it
now. Prints one line per tenant removed and a summary on stderr.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final, TextIO

from tenantgate.cache import open_redis
from tenantgate.cli.exit_codes import ExitCode
from tenantgate.cli.reporting import run_with_settings
from tenantgate.db.pool import open_database
from tenantgate.settings import Settings
from tenantgate.storage import open_storage
from tenantgate.tenancy.provisioning import Provisioner, RepairReport
from tenantgate.tenancy.steps import service_steps

if TYPE_CHECKING:
    from tenantgate.cli import Subcommands

__all__ = ["register", "run_repair"]

_PREFIX: Final = "tenantgate tenants repair"


def register(commands: Subcommands) -> None:
    parser = commands.add_parser("tenants", help="tenant maintenance")
    tenant_commands = parser.add_subparsers(
        dest="tenants_command", required=True, metavar="COMMAND"
    )
    repair = tenant_commands.add_parser(
        "repair",
        help="remove tenants a crashed process left half-provisioned or half-deleted",
        description=(
            "Remove every tenant a crashed process left provisioning or deleting, from every "
            "layer; tenants a live process is still working on are left alone. Exit status: "
            f"{ExitCode.OK} when done, {ExitCode.FAILURE} when a backing service failed, "
            f"{ExitCode.USAGE} for a settings error."
        ),
    )
    repair.set_defaults(run=lambda args: run_repair())


def run_repair(
    *, environ: Mapping[str, str] | None = None, stderr: TextIO | None = None
) -> ExitCode:
    """``tenantgate tenants repair``; returns the exit status."""
    err = sys.stderr if stderr is None else stderr
    report = run_with_settings(_PREFIX, environ, err, _repair)
    if isinstance(report, ExitCode):
        return report
    for tenant_id in report.removed:
        print(f"{_PREFIX}: removed tenant {tenant_id}", file=err)
    for tenant_id in report.busy:
        print(f"{_PREFIX}: tenant {tenant_id} is being worked on; left alone", file=err)
    print(
        f"{_PREFIX}: removed {len(report.removed)}, left {len(report.busy)} in progress",
        file=err,
    )
    return ExitCode.OK


async def _repair(settings: Settings) -> RepairReport:
    async with (
        open_database(settings.database) as database,
        open_redis(settings.redis) as redis,
        open_storage(settings, database) as storage,
    ):
        return await Provisioner(database, service_steps(redis, settings, storage)).repair()
