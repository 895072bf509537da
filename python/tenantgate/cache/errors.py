"""Redis's errors become tenantgate's errors here, and nowhere else."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

import redis.exceptions

from tenantgate.errors import ServiceUnavailableError, TenantgateError

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


def translate(exc: BaseException) -> TenantgateError | None:
    """The tenantgate error ``exc`` means, or ``None`` when it is not Redis's to explain."""
    if isinstance(exc, _UNAVAILABLE):
        return ServiceUnavailableError(SERVICE)
    return None


@contextmanager
def translating() -> Iterator[None]:
    """Re-raise Redis errors in the block as tenantgate errors (``from`` the original)."""
    try:
        yield
    except (redis.exceptions.RedisError, OSError, TimeoutError) as exc:
        translated = translate(exc)
        if translated is None:
            raise
        raise translated from exc
