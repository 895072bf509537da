"""PostgreSQL going away: clients get 503 with Retry-After, and service resumes by itself."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.servers

PROBLEM = "application/problem+json"


def _assert_unavailable(answer) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.headers["content-type"].startswith(PROBLEM)
    assert int(answer.headers["retry-after"]) >= 1
    assert answer.json()["status"] == 503


def test_an_outage_is_503_and_the_service_recovers_by_itself(
    service, make_tenant, admin_headers, embedded_stack
):
    tenant = make_tenant(plan="enterprise")
    item = service.post("/v1/items", json={"data": {"kept": True}}, headers=tenant.headers)
    assert item.status_code == 201
    item_id = item.json()["id"]
    late_key = service.post(
        f"/admin/v1/tenants/{tenant.id}/keys", json={}, headers=admin_headers
    ).json()["key"]

    embedded_stack.postgres.stop()
    try:
        # A key the instance knows: the handler's transaction cannot start.
        _assert_unavailable(service.get(f"/v1/items/{item_id}", headers=tenant.headers))
        # A key it has never seen: it cannot be looked up, which is not the caller's fault.
        _assert_unavailable(service.get("/v1/me", headers={"Authorization": f"Bearer {late_key}"}))
        # The operator's API too.
        _assert_unavailable(service.get("/admin/v1/tenants", headers=admin_headers))
        # Liveness is not readiness.
        assert service.get("/healthz").status_code == 200
        assert service.get("/readyz").status_code == 503
    finally:
        embedded_stack.postgres.start()

    deadline = time.monotonic() + 15
    while True:
        answer = service.get(f"/v1/items/{item_id}", headers=tenant.headers)
        if answer.status_code == 200:
            break
        assert answer.status_code == 503, answer.text
        assert time.monotonic() < deadline, "the service did not recover"
        time.sleep(0.2)
    assert answer.json()["data"] == {"kept": True}
    assert service.get("/v1/me", headers={"Authorization": f"Bearer {late_key}"}).status_code == 200
    assert service.get("/readyz").status_code == 200
