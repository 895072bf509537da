"""Keys nearing expiry: `GET /admin/v1/keys/due` lists them, soonest first, and `tenantgate keys
rotate-due` gives each a successor once (a rotated key is no longer due), printing the new
secret and announcing the rotation to running instances; the old key keeps working through
its grace period."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
import redis

from tenantgate.cli import ExitCode
from tenantgate.cli.keys import run_rotate_due
from tenantgate.naming import ANNOUNCEMENTS_CHANNEL

pytestmark = pytest.mark.servers


def _key(service: Any, admin_headers: dict[str, str], tenant: Any, **body: Any) -> dict[str, Any]:
    answer = service.post(f"/admin/v1/tenants/{tenant.id}/keys", json=body, headers=admin_headers)
    assert answer.status_code == 201, answer.text
    key: dict[str, Any] = answer.json()
    return key


def _due(service: Any, admin_headers: dict[str, str], **query: Any) -> list[str]:
    answer = service.get("/admin/v1/keys/due", params=query, headers=admin_headers)
    assert answer.status_code == 200, answer.text
    return [key["id"] for key in answer.json()["keys"]]


def test_due_keys_are_listed_and_rotated_once(
    service: Any, make_tenant: Any, admin_headers: dict[str, str], service_environment: Any
) -> None:
    tenant = make_tenant()
    soon = _key(service, admin_headers, tenant, expires_in_seconds=2 * 86400)
    sooner = _key(service, admin_headers, tenant, expires_in_seconds=86400)
    later = _key(service, admin_headers, tenant, expires_in_seconds=30 * 86400)

    due = _due(service, admin_headers)
    assert due.index(sooner["id"]) < due.index(soon["id"])
    assert later["id"] not in due
    assert later["id"] in _due(service, admin_headers, within_days=31)
    assert (
        service.get(
            "/admin/v1/keys/due", params={"within_days": -1}, headers=admin_headers
        ).status_code
        == 422
    )

    listener = redis.Redis.from_url(service_environment["TENANTGATE_REDIS_URL"]).pubsub()
    listener.subscribe(ANNOUNCEMENTS_CHANNEL)
    out = io.StringIO()
    code = run_rotate_due(environ=service_environment, stdout=out, stderr=io.StringIO())
    assert code == ExitCode.OK
    announced = set()
    while (message := listener.get_message(timeout=1.0)) is not None:
        if message["type"] == "message":
            announced.add(message["data"].decode())
    listener.close()
    # Running instances may trust the old keys' records for a minute: they must hear of it.
    assert {f"key:{soon['id']}", f"key:{sooner['id']}"} <= announced
    rotations = [json.loads(line) for line in out.getvalue().splitlines()]
    mine = {r["rotated_key_id"]: r for r in rotations if r["tenant_id"] == tenant.id}
    assert set(mine) == {soon["id"], sooner["id"]}
    for old in (soon, sooner):
        new_key = mine[old["id"]]["new_key"]
        headers = {"Authorization": f"Bearer {new_key['key']}"}
        assert service.get("/v1/me", headers=headers).status_code == 200
        old_headers = {"Authorization": f"Bearer {old['key']}"}
        assert service.get("/v1/me", headers=old_headers).status_code == 200  # its grace

    assert {soon["id"], sooner["id"]}.isdisjoint(_due(service, admin_headers))
    again = io.StringIO()
    assert run_rotate_due(environ=service_environment, stdout=again, stderr=io.StringIO()) == 0
    assert tenant.id not in again.getvalue()
