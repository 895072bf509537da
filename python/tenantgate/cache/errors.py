"""Redis's errors become tenantgate's errors here, and nowhere else."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Final

import redis.exceptions

from tenantgate.errors import ServiceUnavailableError, TenantgateError, translated

__all__ = ["SERVICE", "translate", "translating"]

SERVICE: Final = "redis"
"""How a :class:`ServiceUnavailableError` names Redis."""

_UNAVAILABLE: Final = (
    redis.exceptions.ConnectionError,  # refused, reset, closed; AuthenticationError among them
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
    TimeoutError,
    OSError,
)


_DRIVER_ERRORS: Final = (redis.exceptions.RedisError, OSError, TimeoutError)
"""What this room's drivers raise: the exceptions :func:`translating` looks at."""


def translate(exc: BaseException) -> TenantgateError | None:
    """The tenantgate error ``exc`` means, or ``None`` when it is not Redis's to explain."""
    if isinstance(exc, _UNAVAILABLE):
        return ServiceUnavailableError(SERVICE)
    return None


def translating() -> AbstractContextManager[None]:
    """Re-raise Redis errors in the block as tenantgate errors (``from`` the original)."""
    return translated(translate, *_DRIVER_ERRORS)
