"""The ``tenantgate`` command: one module per command group.

Each group's module has ``register(commands)``, which adds its sub-command(s) and sets
``run``: the function that takes the parsed arguments and returns an
:class:`~tenantgate.cli.exit_codes.ExitCode`. A new group is a module and one line in
:data:`COMMAND_GROUPS`. The embedded servers (an optional extra) are imported only when
``tenantgate dev`` runs.

Internal: the public API is :mod:`tenantgate` (its ``__all__``); names here may change.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final

from tenantgate import __version__
from tenantgate.cli import audit, dev, keys, migrate, serve, tenants
from tenantgate.cli.exit_codes import ExitCode

if TYPE_CHECKING:
    Subcommands = argparse._SubParsersAction[argparse.ArgumentParser]

__all__ = ["COMMAND_GROUPS", "ExitCode", "build_parser", "main"]

COMMAND_GROUPS: Final[tuple[Callable[[Subcommands], None], ...]] = (
    serve.register,
    dev.register,
    migrate.register,
    audit.register,
    keys.register,
    tenants.register,
)
"""The ``register`` function of each command group, in the order ``--help`` lists them."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tenantgate`` command line with ``argv`` (default: ``sys.argv[1:]``)."""
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], ExitCode] = args.run
    return int(run(args))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tenantgate",
        description="A multi-tenant API service: API keys, rate limits and tenant isolation.",
        epilog="Exit status: "
        + ", ".join(f"{code.value} {code.name.lower()}" for code in ExitCode)
        + ".",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in COMMAND_GROUPS:
        register(commands)
    return parser
