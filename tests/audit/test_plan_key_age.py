"""A plan's maximum key age: a key made without an expiry gets it, a longer one is refused,
and a rotation's successor lives no longer (issue 10, "Keys")."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

pytestmark = pytest.mark.servers

DAY = timedelta(days=1)


def _lives(key: dict[str, Any]) -> timedelta:
    return datetime.fromisoformat(key["expires_at"].replace("Z", "+00:00")) - datetime.now(UTC)


def _plan(service: Any, admin_headers: dict[str, str], max_key_age_days: int | None) -> str:
    name = f"aged-{uuid.uuid4().hex[:8]}"
    body = {"rate_per_second": 100, "burst": 200, "max_key_age_days": max_key_age_days}
    answer = service.put(f"/admin/v1/plans/{name}", json=body, headers=admin_headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["max_key_age_days"] == max_key_age_days
    return name


def test_keys_made_on_a_plan_with_a_maximum_age_live_no_longer(
    service: Any, admin_headers: dict[str, str], make_tenant: Any
) -> None:
    plan = _plan(service, admin_headers, 30)
    listed = service.get("/admin/v1/plans", headers=admin_headers).json()["plans"]
    assert [p["max_key_age_days"] for p in listed if p["name"] == plan] == [30]
    tenant = make_tenant(plan=plan)
    assert 29 * DAY < _lives(tenant.body["api_key"]) <= 30 * DAY

    keys = f"/admin/v1/tenants/{tenant.id}/keys"
    unbounded = service.post(keys, json={}, headers=admin_headers)
    assert unbounded.status_code == 201, unbounded.text
    assert 29 * DAY < _lives(unbounded.json()) <= 30 * DAY

    shorter = service.post(keys, json={"expires_in_seconds": 3600}, headers=admin_headers)
    assert shorter.status_code == 201
    assert _lives(shorter.json()) <= timedelta(hours=1)

    longer = {"expires_in_seconds": int((31 * DAY).total_seconds())}
    refused = service.post(keys, json=longer, headers=admin_headers)
    assert refused.status_code == 422
    assert "30 days" in refused.json()["detail"]


def test_a_rotated_key_s_successor_lives_at_most_the_plan_s_maximum_age(
    service: Any, admin_headers: dict[str, str], make_tenant: Any
) -> None:
    unbounded_plan = _plan(service, admin_headers, None)
    tenant = make_tenant(plan=unbounded_plan)
    assert tenant.body["api_key"]["expires_at"] is None

    # The plan gets a maximum age later: the next rotation brings the key within it.
    bounded = {"rate_per_second": 100, "burst": 200, "max_key_age_days": 7}
    assert service.put(
        f"/admin/v1/plans/{unbounded_plan}", json=bounded, headers=admin_headers
    ).is_success
    rotated = service.post(
        f"/admin/v1/tenants/{tenant.id}/keys/{tenant.key_id}/rotate", headers=admin_headers
    )
    assert rotated.status_code == 201, rotated.text
    assert 6 * DAY < _lives(rotated.json()) <= 7 * DAY
    successor = {"Authorization": f"Bearer {rotated.json()['key']}"}
    assert service.get("/v1/me", headers=successor).status_code == 200


@pytest.mark.parametrize("age", [0, -1, 3651, 1.5, "30"])
def test_a_maximum_key_age_out_of_bounds_is_refused(
    service: Any, admin_headers: dict[str, str], age: Any
) -> None:
    body = {"rate_per_second": 1, "burst": 1, "max_key_age_days": age}
    answer = service.put(
        f"/admin/v1/plans/bad-{uuid.uuid4().hex[:8]}", json=body, headers=admin_headers
    )
    assert answer.status_code == 422, answer.text
    assert "max_key_age_days" in answer.json()["detail"]
