"""A pooled Redis connection never carries a tenant's user or database past the tenant's own
round trip: between requests, every connection of the service is its own user in database 0
— also after round trips that failed half-way."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from tenantgate.dev.redis import SERVICE_USER

pytestmark = pytest.mark.servers


def _service_connections(redis_server: Any) -> list[dict[str, str]]:
    """`CLIENT LIST` of every connection but the inspecting one, as dictionaries."""
    admin = redis_server.client()
    try:
        me = admin.client_id()
        return [client for client in admin.client_list() if int(client["id"]) != me]
    finally:
        admin.close()


def test_connections_are_the_services_between_requests(own_redis: Any, app_on: Any) -> None:
    redis_server = own_redis()
    app = app_on(redis_server)
    tenants = [app.make_tenant(tier=tier, plan="pro") for tier in ("standard", "enterprise")] * 2
    for round_number in range(5):
        for tenant in tenants:
            body = {"value": round_number}
            assert app.put("/v1/cache/k", json=body, headers=tenant["headers"]).status_code == 204
            assert app.get("/v1/cache/k", headers=tenant["headers"]).status_code == 200
        created = app.post("/v1/items", json={"data": {}}, headers=tenants[1]["headers"])
        assert app.get(f"/v1/items/{created.json()['id']}", headers=tenants[1]["headers"])

    connections = _service_connections(redis_server)
    assert connections, "the service keeps its connections pooled"
    assert {(c["user"], c["db"]) for c in connections} == {(SERVICE_USER, "0")}


def test_a_round_trip_cut_short_does_not_return_its_connection(own_redis: Any, app_on: Any) -> None:
    redis_server = own_redis()
    app = app_on(redis_server)  # TENANTGATE_REDIS_TIMEOUT=0.3
    tenant = app.make_tenant(tier="enterprise", plan="pro")
    assert app.put("/v1/cache/k", json={"value": 1}, headers=tenant["headers"]).status_code == 204

    admin = redis_server.client()
    sleeper = threading.Thread(target=lambda: admin.execute_command("DEBUG", "SLEEP", "1"))
    sleeper.start()
    try:
        time.sleep(0.1)
        assert app.get("/v1/cache/k", headers=tenant["headers"]).status_code == 503
    finally:
        sleeper.join()
        admin.close()
    time.sleep(1.1)  # the second for which Redis counts as down

    assert app.get("/v1/cache/k", headers=tenant["headers"]).json()["value"] == 1
    connections = _service_connections(redis_server)
    assert {(c["user"], c["db"]) for c in connections} == {(SERVICE_USER, "0")}
