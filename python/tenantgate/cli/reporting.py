"""What every command says when its settings or a backing service fail: one line on stderr,
prefixed with the command's name, never a traceback."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TextIO, TypeVar

from tenantgate.cli.exit_codes import ExitCode
from tenantgate.errors import SettingsError, TenantgateError
from tenantgate.settings import Settings

__all__ = ["failure_line", "load_settings", "run_with_settings"]

T = TypeVar("T")


def load_settings(prefix: str, environ: Mapping[str, str] | None, err: TextIO) -> Settings | None:
    """The settings from ``environ`` (default: the process environment), or ``None`` after
    saying on ``err`` which variable is missing or malformed (the caller exits with USAGE)."""
    try:
        return Settings.from_env(os.environ if environ is None else environ)
    except SettingsError as exc:
        print(f"{prefix}: {exc}", file=err)
        return None


def failure_line(prefix: str, exc: TenantgateError) -> str:
    """``exc`` and the driver error behind it, for an operator to act on."""
    cause = exc.__cause__
    detail = f" ({type(cause).__name__}: {cause})" if cause is not None else ""
    return f"{prefix}: {exc}{detail}"


def run_with_settings(
    prefix: str,
    environ: Mapping[str, str] | None,
    err: TextIO,
    work: Callable[[Settings], Coroutine[Any, Any, T]],
) -> T | ExitCode:
    """What ``work`` returned, run on the settings from ``environ``; or the exit status after
    saying on ``err`` what was wrong: a setting (``USAGE``) or a backing service (``FAILURE``)."""
    settings = load_settings(prefix, environ, err)
    if settings is None:
        return ExitCode.USAGE
    try:
        return asyncio.run(work(settings))
    except TenantgateError as exc:
        print(failure_line(prefix, exc), file=err)
        return ExitCode.FAILURE
