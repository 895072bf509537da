"""Driver errors become tenantgate errors here, and nowhere else."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg

from tenantgate.errors import InvalidInputError, ServiceUnavailableError

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

# Client text PostgreSQL refuses to store: the client's mistake, not ours.
_UNSTORABLE_TEXT = (
    asyncpg.UntranslatableCharacterError,
    asyncpg.CharacterNotInRepertoireError,
)


@contextmanager
def translate_driver_errors() -> Iterator[None]:
    try:
        yield
    except _UNAVAILABLE as exc:
        raise ServiceUnavailableError("postgres") from exc
    except _UNSTORABLE_TEXT as exc:
        raise InvalidInputError(
            "text contains a character PostgreSQL cannot store (such as \\u0000)"
        ) from exc
