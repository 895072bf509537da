"""PostgreSQL dropping every pooled connection (pg_terminate_backend, a failover, a proxy's
idle timeout) costs clients nothing: the first round trip on a dead connection is retried on
a fresh one, and no request fails."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import asyncpg
import pytest

pytestmark = pytest.mark.servers


async def _terminate_service_connections(admin_url: str, service_role: str) -> int:
    connection = await asyncpg.connect(admin_url)
    try:
        killed: int = await connection.fetchval(
            "SELECT count(*) FROM ("
            " SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE usename = $1 AND pid <> pg_backend_pid()) AS terminated",
            service_role,
        )
        return killed
    finally:
        await connection.close()


def test_killing_every_pooled_connection_costs_clients_no_error(
    service, make_tenant, admin_headers, postgres_admin_url, service_settings
):
    tenants = [make_tenant(plan="enterprise") for _ in range(3)]
    items = {}
    for tenant in tenants:
        made = service.post("/v1/items", json={"data": {"of": tenant.id}}, headers=tenant.headers)
        assert made.status_code == 201, made.text
        items[tenant.id] = made.json()["id"]
    service_role = urlsplit(service_settings.database.url).username

    def requests_of_every_kind():
        answers = []
        for tenant in tenants:
            answers.append(service.get(f"/v1/items/{items[tenant.id]}", headers=tenant.headers))
            answers.append(service.get("/v1/items", headers=tenant.headers))
            answers.append(
                service.put(
                    f"/v1/items/{items[tenant.id]}",
                    json={"data": {"of": tenant.id, "again": True}},
                    headers=tenant.headers,
                )
            )
        answers.append(service.get("/admin/v1/tenants?limit=5", headers=admin_headers))
        answers.append(service.get(f"/admin/v1/tenants/{tenants[0].id}", headers=admin_headers))
        answers.append(service.get("/admin/v1/plans", headers=admin_headers))
        # A key the instance has not cached yet: its lookup is a read on a pooled connection.
        fresh = service.post(
            f"/admin/v1/tenants/{tenants[1].id}/keys", json={}, headers=admin_headers
        )
        answers.append(fresh)
        answers.append(
            service.get("/v1/me", headers={"Authorization": f"Bearer {fresh.json()['key']}"})
        )
        return answers

    for _round in range(3):
        # Fill the pool with several open connections: concurrent requests.
        with ThreadPoolExecutor(max_workers=6) as pool:
            warm = list(
                pool.map(lambda t: service.get("/v1/items", headers=t.headers), tenants * 4)
            )
        assert all(answer.status_code == 200 for answer in warm)

        killed = asyncio.run(_terminate_service_connections(postgres_admin_url, service_role))
        assert killed >= 1

        answers = requests_of_every_kind()
        failures = [
            (a.request.method, a.request.url.path, a.status_code, a.text)
            for a in answers
            if a.status_code >= 400
        ]
        assert failures == []
