"""The admin API's authentication: one shared operator token, compared in constant time.

A wrong or missing token, or two ``Authorization`` headers, get the very same 403 as a failed
tenant authentication.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING, Self

from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware

from tenantgate.identity import send_forbidden

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Receive, Scope, Send

__all__ = ["AdminAuthMiddleware"]

_BEARER = b"bearer "


def _digest(token: bytes) -> bytes:
    # Comparing fixed-length digests keeps the token's length out of the timing as well.
    return hashlib.sha256(token).digest()


class AdminAuthMiddleware(ASGIMiddleware):
    scopes = (ScopeType.HTTP,)

    def __init__(self, admin_token: str) -> None:
        self._expected = _digest(admin_token.encode())

    def __deepcopy__(self, memo: dict[int, object]) -> Self:
        # Litestar deep-copies routers on registration; this middleware must stay shared
        # (it holds the instance's caches, or a secret that need not be duplicated).
        return self

    def authorized(self, scope: Scope) -> bool:
        """Whether the request carries the admin token, in exactly one ``Authorization``."""
        presented: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                if presented is not None:
                    return False  # two credentials: ambiguous, whichever one is right
                presented = b""
                if value[: len(_BEARER)].lower() == _BEARER:
                    presented = value[len(_BEARER) :].strip()
        return hmac.compare_digest(_digest(presented or b""), self._expected)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        if not self.authorized(scope):
            await send_forbidden(send)
            return
        await next_app(scope, receive, send)
