"""S3's (botocore's) errors become tenantgate's errors here, and nowhere else."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

import botocore.exceptions

from tenantgate.errors import NotFoundError, ServiceUnavailableError, TenantgateError

__all__ = ["SERVICE", "translate", "translating"]

SERVICE: Final = "s3"
"""How a :class:`ServiceUnavailableError` names the object store."""

_UNAVAILABLE: Final = (
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectionClosedError,
    botocore.exceptions.ConnectTimeoutError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.HTTPClientError,
    TimeoutError,
    OSError,
)

_NOT_FOUND_CODES: Final = frozenset({"NoSuchKey", "NotFound", "404"})
_UNAVAILABLE_CODES: Final = frozenset(
    {"ServiceUnavailable", "SlowDown", "InternalError", "RequestTimeout", "503", "500"}
)


def translate(exc: BaseException) -> TenantgateError | None:
    """The tenantgate error ``exc`` means, or ``None`` when it is not S3's to explain."""
    if isinstance(exc, _UNAVAILABLE):
        return ServiceUnavailableError(SERVICE)
    if isinstance(exc, botocore.exceptions.ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _NOT_FOUND_CODES:
            return NotFoundError("file")
        if code in _UNAVAILABLE_CODES:
            return ServiceUnavailableError(SERVICE)
    return None


@contextmanager
def translating() -> Iterator[None]:
    """Re-raise S3 errors in the block as tenantgate errors (``from`` the original)."""
    try:
        yield
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, OSError) as exc:
        translated = translate(exc)
        if translated is None:
            raise
        raise translated from exc
