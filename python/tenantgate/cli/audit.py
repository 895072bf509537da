"""``tenantgate audit verify`` and ``tenantgate audit seal``.

``verify`` recomputes every audit chain, then checks the log against the sealed digests in the
locked audit bucket, and names the first bad record: it prints one JSON line on stdout
(``{"ok", "checked", "first_bad", "problem", "seals_checked"}``, as ``POST
/admin/v1/audit/verify`` answers) and exits non-zero when something does not hold.
``seal`` seals every chain's head now (as ``POST /admin/v1/audit/seal``) and prints the seal.
With an HSM configured (``TENANTGATE_PKCS11_*``), ``seal`` signs the digest with the token's
seal key and ``verify`` checks every digest's signature, as the service does.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping
from contextlib import AsyncExitStack, contextmanager
from typing import TYPE_CHECKING, Final, TextIO

from tenantgate.audit import VerifyReport, verify
from tenantgate.audit.seal import AuditSealer, Sealed, describe
from tenantgate.audit.seal_signer import HsmSealSigner
from tenantgate.cli.exit_codes import ExitCode
from tenantgate.cli.reporting import run_with_settings
from tenantgate.db.pool import open_database
from tenantgate.storage import open_storage

if TYPE_CHECKING:
    import argparse

    from tenantgate.cli import Subcommands
    from tenantgate.settings import Settings

__all__ = ["register", "run_seal", "run_verify"]

_VERIFY: Final = "tenantgate audit verify"
_SEAL: Final = "tenantgate audit seal"


def register(commands: Subcommands) -> None:
    parser = commands.add_parser("audit", help="the tamper-evident audit log")
    audit_commands = parser.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")
    verify_parser = audit_commands.add_parser(
        "verify",
        help="recompute every audit chain, check it against the seals, name the first bad record",
        description=(
            "Recompute the hash chain of every tenant and of the operator, check the log "
            "against the digests sealed in the locked audit bucket, and print the result as "
            f"one JSON line. Exit status: {ExitCode.OK} when everything holds, "
            f"{ExitCode.FAILURE} when something does not or PostgreSQL or S3 could not be "
            f"reached, {ExitCode.USAGE} for a settings error."
        ),
    )
    verify_parser.add_argument(
        "--chains-only",
        action="store_true",
        help="recompute the chains only, without reading the seals from S3",
    )
    verify_parser.set_defaults(run=_verify_command)
    seal_parser = audit_commands.add_parser(
        "seal",
        help="seal every chain's head into the locked audit bucket now",
        description=(
            "Write a digest of every chain's head, linked to the previous one, into the audit "
            "bucket under S3 Object Lock (compliance mode), and print it as one JSON line. "
            f"Exit status: {ExitCode.OK} when sealed, {ExitCode.FAILURE} when another "
            "instance is sealing or a backing service could not be reached."
        ),
    )
    seal_parser.set_defaults(run=lambda args: run_seal())


def _verify_command(args: argparse.Namespace) -> ExitCode:
    return run_verify(seals=not args.chains_only)


def run_verify(
    *,
    seals: bool = True,
    environ: Mapping[str, str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> ExitCode:
    """``tenantgate audit verify``; returns the exit status."""
    out = sys.stdout if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr
    report = run_with_settings(
        _VERIFY, environ, err, lambda settings: _verify(settings, seals=seals)
    )
    if isinstance(report, ExitCode):
        return report
    first_bad = str(report.first_bad) if report.first_bad is not None else None
    line = {"ok": report.ok, "checked": report.checked, "first_bad": first_bad}
    print(
        json.dumps({**line, "problem": report.problem, "seals_checked": report.seals_checked}),
        file=out,
    )
    if not report.ok:
        print(f"{_VERIFY}: record {first_bad}: {report.problem}", file=err)
    return ExitCode.OK if report.ok else ExitCode.FAILURE


def run_seal(
    *,
    environ: Mapping[str, str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> ExitCode:
    """``tenantgate audit seal``; returns the exit status."""
    out = sys.stdout if stdout is None else stdout
    err = sys.stderr if stderr is None else stderr
    sealed = run_with_settings(_SEAL, environ, err, _seal)
    if isinstance(sealed, ExitCode):
        return sealed
    print(json.dumps(describe(sealed)), file=out)
    return ExitCode.OK


async def _verify(settings: Settings, *, seals: bool) -> VerifyReport:
    async with AsyncExitStack() as stack:
        database = await stack.enter_async_context(open_database(settings.database))
        sealer = None
        if seals:
            storage = await stack.enter_async_context(open_storage(settings, database))
            signer = stack.enter_context(_seal_signer(settings))
            sealer = AuditSealer(database, storage, settings.audit, signer=signer)
        return await verify(database, sealer)
    raise AssertionError("unreachable")  # pragma: no cover — mypy cannot see the stack return


async def _seal(settings: Settings) -> Sealed:
    async with (
        open_database(settings.database) as database,
        open_storage(settings, database) as storage,
    ):
        with _seal_signer(settings) as signer:
            return await AuditSealer(database, storage, settings.audit, signer=signer).seal_now()


@contextmanager
def _seal_signer(settings: Settings) -> Iterator[HsmSealSigner | None]:
    """The HSM's seal signer when an HSM is configured (closed afterwards), else None."""
    if settings.hsm is None:
        yield None
        return
    signer = HsmSealSigner(settings.hsm)
    try:
        yield signer
    finally:
        signer.close()
