"""The exceptions tenantgate raises.

Domain errors know nothing of HTTP; one exception handler in the web layer maps them to
problem+json responses.

    TenantgateError
    ├── KeyFormatError (also ValueError)     a string that is not a well-formed tenantgate key
    ├── SettingsError                        a missing or malformed TENANTGATE_* setting
    ├── EmbeddedServerError                  an embedded server failed to start or answer
    ├── ServiceUnavailableError              a backing service (PostgreSQL, Redis, S3) is down
    │   └── HsmUnavailableError              the PKCS#11 token (library, session, token) failed
    ├── KeyScopeError                        the caller's key lacks the scope this needs
    ├── TenantGoneError                      the caller's tenant was deleted a moment ago
    ├── NotFoundError                        no such resource, or it belongs to another tenant
    ├── ConflictError                        the change clashes with existing state (a taken domain)
    ├── InvalidInputError                    the request is well-formed but its values are not valid
    └── TooLargeError                        an upload is larger than the configured limit
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = [
    "ConflictError",
    "EmbeddedServerError",
    "HsmUnavailableError",
    "InvalidInputError",
    "KeyFormatError",
    "KeyScopeError",
    "NotFoundError",
    "ServiceUnavailableError",
    "SettingsError",
    "TenantGoneError",
    "TenantgateError",
    "TooLargeError",
    "translated",
]


class TenantgateError(Exception):
    """Base class of every error tenantgate raises on purpose."""


class KeyFormatError(TenantgateError, ValueError):
    """The string is not a well-formed key: wrong prefix, alphabet, length or checksum.

    Raised by the native core; the message says which part is wrong and never echoes the key.
    """


class SettingsError(TenantgateError):
    """A required setting is missing or malformed; the message names the variable."""


class EmbeddedServerError(TenantgateError):
    """An embedded development/test server could not be started or did not answer."""

    def __init__(self, server: str, reason: str) -> None:
        super().__init__(f"{server}: {reason}")
        self.server = server
        self.reason = reason


class ServiceUnavailableError(TenantgateError):
    """A backing service did not answer; the web layer turns this into 503 + Retry-After."""

    def __init__(self, service: str, retry_after: int = 1) -> None:
        super().__init__(f"{service} is unavailable")
        self.service = service
        self.retry_after = retry_after


class HsmUnavailableError(ServiceUnavailableError):
    """The HSM could not compute a digest: its library failed, its session broke, or its token
    is gone. Creating an HSM key answers 503; verifying one is the uniform 403 (identification
    never says why), counted in ``tenantgate_hsm_unavailable``."""

    def __init__(self, reason: str) -> None:
        super().__init__("hsm")
        self.reason = reason

    def __str__(self) -> str:
        return f"hsm is unavailable: {self.reason}"


class NotFoundError(TenantgateError):
    """No such resource — or one of another tenant, which must look exactly the same."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} not found")
        self.what = what


class ConflictError(TenantgateError):
    """The change clashes with existing state; the message says with what."""


class InvalidInputError(TenantgateError):
    """Well-formed input whose values are not acceptable; the message is the client's detail."""


class TooLargeError(TenantgateError):
    """An upload is larger than its limit; nothing of it was stored. The message says which."""


class KeyScopeError(TenantgateError):
    """The caller's key may not do this (its scopes). Answered like any other refused key."""


class TenantGoneError(TenantgateError):
    """The caller's tenant was deleted after its key was cached (by another instance, say).

    Answered like any other failed authentication.
    """


@contextmanager
def translated(
    translate: Callable[[BaseException], TenantgateError | None],
    *catching: type[BaseException],
) -> Iterator[None]:
    """Re-raise an exception of the ``catching`` types raised in the block as the tenantgate
    error ``translate`` makes of it (``from`` the original); one it has no word for (a bug)
    passes unchanged. Each backing-service room passes its own one error map."""
    try:
        yield
    except catching as exc:
        translation = translate(exc)
        if translation is None:
            raise
        raise translation from exc
