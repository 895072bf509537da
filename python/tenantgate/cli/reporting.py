"""What every command says when its settings or a backing service fail: one line on stderr,
prefixed with the command's name, never a traceback."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TextIO

from tenantgate.errors import SettingsError, TenantgateError
from tenantgate.settings import Settings

__all__ = ["failure_line", "load_settings"]


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
