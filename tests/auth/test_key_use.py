"""A key's use is recorded (`last_used_at`) in batches, off the request path, and a refused
key's use never is: a revoked key's lookup is the same read as an unknown key's."""

from __future__ import annotations

import time
from typing import Any

import pytest

pytestmark = pytest.mark.servers


def _keys(service: Any, admin_headers: dict[str, str], tenant_id: str) -> dict[str, Any]:
    answer = service.get(f"/admin/v1/tenants/{tenant_id}/keys", headers=admin_headers)
    assert answer.status_code == 200, answer.text
    return {key["id"]: key for key in answer.json()["keys"]}


def test_a_used_key_gets_last_used_at_within_seconds(
    service: Any, make_tenant: Any, admin_headers: dict[str, str]
) -> None:
    tenant = make_tenant()
    assert _keys(service, admin_headers, tenant.id)[tenant.key_id]["last_used_at"] is None
    assert service.get("/v1/me", headers=tenant.headers).status_code == 200

    deadline = time.monotonic() + 10
    while _keys(service, admin_headers, tenant.id)[tenant.key_id]["last_used_at"] is None:
        assert time.monotonic() < deadline, "last_used_at was never recorded"
        time.sleep(0.2)


def test_a_revoked_key_is_refused_without_a_write(
    service: Any, make_tenant: Any, admin_headers: dict[str, str]
) -> None:
    tenant = make_tenant()
    keys_path = f"/admin/v1/tenants/{tenant.id}/keys"
    second = service.post(keys_path, json={"name": "spare"}, headers=admin_headers).json()
    assert service.delete(f"{keys_path}/{second['id']}", headers=admin_headers).status_code == 204

    headers = {"Authorization": f"Bearer {second['key']}"}
    for _ in range(3):
        assert service.get("/v1/me", headers=headers).status_code == 403
        time.sleep(1.1)  # past the key record's lifetime: each one is a fresh lookup
    assert _keys(service, admin_headers, tenant.id)[second["id"]]["last_used_at"] is None
