"""The admin token is compared in constant time: HMAC's compare_digest on fixed-length
digests, so neither the content nor the length of a wrong token shows in the time taken.

A code-level test: timing cannot be measured reliably on a shared CI machine.
"""

from __future__ import annotations

import asyncio
import hmac

from tenantgate.http import admin_auth
from tenantgate.http.admin_auth import AdminAuthMiddleware

TOKEN = "the-admin-token-" + "x" * 24


async def _call(middleware, authorization):
    sent = []
    reached = []

    async def send(message):
        sent.append(message)

    async def next_app(scope, receive, send):
        reached.append(True)

    headers = [] if authorization is None else [(b"authorization", authorization)]
    scope = {"type": "http", "headers": headers, "state": {}}
    await middleware.handle(scope, None, send, next_app)
    return bool(reached), sent


def test_every_presented_token_goes_through_compare_digest_of_equal_length_digests(monkeypatch):
    calls = []
    compare_digest = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return compare_digest(a, b)

    monkeypatch.setattr(admin_auth.hmac, "compare_digest", spy)
    middleware = AdminAuthMiddleware(TOKEN)
    presented = [
        None,
        b"",
        b"Bearer ",
        b"Bearer x",
        b"Bearer " + TOKEN.encode()[:-1],
        b"Bearer " + TOKEN.encode() + b"x" * 1000,
        b"Basic " + TOKEN.encode(),
        b"Bearer " + TOKEN.encode(),
    ]

    outcomes = [asyncio.run(_call(middleware, value)) for value in presented]

    assert [reached for reached, _ in outcomes] == [False] * 7 + [True]
    assert len(calls) == len(presented)
    lengths = {(len(a), len(b)) for a, b in calls}
    assert len(lengths) == 1
    ((left, right),) = lengths
    assert left == right >= 32
    expected = {b for _, b in calls}
    assert len(expected) == 1
    assert TOKEN.encode() not in expected
