"""The ``tenantgate`` command: ``serve``, ``dev``, ``migrate`` and ``audit verify``.

Exit status: 0 on success (and after a requested stop), 1 when something failed, 2 for a
usage or configuration error (a missing or malformed ``TENANTGATE_*`` variable).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from tenantgate import __version__
from tenantgate.errors import SettingsError
from tenantgate.settings import Settings

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

APP_FACTORY = "tenantgate.app:create_app_from_env"
"""The import path granian loads the application from, in each worker process."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tenantgate`` command line with ``argv`` (default: ``sys.argv[1:]``)."""
    args = _parser().parse_args(argv)
    command: str = args.command
    if command == "serve":
        return serve(host=args.host, port=args.port, workers=args.workers)
    if command == "dev":
        from tenantgate.devserver import run_dev  # the embedded stack is an optional extra

        return run_dev(host=args.host, port=args.port, data_dir=args.data_dir, demo=args.demo)
    if command == "migrate":
        from tenantgate.migrate_command import run_migrate

        return run_migrate(concurrency=args.concurrency)
    return _not_implemented("tenantgate audit verify")


def serve(*, host: str, port: int, workers: int) -> int:
    """Serve the application with granian, configured by the ``TENANTGATE_*`` variables."""
    try:
        # Checked here, once, so a bad setting is one clear line instead of a traceback
        # from every worker process.
        Settings.from_env()
    except SettingsError as exc:
        print(f"tenantgate: {exc}", file=sys.stderr)
        return EXIT_USAGE

    from granian import Granian
    from granian.constants import Interfaces

    server = Granian(
        APP_FACTORY,
        factory=True,
        interface=Interfaces.ASGI,
        address=host,
        port=port,
        workers=workers,
    )
    server.serve()
    return EXIT_OK


def _not_implemented(command: str) -> int:
    print(f"{command}: not implemented yet", file=sys.stderr)
    return EXIT_USAGE


def _port(text: str) -> int:
    port = int(text)
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"not a TCP port: {text}")
    return port


def _positive(text: str) -> int:
    number = int(text)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text}")
    return number


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tenantgate",
        description="A multi-tenant API service: API keys, rate limits and tenant isolation.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve_parser = commands.add_parser(
        "serve", help="serve against the services named by the TENANTGATE_* variables"
    )
    serve_parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve_parser.add_argument("--port", type=_port, default=8000, help="port to listen on")
    serve_parser.add_argument(
        "--workers", type=_positive, default=1, help="number of worker processes"
    )

    dev_parser = commands.add_parser(
        "dev",
        help="start embedded PostgreSQL, Redis and S3 servers and serve against them",
        description=(
            "Start embedded PostgreSQL, Redis and S3 servers, then serve. When ready, print "
            "one JSON line on stdout; SIGINT (Ctrl-C) or SIGTERM stops everything."
        ),
    )
    dev_parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    dev_parser.add_argument("--port", type=_port, default=8000, help="port to listen on")
    dev_parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(".tenantgate"),
        help="folder of the embedded servers' data and the generated secrets",
    )
    dev_parser.add_argument(
        "--demo",
        action="store_true",
        help="also create demo tenants with keys, to try the API at once",
    )

    migrate_parser = commands.add_parser(
        "migrate",
        help="bring the shared tables and every tenant schema up to the latest migration",
        description=(
            "Migrate the shared tables, then every tenant schema, each in a transaction of its "
            "own: an interrupted or failed run is finished by running it again. Exit status: 0 "
            "when every schema is up to date, 1 when one failed, 2 for a settings error."
        ),
    )
    migrate_parser.add_argument(
        "--concurrency",
        type=_positive,
        default=8,
        help="tenant schemas migrated at once (default 8)",
    )

    audit_parser = commands.add_parser("audit", help="audit log tools")
    audit_commands = audit_parser.add_subparsers(
        dest="audit_command", required=True, metavar="COMMAND"
    )
    audit_commands.add_parser("verify", help="recompute the audit hash chains")
    return parser
