"""The exit status of every ``tenantgate`` command, defined once."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["ExitCode"]


class ExitCode(IntEnum):
    """What a ``tenantgate`` command's exit status means."""

    OK = 0
    """Done; also after a requested stop (SIGINT or SIGTERM to ``tenantgate dev``)."""

    FAILURE = 1
    """Something failed: a backing service, a tenant schema, a server that died."""

    USAGE = 2
    """A usage error (argparse exits with 2 too) or a missing or malformed ``TENANTGATE_*``
    setting."""

    INTERRUPTED = 130
    """Ctrl-C stopped a command that has work left to finish (128 + SIGINT, as shells say)."""
