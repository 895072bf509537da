"""A restricted key through the identification middleware, without servers: the source
address its networks are checked against is the one the guessing brake uses (the socket peer,
or `X-Forwarded-For` from a trusted proxy; an IPv4-mapped peer is its IPv4 address), and the
requests those checks refuse take nothing from the tenant's bucket."""

from __future__ import annotations

from ipaddress import ip_network
from typing import Any

from auth_helpers import FORBIDDEN
from litestar import Litestar, get
from litestar.testing import TestClient
from test_identification_parts import PEPPER, FakeSource, _record

from tenantgate.http.problems import DEFAULT_EXCEPTION_HANDLERS
from tenantgate.identity import IdentityCache, TenantIdentificationMiddleware
from tenantgate.keys import Verifier
from tenantgate.limits import Limiter
from tenantgate.scopes import SCOPE_OPT


@get("/items", sync_to_thread=False, opt={SCOPE_OPT: "items:read"})
def _items() -> dict[str, str]:
    return {"ok": "yes"}


@get("/cache", sync_to_thread=False, opt={SCOPE_OPT: "cache:read"})
def _cache() -> dict[str, str]:
    return {"ok": "yes"}


def _app(source: FakeSource) -> Any:
    identity = IdentityCache(Verifier(PEPPER, ttl_seconds=60.0))
    app = Litestar(
        route_handlers=[_items, _cache],
        middleware=[
            TenantIdentificationMiddleware(
                identity.keys,
                Limiter(),
                identity.domains,
                trusted_proxies=[ip_network("127.0.0.0/8")],
            )
        ],
        exception_handlers=DEFAULT_EXCEPTION_HANDLERS,
        lifespan=[lambda app: identity.serving(source)],
    )

    async def from_peer(scope: Any, receive: Any, send: Any) -> None:
        """The app, seen from the peer named by the test's `x-test-peer` header."""
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"x-test-peer":
                    scope = {**scope, "client": (value.decode(), 40000)}
        await app(scope, receive, send)

    return from_peer


def test_networks_are_checked_against_the_brakes_source_address() -> None:
    source = FakeSource()
    key = source.add_key(_record(allowed_cidrs=("10.0.0.0/8",), rate_per_second=0.001, burst=3))
    bearer = {"Authorization": f"Bearer {key}"}

    def status(peer: str, forwarded: str | None = None, path: str = "/items") -> int:
        headers = {**bearer, "x-test-peer": peer}
        if forwarded is not None:
            headers["X-Forwarded-For"] = forwarded
        answer = client.get(path, headers=headers)
        if answer.status_code == 403:
            assert answer.content == FORBIDDEN
        return answer.status_code

    with TestClient(_app(source)) as client:
        for _ in range(5):  # refused, and never charged
            assert status("11.0.0.1") == 403
            assert status("127.0.0.1", "11.0.0.1") == 403, "the client behind the proxy"
            assert status("192.0.2.1", "10.1.2.3") == 403, "an untrusted peer's header"
            assert status("127.0.0.1", "not an address") == 403
            assert status("::1") == 403
        assert status("10.1.2.3") == 200
        assert status("127.0.0.1", "192.0.2.9, 10.1.2.3") == 200, "the nearest untrusted hop"
        assert status("::ffff:10.9.9.9") == 200, "an IPv4-mapped peer is its IPv4 address"
        assert status("10.1.2.3") == 429, "three allowed: the burst was whole"


def test_scopes_and_networks_together_and_the_budget_left_whole() -> None:
    source = FakeSource()
    record = _record(
        scopes=("items:read",), allowed_cidrs=("10.0.0.0/8",), rate_per_second=0.001, burst=2
    )
    key = source.add_key(record)
    headers = {"Authorization": f"Bearer {key}", "x-test-peer": "10.0.0.7"}
    with TestClient(_app(source)) as client:
        refused = [client.get("/cache", headers=headers).status_code for _ in range(10)]
        allowed = client.get("/items", headers=headers)
    assert refused == [403] * 10
    assert allowed.status_code == 200
    assert allowed.headers["ratelimit-remaining"] == "1"
