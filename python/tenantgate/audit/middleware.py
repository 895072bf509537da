"""Which requests are audited, recorded after their answer through the :class:`AuditWriter`.

- every request to the admin API (actor ``admin``, the operator chain; the tenant it touched is
  in ``operation``), refused ones included;
- every request to the tenant API that may change something (``POST``, ``PUT``, ``PATCH``,
  ``DELETE``), unless its handler already wrote its record in its own transaction (the items,
  whose change and record commit together: :data:`AUDITED_STATE_KEY`);
- every refused identification on the tenant API (the 403; no tenant: the operator chain).

Reads that succeed are not recorded. Routing errors answered before any route ran (see
:mod:`tenantgate.http.routing_refusal`) are not seen here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Self

from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware

from tenantgate.audit.records import AUDITED_STATE_KEY, event_of
from tenantgate.http.prefixes import Prefixes
from tenantgate.identity.middleware import REFUSAL_STATE_KEY

if TYPE_CHECKING:
    from collections.abc import Sequence

    from litestar.types import ASGIApp, Message, Receive, Scope, Send

    from tenantgate.audit.writer import AuditWriter

__all__ = ["AuditMiddleware"]

_CHANGES: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class AuditMiddleware(ASGIMiddleware):
    scopes = (ScopeType.HTTP,)

    def __init__(
        self, writer: AuditWriter, *, tenant_prefixes: Sequence[str], admin_prefixes: Sequence[str]
    ) -> None:
        self._writer = writer
        self._tenant_prefixes = Prefixes(tenant_prefixes)
        self._admin_prefixes = Prefixes(admin_prefixes)

    def __deepcopy__(self, memo: dict[int, object]) -> Self:
        return self  # shared: it holds the application's writer

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        path = scope["path"]
        admin = self._admin_prefixes.match(path)
        if not admin and not self._tenant_prefixes.match(path):
            await next_app(scope, receive, send)
            return
        status = 500

        async def noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await next_app(scope, receive, noting_status)
        finally:
            state = scope.get("state") or {}
            if admin:
                self._writer.record(event_of(scope, status, actor="admin"))
            elif not state.get(AUDITED_STATE_KEY) and (
                scope.get("method") in _CHANGES or (status == 403 and state.get("tenant") is None)
            ):
                # A key refused for its scopes or networks: which check failed is said to the
                # operator (the operator chain), never to the client.
                operation = state.get(REFUSAL_STATE_KEY)
                self._writer.record(event_of(scope, status, actor="tenant", operation=operation))
