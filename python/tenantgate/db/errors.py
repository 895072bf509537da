"""PostgreSQL's errors become tenantgate's errors here, and nowhere else.

One table, in the manner of httpx's ``map_httpcore_exceptions``: :func:`translate` returns the
most specific tenantgate error for a driver error, or ``None`` for one that is a bug (a syntax
error, say), which the web layer answers with a bare 500 and logs.

- The server is not there, went away, shut down, or a pool acquisition or statement timed out:
  :class:`~tenantgate.errors.ServiceUnavailableError` (503 with ``Retry-After``).
- A named constraint refused a change: the domain error registered for that constraint
  (a taken custom domain is a conflict, an unknown plan invalid input, a key for a tenant that
  is gone a missing tenant). An unregistered constraint stays untranslated: it is our bug.
- Text PostgreSQL cannot store (``\\u0000``): invalid input.

:func:`translating` applies the table to a block; the web layer applies it, through
``tenantgate.http.problems``, to whatever a handler's own queries raise.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Final

import asyncpg

from tenantgate.db.types import Connection
from tenantgate.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    ServiceUnavailableError,
    TenantgateError,
    translated,
)

__all__ = ["SERVICE", "is_closed", "is_connection_lost", "translate", "translating"]

SERVICE: Final = "postgres"
"""How a :class:`ServiceUnavailableError` names PostgreSQL."""

# "PostgreSQL is not there right now", not "this request is wrong". TimeoutError covers
# asyncpg's pool acquisition and statement (command_timeout) timeouts.
_UNAVAILABLE: Final = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.QueryCanceledError,
)

_UNSTORABLE_TEXT: Final = (
    asyncpg.UntranslatableCharacterError,
    asyncpg.CharacterNotInRepertoireError,
)

_FOREIGN_VALUE = re.compile(r"\)=\((?P<value>.*)\) is not present")


def _unknown_plan(exc: asyncpg.IntegrityConstraintViolationError) -> TenantgateError:
    match = _FOREIGN_VALUE.search(getattr(exc, "detail", None) or "")
    plan = f" {match['value']!r}" if match else ""
    return InvalidInputError(f"unknown plan{plan}")


_CONSTRAINTS: Final[
    dict[str, Callable[[asyncpg.IntegrityConstraintViolationError], TenantgateError]]
] = {
    "tenants_custom_domain_key": lambda exc: ConflictError("custom_domain is already taken"),
    "tenants_plan_fkey": _unknown_plan,
    "api_keys_tenant_id_fkey": lambda exc: NotFoundError("tenant"),
}
"""Constraint name → the domain error its violation means."""


_DRIVER_ERRORS: Final = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)
"""What this room's drivers raise: the exceptions :func:`translating` looks at."""


def translate(exc: BaseException) -> TenantgateError | None:
    """The tenantgate error ``exc`` means, or ``None`` when it is not PostgreSQL's to explain."""
    if isinstance(exc, _UNAVAILABLE):
        return ServiceUnavailableError(SERVICE)
    if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
        make = _CONSTRAINTS.get(getattr(exc, "constraint_name", None) or "")
        return make(exc) if make is not None else None
    if isinstance(exc, _UNSTORABLE_TEXT):
        return InvalidInputError(
            "text contains a character PostgreSQL cannot store (such as \\u0000)"
        )
    if isinstance(exc, asyncpg.InterfaceError) and "connection is closed" in str(exc):
        return ServiceUnavailableError(SERVICE)
    if isinstance(exc, asyncpg.InternalClientError):
        # The protocol saw the server end the session in the middle of an exchange (a
        # terminated backend's FATAL message, say): the connection is unusable, not the query.
        return ServiceUnavailableError(SERVICE)
    return None


def translating() -> AbstractContextManager[None]:
    """Re-raise PostgreSQL errors in the block as tenantgate errors (``from`` the original)."""
    return translated(translate, *_DRIVER_ERRORS)


def is_connection_lost(exc: BaseException, connection: Connection | None) -> bool:
    """Whether ``exc`` means the connection is gone (so nothing sent on it was committed),
    as opposed to PostgreSQL refusing what was sent."""
    if isinstance(
        exc,
        asyncpg.ConnectionDoesNotExistError
        | asyncpg.AdminShutdownError
        | asyncpg.CrashShutdownError
        | asyncpg.InternalClientError  # the server's goodbye arrived mid-exchange
        | ConnectionError,
    ):
        return True
    return connection is not None and is_closed(connection)


def is_closed(connection: Connection) -> bool:
    """Whether ``connection`` is gone. A pool's proxy of a connection that died is detached
    from it at once, and then answers nothing: that counts as gone."""
    try:
        return connection.is_closed()
    except asyncpg.InterfaceError:
        return True
