"""``tenantgate serve``: the service on granian, configured by the ``TENANTGATE_*`` variables."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from typing import TYPE_CHECKING, Final

from tenantgate.cli.arguments import at_least_one, tcp_port
from tenantgate.cli.exit_codes import ExitCode
from tenantgate.cli.reporting import load_settings
from tenantgate.errors import ServiceUnavailableError
from tenantgate.host_limits import HostTable

if TYPE_CHECKING:
    from tenantgate.cli import Subcommands
    from tenantgate.settings import HsmSettings

__all__ = ["APP_FACTORY", "add_server_arguments", "command_line", "register", "serve"]

APP_FACTORY: Final = "tenantgate.app:create_app_from_env"
"""The import path granian loads the application from, in each worker process."""


def register(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "serve", help="serve against the services named by the TENANTGATE_* variables"
    )
    add_server_arguments(parser)
    parser.set_defaults(run=_run)


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """``--host``, ``--port`` and ``--workers``: where and how wide to serve."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=tcp_port, default=8000, help="port to listen on")
    parser.add_argument(
        "--workers", type=at_least_one, default=1, help="number of worker processes"
    )


def command_line(*, host: str, port: int, workers: int) -> list[str]:
    """The arguments that run ``tenantgate serve`` in a child process of this interpreter."""
    return [
        sys.executable,
        "-m",
        "tenantgate",
        "serve",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]


def _run(args: argparse.Namespace) -> ExitCode:
    return serve(host=args.host, port=args.port, workers=args.workers)


def serve(*, host: str, port: int, workers: int) -> ExitCode:
    """Serve the application with granian until it is stopped."""
    # Checked here, once, so a bad setting is one clear line instead of a traceback from
    # every worker process.
    settings = load_settings("tenantgate", None, sys.stderr)
    if settings is None:
        return ExitCode.USAGE

    from granian import Granian
    from granian.constants import Interfaces

    if settings.hsm is not None:
        _prepare_hsm(settings.hsm)

    # One table of rate-limit buckets for all the workers, made before granian starts them
    # and named to them in the environment they inherit (forked or spawned alike). One
    # worker keeps its buckets on its heap.
    with contextlib.ExitStack() as stack:
        if workers > 1:
            table = stack.enter_context(HostTable(settings.limits.ratelimit_slots))
            os.environ.update(table.environ())
        server = Granian(
            APP_FACTORY,
            factory=True,
            interface=Interfaces.ASGI,
            address=host,
            port=port,
            workers=workers,
        )
        server.serve()
    return ExitCode.OK


def _prepare_hsm(settings: HsmSettings) -> None:
    """Make the HSM keys (API keys', seals') before the workers start, so they never race to
    generate two; a failing HSM is logged and the service starts anyway (only HSM keys and
    sealing need it)."""
    from tenantgate.audit.seal_signer import SEAL_KEY_LABEL
    from tenantgate.hsm import ensure_hmac_key

    try:
        ensure_hmac_key(settings)
        ensure_hmac_key(settings, SEAL_KEY_LABEL)
    except ServiceUnavailableError as exc:
        print(f"tenantgate serve: {exc}; HSM keys are refused until it works", file=sys.stderr)
