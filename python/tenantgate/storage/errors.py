"""S3's (botocore's) errors become tenantgate's errors here, and nowhere else."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Final

import botocore.exceptions

from tenantgate.errors import (
    InvalidInputError,
    NotFoundError,
    ServiceUnavailableError,
    TenantgateError,
    translated,
)

__all__ = ["SERVICE", "translate", "translating"]

SERVICE: Final = "s3"
"""How a :class:`ServiceUnavailableError` names the object store."""

_UNAVAILABLE: Final = (
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectionClosedError,
    botocore.exceptions.ConnectTimeoutError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.HTTPClientError,
    # No credentials for the service (none configured, none in the AWS chain): the object
    # store cannot be used until an operator fixes it — a 503 and a log line, never a 500.
    botocore.exceptions.NoCredentialsError,
    botocore.exceptions.PartialCredentialsError,
    TimeoutError,
    OSError,
)

_UNAVAILABLE_CODES: Final = frozenset(
    {
        "ServiceUnavailable",
        "SlowDown",
        "InternalError",
        "RequestTimeout",
        "503",
        "500",
        # Credentials S3 does not (or no longer) know: a tenant's identity replaced or removed
        # behind a cached client, or the service's own misconfigured — not the caller's fault.
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
    }
)


_NOT_FOUND_CODES: Final = frozenset({"NoSuchKey", "404"})
"""A missing object (``GetObject`` says ``NoSuchKey``, ``HeadObject`` only its status)."""


_DRIVER_ERRORS: Final = (
    botocore.exceptions.BotoCoreError,
    botocore.exceptions.ClientError,
    OSError,
)
"""What this room's drivers raise: the exceptions :func:`translating` looks at."""


def translate(exc: BaseException) -> TenantgateError | None:
    """The tenantgate error ``exc`` means, or ``None`` when it is not S3's to explain."""
    if isinstance(exc, _UNAVAILABLE):
        return ServiceUnavailableError(SERVICE)
    if isinstance(exc, botocore.exceptions.ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _UNAVAILABLE_CODES:
            return ServiceUnavailableError(SERVICE)
        if code in _NOT_FOUND_CODES:
            return NotFoundError("file")
        if code == "KeyTooLongError":  # SeaweedFS: a segment over 255 bytes (AWS: key > 1024)
            return InvalidInputError("path: too long for the object store")
    return None


def translating() -> AbstractContextManager[None]:
    """Re-raise S3 errors in the block as tenantgate errors (``from`` the original)."""
    return translated(translate, *_DRIVER_ERRORS)
