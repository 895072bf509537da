"""Driver errors become tenantgate errors here, and nowhere else."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg

from tenantgate.errors import ServiceUnavailableError

__all__ = ["translate_driver_errors"]

# Errors that mean "PostgreSQL is not there right now", not "this request is wrong".
_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
)


@contextmanager
def translate_driver_errors() -> Iterator[None]:
    try:
        yield
    except _UNAVAILABLE as exc:
        raise ServiceUnavailableError("postgresql") from exc
