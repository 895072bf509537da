"""Plans set rate limits with bursts; every tenant response says where the caller stands."""

from __future__ import annotations

import time
import uuid

import pytest

pytestmark = pytest.mark.servers

RATE_LIMIT_HEADERS = {
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
    "ratelimit-policy",
    "ratelimit",
}


@pytest.fixture
def slow_plan(service, admin_headers):
    """A plan of its own per test: 3 requests at once, then one every 10 s."""
    name = f"slow-{uuid.uuid4().hex[:8]}"
    answer = service.put(
        f"/admin/v1/plans/{name}", json={"rate_per_second": 0.1, "burst": 3}, headers=admin_headers
    )
    assert answer.status_code == 200, answer.text
    return name


def test_every_tenant_response_carries_the_rate_limit_headers(service, make_tenant):
    tenant = make_tenant(plan="pro")
    answers = [
        service.get("/v1/me", headers=tenant.headers),
        service.get(f"/v1/items/{uuid.uuid4()}", headers=tenant.headers),  # 404
        service.post("/v1/items", json={"data": 1}, headers=tenant.headers),  # 422
    ]
    for answer in answers:
        assert set(answer.headers) >= RATE_LIMIT_HEADERS, (answer.status_code, answer.headers)
        assert answer.headers["ratelimit-limit"] == "200"
        assert answer.headers["ratelimit-policy"] == '"pro";q=200;w=2'


def test_remaining_counts_down_with_each_request(service, make_tenant, slow_plan):
    tenant = make_tenant(plan=slow_plan)
    remaining = [
        int(service.get("/v1/me", headers=tenant.headers).headers["ratelimit-remaining"])
        for _ in range(3)
    ]
    assert remaining == [2, 1, 0]


def test_past_the_burst_the_answer_is_429_with_retry_after(service, make_tenant, slow_plan):
    tenant = make_tenant(plan=slow_plan)
    for _ in range(3):
        assert service.get("/v1/me", headers=tenant.headers).status_code == 200

    refused = service.get("/v1/me", headers=tenant.headers)

    assert refused.status_code == 429
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["status"] == 429
    assert "detail" in refused.json()
    assert 1 <= int(refused.headers["retry-after"]) <= 10
    assert refused.headers["ratelimit-remaining"] == "0"
    assert f'"{slow_plan}";r=0;' in refused.headers["ratelimit"]


def test_a_refused_request_does_not_reach_the_handler(service, make_tenant, slow_plan):
    tenant = make_tenant(plan=slow_plan)
    for _ in range(3):
        service.get("/v1/me", headers=tenant.headers)
    refused = service.post("/v1/items", json={"data": {"x": 1}}, headers=tenant.headers)
    assert refused.status_code == 429
    # One token comes back after 10 s; then the listing shows nothing was stored.
    time.sleep(10.1)
    listing = service.get("/v1/items", headers=tenant.headers)
    assert listing.status_code == 200
    assert listing.json()["items"] == []


def test_each_tenant_has_its_own_bucket(service, make_tenant, slow_plan):
    first, second = make_tenant(plan=slow_plan), make_tenant(plan=slow_plan)
    for _ in range(4):
        service.get("/v1/me", headers=first.headers)
    assert service.get("/v1/me", headers=first.headers).status_code == 429
    assert service.get("/v1/me", headers=second.headers).status_code == 200


def test_all_keys_of_a_tenant_share_its_bucket(service, make_tenant, admin_headers, slow_plan):
    tenant = make_tenant(plan=slow_plan)
    second_key = service.post(
        f"/admin/v1/tenants/{tenant.id}/keys", json={}, headers=admin_headers
    ).json()["key"]
    for _ in range(3):
        service.get("/v1/me", headers=tenant.headers)
    answer = service.get("/v1/me", headers={"Authorization": f"Bearer {second_key}"})
    assert answer.status_code == 429


def test_a_plan_change_applies_to_its_tenants_within_a_second(
    service, make_tenant, admin_headers, slow_plan
):
    tenant = make_tenant(plan=slow_plan)
    for _ in range(3):
        service.get("/v1/me", headers=tenant.headers)
    assert service.get("/v1/me", headers=tenant.headers).status_code == 429

    changed = service.put(
        f"/admin/v1/plans/{slow_plan}",
        json={"rate_per_second": 1000, "burst": 2000},
        headers=admin_headers,
    )
    assert changed.status_code == 200

    deadline = time.monotonic() + 1.0
    while service.get("/v1/me", headers=tenant.headers).status_code == 429:
        assert time.monotonic() < deadline, "the new plan did not apply within 1 s"
        time.sleep(0.05)
    assert service.get("/v1/me", headers=tenant.headers).headers["ratelimit-limit"] == "2000"


def test_moving_a_tenant_to_another_plan_applies_at_once(
    service, make_tenant, admin_headers, slow_plan
):
    tenant = make_tenant(plan=slow_plan)
    for _ in range(4):
        service.get("/v1/me", headers=tenant.headers)
    moved = service.patch(
        f"/admin/v1/tenants/{tenant.id}", json={"plan": "enterprise"}, headers=admin_headers
    )
    assert moved.status_code == 200
    # The debt of the old plan is capped at the new plan's burst: at 1,000/s the next token
    # is a millisecond away.
    deadline = time.monotonic() + 0.5
    while (answer := service.get("/v1/me", headers=tenant.headers)).status_code == 429:
        assert time.monotonic() < deadline, "the new plan did not apply"
        time.sleep(0.002)
    assert answer.status_code == 200
    assert answer.headers["ratelimit-limit"] == "2000"


def test_refused_authentication_carries_no_rate_limit_headers(service):
    answer = service.get("/v1/me", headers={"Authorization": "Bearer nonsense"})
    assert answer.status_code == 403
    assert not RATE_LIMIT_HEADERS & set(answer.headers)
