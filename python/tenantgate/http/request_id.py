"""Request ids: one per request, taken from the client when sane, on every response.

Two pieces, because Litestar runs app-level middleware only for requests that matched a
route: :class:`RequestIdMiddleware` assigns the id before any route code runs (so handlers,
logs and audit records can read it from ``scope["state"]``), and :func:`attach_request_id`,
a ``before_send`` hook, which sees every response the application sends (404 and 405 from
routing and errors raised outside the route included), puts it in the ``X-Request-ID``
header, assigning one first if the middleware never ran. The middleware does not wrap
``send``: one hook at the application level is cheaper than a wrapper per middleware.
"""

from __future__ import annotations

import itertools
import os
import re
from typing import TYPE_CHECKING, Final

from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "REQUEST_ID_HEADER",
    "REQUEST_ID_STATE_KEY",
    "RequestIdMiddleware",
    "attach_request_id",
    "request_id_of",
]

REQUEST_ID_HEADER: Final = "X-Request-ID"
REQUEST_ID_STATE_KEY: Final = "request_id"
"""The key of the request id (a ``str``) in ``scope["state"]``."""

_HEADER_NAME: Final = b"x-request-id"
_SANE_REQUEST_ID: Final = re.compile(rb"[A-Za-z0-9._:-]{1,128}")


class _NewIds:
    """Fresh request ids: 32 hex characters, 80 random bits drawn once per process and then a
    counter. Unique across processes and within one, without reading the OS random source per
    request as ``uuid4`` does (which showed in profiles of every request). Ids are labels, not
    secrets, so being predictable within a process costs nothing."""

    def __init__(self) -> None:
        self._start()
        os.register_at_fork(after_in_child=self._start)  # a forked worker draws its own

    def _start(self) -> None:
        self._prefix = os.urandom(10).hex()
        self._counter = itertools.count()

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter) & 0xFFFF_FFFF_FFFF:012x}"


_new_ids: Final = _NewIds()


def request_id_of(scope: Scope) -> str:
    """Return the request's id, assigning it on first use.

    The client's ``X-Request-ID`` is kept when it is 1 to 128 characters of
    ``[A-Za-z0-9._:-]``; otherwise the id is 32 new hex characters.
    """
    state = scope["state"]
    request_id: str | None = state.get(REQUEST_ID_STATE_KEY)
    if request_id is None:
        request_id = _id_from_client(scope) or _new_ids.next()
        state[REQUEST_ID_STATE_KEY] = request_id
    return request_id


def _id_from_client(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == _HEADER_NAME:
            return value.decode("ascii") if _SANE_REQUEST_ID.fullmatch(value) else None
    return None


class RequestIdMiddleware(ASGIMiddleware):
    """Assign the request id before the route runs; see :func:`request_id_of`."""

    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        request_id_of(scope)
        await next_app(scope, receive, send)


async def attach_request_id(message: Message, scope: Scope) -> None:
    """``before_send`` hook: add ``X-Request-ID`` to the start of every HTTP response."""
    if message["type"] != "http.response.start":
        return
    header = (_HEADER_NAME, request_id_of(scope).encode("ascii"))
    # A new list, never an append: a sender may reuse one message for every response.
    message["headers"] = [*message.get("headers", ()), header]
