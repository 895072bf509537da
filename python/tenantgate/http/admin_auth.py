"""The admin API's authentication: one shared operator token, compared in constant time.

A wrong or missing token gets the very same 403 as a failed tenant authentication.
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

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        presented = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                if value[: len(_BEARER)].lower() == _BEARER:
                    presented = value[len(_BEARER) :].strip()
                break
        if not hmac.compare_digest(_digest(presented), self._expected):
            await send_forbidden(send)
            return
        await next_app(scope, receive, send)
