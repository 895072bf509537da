"""Routing errors on the tenant and admin APIs are the one 403 for a caller who would be
refused anyway.

Litestar answers an unknown path, a path parameter that does not convert (``/v1/items/x``)
and a method a path does not have with 404 or 405 *before* any route, and so before any
authentication, runs. Those answers would tell an unauthenticated caller which paths and
methods exist. :class:`RoutingRefusal` wraps the application's ASGI handler (outside
Litestar's exception handling, where such answers are made): a 404 or 405 under the tenant or
admin API prefixes, for a request no route identified, is replaced by the one 403 unless the
request carries credentials the API would accept — then the caller learns the truth, as any
authenticated caller does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from litestar.enums import ScopeType

from tenantgate.http.prefixes import Prefixes
from tenantgate.identity import send_forbidden
from tenantgate.identity.brake import source_address
from tenantgate.keys import Miss

if TYPE_CHECKING:
    from collections.abc import Sequence
    from ipaddress import IPv4Network, IPv6Network

    from litestar.types import ASGIApp, Message, Receive, Scope, Send

    from tenantgate.http.admin_auth import AdminAuthMiddleware
    from tenantgate.identity.brake import GuessingBrake
    from tenantgate.identity.domains import Domains
    from tenantgate.identity.key_cache import KeyCache

__all__ = ["RoutingRefusal"]

_ROUTING_ERRORS = frozenset({404, 405})


class RoutingRefusal:
    """An ASGI wrapper: routing errors under the API prefixes are 403 to outsiders."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        keys: KeyCache,
        domains: Domains,
        brake: GuessingBrake,
        trusted_proxies: Sequence[IPv4Network | IPv6Network],
        admin: AdminAuthMiddleware,
        tenant_prefixes: Sequence[str],
        admin_prefixes: Sequence[str],
    ) -> None:
        self.app = app
        self._keys = keys
        self._domains = domains
        self._brake = brake
        self._trusted_proxies = tuple(trusted_proxies)
        self._admin = admin
        self._tenant_prefixes = Prefixes(tenant_prefixes)
        self._admin_prefixes = Prefixes(admin_prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        admin = self._admin_prefixes.match(path)
        if not admin and not self._tenant_prefixes.match(path):
            await self.app(scope, receive, send)
            return
        refused = False

        async def guarded(message: Message) -> None:
            nonlocal refused
            if refused:
                return  # the routing error's body, replaced by the 403's
            if (
                message["type"] == "http.response.start"
                and message["status"] in _ROUTING_ERRORS
                and scope.get("state", {}).get("tenant") is None
                and not await self._accepted(scope, admin=admin)
            ):
                refused = True
                await send_forbidden(send)
                return
            await send(message)

        await self.app(scope, receive, guarded)

    async def _accepted(self, scope: Scope, *, admin: bool) -> bool:
        """Whether the API under this path would accept the request's credentials."""
        if admin:
            return self._admin.authorized(scope)
        authorization = host = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                if authorization is not None:
                    return False
                authorization = value
            elif name == b"host":
                if host is not None:
                    return False
                host = value
        if not host and self._domains.any_bound:
            return False
        verifier = self._keys.verifier
        verdict = verifier.verify(authorization, host)
        if type(verdict) is Miss:
            address = source_address(scope, self._trusted_proxies)
            if not self._keys.known_good(verdict.digest) and self._brake.holds(address):
                return False
            await self._keys.resolve(verdict, authorization)
            verdict = verifier.verify(authorization, host)
            if verdict is None:
                self._brake.failed(address)
        return verdict is not None and type(verdict) is not Miss
