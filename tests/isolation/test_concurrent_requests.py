"""Requests of many tenants in flight at once never cross: each sees its own data only."""

from __future__ import annotations

import asyncio
import random

import pytest
from isolation_helpers import create_tenant, serving

from tenantgate.app import create_app
from tenantgate.plugin import RESOURCES_STATE_KEY

pytestmark = [pytest.mark.servers, pytest.mark.anyio, pytest.mark.pgbouncer]

TENANTS = 10
ITEMS_EACH = 3
REQUESTS = 200


async def test_interleaved_requests_of_ten_tenants_never_cross(service_settings, admin_headers):
    rng = random.Random(20240601)
    app = create_app(service_settings)
    async with serving(app) as client:
        callers = await asyncio.gather(
            *(create_tenant(client, admin_headers) for _ in range(TENANTS))
        )
        owned: dict[str, set[str]] = {caller.id: set() for caller in callers}

        async def post(caller):
            answer = await client.post(
                "/v1/items", json={"data": {"tenant": caller.id}}, headers=caller.headers
            )
            assert answer.status_code == 201, answer.text
            assert answer.json()["data"] == {"tenant": caller.id}
            owned[caller.id].add(answer.json()["id"])
            return answer

        await asyncio.gather(*(post(caller) for caller in callers for _ in range(ITEMS_EACH)))
        everyone = {item: tenant for tenant, items in owned.items() for item in items}

        async def one(n):
            caller = callers[n % TENANTS]
            kind = rng.choice(["get-own", "get-foreign", "post", "list", "me"])
            if kind == "post":
                return caller, kind, await post(caller)
            if kind == "list":
                answer = await client.get("/v1/items?limit=100", headers=caller.headers)
            elif kind == "me":
                answer = await client.get("/v1/me", headers=caller.headers)
            else:
                pool = owned[caller.id] if kind == "get-own" else everyone.keys() - owned[caller.id]
                item = rng.choice(sorted(pool))
                answer = await client.get(f"/v1/items/{item}", headers=caller.headers)
            return caller, kind, answer

        results = await asyncio.gather(*(one(n) for n in range(REQUESTS)))
        # Served one at a time, the requests would never have needed a second connection.
        assert app.state[RESOURCES_STATE_KEY].database.pool.get_size() > 1
        # Gone after the test (each holds an S3 identity, and SeaweedFS slows with their number).
        for caller in callers:
            await client.delete(f"/admin/v1/tenants/{caller.id}", headers=admin_headers)

    kinds = {kind for _, kind, _ in results}
    assert kinds == {"get-own", "get-foreign", "post", "list", "me"}
    for caller, kind, answer in results:
        body = answer.json()
        if kind == "get-foreign":
            assert answer.status_code == 404, (kind, answer.text)
            continue
        assert answer.status_code in (200, 201), (kind, answer.text)
        if kind == "me":
            assert body["tenant_id"] == caller.id
            continue
        items = body["items"] if kind == "list" else [body]
        assert items or kind != "list"
        for item in items:
            assert item["data"] == {"tenant": caller.id}, (kind, caller.id, item)
            assert everyone.get(item["id"], caller.id) == caller.id
