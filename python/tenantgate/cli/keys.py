"""``tenantgate keys rotate-due``: the operator's automated rotation policy.

Rotates every active key that expires within ``--within-days`` days (``GET
/admin/v1/keys/due``): each gets a successor, and keeps working until the end of its grace
period (never longer than it already would). Prints one JSON line per rotation on stdout —
``{"tenant_id", "rotated_key_id", "new_key": NewKey}``, the new secret included: hand it to the
tenant, it is not shown again — and a summary on stderr. Run it from cron, say daily.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final, TextIO

import msgspec

from tenantgate.cache.announcements import Announcer
from tenantgate.cache.client import open_redis
from tenantgate.cli.arguments import at_least_one
from tenantgate.cli.exit_codes import ExitCode
from tenantgate.cli.reporting import run_with_settings
from tenantgate.db.pool import open_database
from tenantgate.errors import NotFoundError
from tenantgate.hsm import Hsm
from tenantgate.identity import IdentityCache
from tenantgate.keys import KeyHasher, Verifier
from tenantgate.tenancy.admin import AdminService
from tenantgate.tenancy.keyring import KeyIssuer
from tenantgate.tenancy.provisioning import Provisioner
from tenantgate.tenancy.schemas import RotateKey

if TYPE_CHECKING:
    from tenantgate.cli import Subcommands
    from tenantgate.settings import Settings

__all__ = ["register", "run_rotate_due"]

_PREFIX: Final = "tenantgate keys rotate-due"


def register(commands: Subcommands) -> None:
    parser = commands.add_parser("keys", help="API key maintenance")
    key_commands = parser.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    rotate_due = key_commands.add_parser(
        "rotate-due",
        help="rotate every active key that expires soon",
        description=(
            "Give every active key expiring within --within-days days a successor; the old key "
            "keeps working for --grace-seconds (never longer than it already would). New "
            "secrets are printed as JSON lines on stdout. Exit status: "
            f"{ExitCode.OK} when done, {ExitCode.FAILURE} when PostgreSQL failed, "
            f"{ExitCode.USAGE} for a settings error."
        ),
    )
    rotate_due.add_argument("--within-days", type=at_least_one, default=7)
    rotate_due.add_argument("--grace-seconds", type=int, default=86_400)
    rotate_due.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> ExitCode:
    return run_rotate_due(within_days=args.within_days, grace_seconds=args.grace_seconds)


def run_rotate_due(
    *,
    within_days: int = 7,
    grace_seconds: int = 86_400,
    environ: Mapping[str, str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> ExitCode:
    """``tenantgate keys rotate-due``; returns the exit status."""
    out = sys.stdout if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr
    rotated = run_with_settings(
        _PREFIX, environ, err, lambda settings: _rotate_due(settings, within_days, grace_seconds)
    )
    if isinstance(rotated, ExitCode):
        return rotated
    for line in rotated:
        print(json.dumps(line), file=out)
    print(f"{_PREFIX}: rotated {len(rotated)} keys", file=err)
    return ExitCode.OK


async def _rotate_due(
    settings: Settings, within_days: int, grace_seconds: int
) -> list[dict[str, object]]:
    # An HSM key's successor is an HSM key: its digest needs the HSM.
    hsm = Hsm(settings.hsm) if settings.hsm is not None else None
    try:
        return await _rotate_with(settings, hsm, within_days, grace_seconds)
    finally:
        if hsm is not None:
            hsm.close()


async def _rotate_with(
    settings: Settings, hsm: Hsm | None, within_days: int, grace_seconds: int
) -> list[dict[str, object]]:
    pepper = settings.security.key_pepper
    async with (
        open_database(settings.database) as database,
        open_redis(settings.redis) as redis,
    ):
        # This process serves nothing, so it has nothing to forget; but running instances may
        # trust a rotated key's record for a minute, so each rotation is announced to them.
        identity = IdentityCache(Verifier(pepper))
        announcer = Announcer(redis)
        identity.announce = announcer.announce
        admin = AdminService(
            database,
            KeyIssuer(KeyHasher(pepper), hsm=hsm),
            identity,
            Provisioner(database, []),
        )
        rotated: list[dict[str, object]] = []
        for key in await admin.keys_due(within_days):
            try:
                new_key = await admin.rotate_key(
                    key.tenant_id, key.id, RotateKey(grace_seconds=grace_seconds)
                )
            except NotFoundError:
                continue  # revoked or rotated meanwhile
            rotated.append(
                {
                    "tenant_id": str(key.tenant_id),
                    "rotated_key_id": str(key.id),
                    "new_key": msgspec.to_builtins(new_key),
                }
            )
        if not await announcer.flush():
            print(
                f"{_PREFIX}: Redis unavailable: {announcer.unsent} rotations not announced; "
                "running instances apply them within TENANTGATE_KEY_CACHE_TRUSTED_SECONDS",
                file=sys.stderr,
            )
        return rotated
