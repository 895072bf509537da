"""The operator's API for tenants, keys and plans, checked against API.md field by field."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

pytestmark = pytest.mark.servers

TENANT_FIELDS = {"id", "name", "plan", "tier", "status", "custom_domain", "created_at"}
KEY_FIELDS = {
    "id",
    "tenant_id",
    "name",
    "prefix",
    "hsm",
    "scopes",
    "allowed_cidrs",
    "status",
    "created_at",
    "expires_at",
    "last_used_at",
}
NEW_KEY_FIELDS = KEY_FIELDS | {"key"}
PLAN_FIELDS = {"name", "rate_per_second", "burst", "max_key_age_days"}
PROBLEM = "application/problem+json"


def _time(text: str) -> datetime:
    """An RFC 3339 UTC time as API.md promises: parseable, with an offset of zero."""
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert parsed.utcoffset() == timedelta(0), text
    return parsed


def _domain() -> str:
    return f"api-{uuid.uuid4().hex[:10]}.example.com"


def _is_problem(answer: Any, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = answer.json()
    assert body["status"] == status
    return body


# -- tenants -------------------------------------------------------------------------------


def test_creating_a_tenant_answers_tenant_and_new_key_exactly(service, admin_headers):
    answer = service.post(
        "/admin/v1/tenants",
        json={"name": "Shape Co", "plan": "pro"},
        headers=admin_headers,
    )

    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert set(body) == {"tenant", "api_key"}
    tenant, key = body["tenant"], body["api_key"]
    assert set(tenant) == TENANT_FIELDS
    assert uuid.UUID(tenant["id"]).version == 4
    assert (tenant["name"], tenant["plan"], tenant["tier"], tenant["status"]) == (
        "Shape Co",
        "pro",
        "standard",
        "active",
    )
    assert tenant["custom_domain"] is None
    assert abs(_time(tenant["created_at"]) - datetime.now(UTC)) < timedelta(minutes=1)

    assert set(key) == NEW_KEY_FIELDS
    assert key["tenant_id"] == tenant["id"]
    assert uuid.UUID(key["id"]).version == 4
    assert key["hsm"] is False
    assert key["status"] == "active"
    assert key["expires_at"] is None
    assert key["last_used_at"] is None
    assert key["key"].startswith(key["prefix"])
    _time(key["created_at"])


def test_defaults_are_free_and_standard(service, admin_headers):
    answer = service.post("/admin/v1/tenants", json={"name": "defaults"}, headers=admin_headers)
    assert answer.status_code == 201, answer.text
    tenant = answer.json()["tenant"]
    assert (tenant["plan"], tenant["tier"]) == ("free", "standard")


@pytest.mark.pgbouncer
def test_get_patch_and_delete_a_tenant(service, admin_headers, make_tenant):
    tenant = make_tenant(name="before")
    path = f"/admin/v1/tenants/{tenant.id}"

    fetched = service.get(path, headers=admin_headers)
    assert fetched.status_code == 200
    assert fetched.json() == tenant.body["tenant"]

    renamed = service.patch(path, json={"name": "after", "plan": "pro"}, headers=admin_headers)
    assert renamed.status_code == 200, renamed.text
    assert set(renamed.json()) == TENANT_FIELDS
    assert renamed.json() == {**tenant.body["tenant"], "name": "after", "plan": "pro"}
    assert service.get(path, headers=admin_headers).json()["name"] == "after"
    me = service.get("/v1/me", headers=tenant.headers)
    assert me.json()["plan"] == "pro"

    suspended = service.patch(path, json={"status": "suspended"}, headers=admin_headers)
    assert suspended.status_code == 200
    assert suspended.json()["status"] == "suspended"
    assert service.get("/v1/me", headers=tenant.headers).status_code == 403
    active = service.patch(path, json={"status": "active"}, headers=admin_headers)
    assert active.json()["status"] == "active"
    assert service.get("/v1/me", headers=tenant.headers).status_code == 200

    unchanged = service.patch(path, json={}, headers=admin_headers)
    assert unchanged.status_code == 200
    assert unchanged.json() == active.json()

    assert service.delete(path, headers=admin_headers).status_code == 204
    for answer in (
        service.get(path, headers=admin_headers),
        service.patch(path, json={"name": "x"}, headers=admin_headers),
        service.delete(path, headers=admin_headers),
        service.get(f"{path}/keys", headers=admin_headers),
        service.post(f"{path}/keys", json={}, headers=admin_headers),
    ):
        _is_problem(answer, 404)


def test_an_unknown_tenant_is_404_everywhere(service, admin_headers):
    path = f"/admin/v1/tenants/{uuid.uuid4()}"
    key_path = f"{path}/keys/{uuid.uuid4()}"
    for answer in (
        service.get(path, headers=admin_headers),
        service.patch(path, json={"name": "x"}, headers=admin_headers),
        service.delete(path, headers=admin_headers),
        service.get(f"{path}/keys", headers=admin_headers),
        service.post(f"{path}/keys", json={}, headers=admin_headers),
        service.post(f"{key_path}/rotate", json={}, headers=admin_headers),
        service.delete(key_path, headers=admin_headers),
    ):
        _is_problem(answer, 404)


def test_listing_tenants_walks_every_tenant_once_oldest_first(service, admin_headers, make_tenant):
    made = [make_tenant(name=f"walk {n}").id for n in range(5)]

    seen: list[dict[str, Any]] = []
    cursors: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor is not None:
            params["cursor"] = cursor
        page = service.get("/admin/v1/tenants", params=params, headers=admin_headers)
        assert page.status_code == 200, page.text
        body = page.json()
        assert set(body) == {"tenants", "next_cursor"}
        assert 1 <= len(body["tenants"]) <= 2
        for tenant in body["tenants"]:
            assert set(tenant) == TENANT_FIELDS
        seen.extend(body["tenants"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
        assert isinstance(cursor, str)
        cursors.append(cursor)
        assert len(seen) < 100_000, "the walk never ends"

    ids = [tenant["id"] for tenant in seen]
    assert len(ids) == len(set(ids)), "a tenant appeared twice"
    assert set(made) <= set(ids)
    keys = [(_time(tenant["created_at"]), tenant["id"]) for tenant in seen]
    assert keys == sorted(keys)
    assert [id_ for id_ in ids if id_ in made] == made  # in creation order

    everything = service.get("/admin/v1/tenants", params={"limit": 100}, headers=admin_headers)
    if everything.json()["next_cursor"] is None:
        assert [tenant["id"] for tenant in everything.json()["tenants"]] == ids

    # Stable: the same cursor gives the same page again.
    again = service.get(
        "/admin/v1/tenants", params={"limit": 2, "cursor": cursors[0]}, headers=admin_headers
    )
    assert [t["id"] for t in again.json()["tenants"]] == ids[2:4]
    # Opaque: not a tenant id or a timestamp in clear.
    for cursor_text in cursors:
        assert not any(tenant_id in cursor_text for tenant_id in ids)
        assert not any(tenant_id.replace("-", "") in cursor_text for tenant_id in ids)
        assert not re.search(r"\d{4}-\d{2}-\d{2}", cursor_text)


def test_custom_domains_are_for_enterprise_tenants_only(service, admin_headers, make_tenant):
    refused = service.post(
        "/admin/v1/tenants",
        json={"name": "std", "tier": "standard", "custom_domain": _domain()},
        headers=admin_headers,
    )
    assert "detail" in _is_problem(refused, 422)

    standard = make_tenant()
    patched = service.patch(
        f"/admin/v1/tenants/{standard.id}",
        json={"custom_domain": _domain()},
        headers=admin_headers,
    )
    assert "detail" in _is_problem(patched, 422)

    domain = _domain()
    enterprise = make_tenant(tier="enterprise", plan="enterprise", custom_domain=domain.upper())
    assert enterprise.body["tenant"]["custom_domain"] == domain  # case-folded
    moved = _domain()
    answer = service.patch(
        f"/admin/v1/tenants/{enterprise.id}", json={"custom_domain": moved}, headers=admin_headers
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["custom_domain"] == moved
    cleared = service.patch(
        f"/admin/v1/tenants/{enterprise.id}", json={"custom_domain": None}, headers=admin_headers
    )
    assert cleared.status_code == 200
    assert cleared.json()["custom_domain"] is None


def test_a_taken_domain_is_409_case_insensitively(service, admin_headers, make_tenant):
    domain = _domain()
    owner = make_tenant(tier="enterprise", custom_domain=domain)

    clash = service.post(
        "/admin/v1/tenants",
        json={"name": "clash", "tier": "enterprise", "custom_domain": domain.upper()},
        headers=admin_headers,
    )
    _is_problem(clash, 409)

    other = make_tenant(tier="enterprise")
    patched = service.patch(
        f"/admin/v1/tenants/{other.id}",
        json={"custom_domain": domain.title() + "."},
        headers=admin_headers,
    )
    _is_problem(patched, 409)
    # The owner keeps it, and may set it again.
    same = service.patch(
        f"/admin/v1/tenants/{owner.id}", json={"custom_domain": domain}, headers=admin_headers
    )
    assert same.status_code == 200
    assert same.json()["custom_domain"] == domain


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "plan": "no-such-plan"},
        {"name": "x", "plan": "Not A Plan"},
        {"name": "x", "tier": "platinum"},
        {"name": ""},
        {"name": "x" * 201},
        {"name": "x", "tier": "enterprise", "custom_domain": "not a domain"},
        {"name": "x", "tier": "enterprise", "custom_domain": "localhost"},
        {"name": "x", "status": "active"},
    ],
)
def test_invalid_tenants_are_refused_with_422(service, admin_headers, body):
    answer = service.post("/admin/v1/tenants", json=body, headers=admin_headers)
    assert "detail" in _is_problem(answer, 422)


@pytest.mark.parametrize(
    "patch",
    [
        {"plan": "no-such-plan"},
        {"status": "deleted"},
        {"status": None},
        {"name": None},
        {"tier": "enterprise"},
        {"id": str(uuid.uuid4())},
    ],
)
def test_invalid_patches_are_refused_with_422(service, admin_headers, make_tenant, patch):
    tenant = make_tenant()
    answer = service.patch(f"/admin/v1/tenants/{tenant.id}", json=patch, headers=admin_headers)
    assert "detail" in _is_problem(answer, 422)
    assert (
        service.get(f"/admin/v1/tenants/{tenant.id}", headers=admin_headers).json()
        == (tenant.body["tenant"])
    )


# -- keys ----------------------------------------------------------------------------------


@pytest.mark.pgbouncer
def test_keys_are_issued_listed_rotated_and_revoked(service, admin_headers, make_tenant):
    tenant = make_tenant()
    keys_path = f"/admin/v1/tenants/{tenant.id}/keys"

    issued = service.post(
        keys_path, json={"name": "ci", "expires_in_seconds": 3600}, headers=admin_headers
    )
    assert issued.status_code == 201, issued.text
    new_key = issued.json()
    assert set(new_key) == NEW_KEY_FIELDS
    assert (new_key["name"], new_key["tenant_id"], new_key["hsm"]) == ("ci", tenant.id, False)
    expires = _time(new_key["expires_at"]) - datetime.now(UTC)
    assert timedelta(minutes=59) < expires <= timedelta(hours=1)
    second = {"Authorization": f"Bearer {new_key['key']}"}
    assert service.get("/v1/me", headers=second).json()["key_id"] == new_key["id"]

    bare = service.post(keys_path, headers=admin_headers)  # no body at all
    assert bare.status_code == 201, bare.text
    assert bare.json()["name"] is None

    listed = service.get(keys_path, headers=admin_headers)
    assert listed.status_code == 200
    assert set(listed.json()) == {"keys"}
    keys = listed.json()["keys"]
    assert [key["id"] for key in keys] == [tenant.key_id, new_key["id"], bare.json()["id"]]
    for key in keys:
        assert set(key) == KEY_FIELDS  # never the secret, never a hash
    assert tenant.key not in listed.text
    assert new_key["key"] not in listed.text

    rotated = service.post(
        f"{keys_path}/{new_key['id']}/rotate", json={"grace_seconds": 60}, headers=admin_headers
    )
    assert rotated.status_code == 201, rotated.text
    successor = rotated.json()
    assert set(successor) == NEW_KEY_FIELDS
    assert successor["id"] != new_key["id"]
    assert successor["name"] == "ci"
    old = next(
        key
        for key in service.get(keys_path, headers=admin_headers).json()["keys"]
        if key["id"] == new_key["id"]
    )
    assert _time(old["expires_at"]) - datetime.now(UTC) <= timedelta(seconds=60)
    assert service.get("/v1/me", headers=second).status_code == 200  # still in its grace

    revoked = service.delete(f"{keys_path}/{new_key['id']}", headers=admin_headers)
    assert revoked.status_code == 204
    assert service.get("/v1/me", headers=second).status_code == 403
    statuses = {
        key["id"]: key["status"]
        for key in service.get(keys_path, headers=admin_headers).json()["keys"]
    }
    assert statuses[new_key["id"]] == "revoked"
    assert statuses[successor["id"]] == "active"
    # A revoked key cannot be rotated back to life.
    again = service.post(f"{keys_path}/{new_key['id']}/rotate", json={}, headers=admin_headers)
    _is_problem(again, 404)


def test_another_tenants_key_is_404_through_this_tenants_path(service, admin_headers, make_tenant):
    mine, theirs = make_tenant(), make_tenant()
    path = f"/admin/v1/tenants/{mine.id}/keys/{theirs.key_id}"
    _is_problem(service.post(f"{path}/rotate", json={}, headers=admin_headers), 404)
    _is_problem(service.delete(path, headers=admin_headers), 404)
    assert service.get("/v1/me", headers=theirs.headers).status_code == 200


def test_hsm_keys_are_422_without_an_hsm(service, admin_headers, make_tenant, service_settings):
    standard = make_tenant()
    answer = service.post(
        f"/admin/v1/tenants/{standard.id}/keys", json={"hsm": True}, headers=admin_headers
    )
    assert "detail" in _is_problem(answer, 422)
    if service_settings.hsm is None:
        enterprise = make_tenant(tier="enterprise")
        answer = service.post(
            f"/admin/v1/tenants/{enterprise.id}/keys", json={"hsm": True}, headers=admin_headers
        )
        assert "detail" in _is_problem(answer, 422)


@pytest.mark.parametrize(
    "body",
    [
        {"expires_in_seconds": 0},
        {"expires_in_seconds": -5},
        {"expires_in_seconds": "soon"},
        {"name": ""},
        {"hsm": "yes"},
        {"secret": "mine"},
    ],
)
def test_invalid_key_requests_are_422(service, admin_headers, make_tenant, body):
    tenant = make_tenant()
    answer = service.post(f"/admin/v1/tenants/{tenant.id}/keys", json=body, headers=admin_headers)
    assert "detail" in _is_problem(answer, 422)


def test_invalid_rotation_requests_are_422(service, admin_headers, make_tenant):
    tenant = make_tenant()
    path = f"/admin/v1/tenants/{tenant.id}/keys/{tenant.key_id}/rotate"
    for body in ({"grace_seconds": -1}, {"grace_seconds": "a day"}, {"grace": 1}):
        assert "detail" in _is_problem(service.post(path, json=body, headers=admin_headers), 422)
    assert service.get("/v1/me", headers=tenant.headers).status_code == 200


# -- plans ---------------------------------------------------------------------------------


def test_the_built_in_plans_are_listed_with_their_numbers(service, admin_headers):
    answer = service.get("/admin/v1/plans", headers=admin_headers)
    assert answer.status_code == 200
    assert set(answer.json()) == {"plans"}
    plans = {plan["name"]: plan for plan in answer.json()["plans"]}
    for plan in plans.values():
        assert set(plan) == PLAN_FIELDS
    assert plans["free"] == {
        "name": "free",
        "rate_per_second": 10,
        "burst": 20,
        "max_key_age_days": None,
    }
    assert plans["pro"] == {
        "name": "pro",
        "rate_per_second": 100,
        "burst": 200,
        "max_key_age_days": None,
    }
    assert plans["enterprise"] == {
        "name": "enterprise",
        "rate_per_second": 1000,
        "burst": 2000,
        "max_key_age_days": None,
    }


def test_put_plan_creates_then_updates(service, admin_headers, make_tenant):
    name = f"team-{uuid.uuid4().hex[:8]}"
    path = f"/admin/v1/plans/{name}"

    created = service.put(path, json={"rate_per_second": 2.5, "burst": 5}, headers=admin_headers)
    assert created.status_code == 200, created.text
    assert created.json() == {
        "name": name,
        "rate_per_second": 2.5,
        "burst": 5,
        "max_key_age_days": None,
    }

    updated = service.put(path, json={"rate_per_second": 50, "burst": 75}, headers=admin_headers)
    assert updated.status_code == 200
    assert updated.json() == {
        "name": name,
        "rate_per_second": 50,
        "burst": 75,
        "max_key_age_days": None,
    }

    listed = service.get("/admin/v1/plans", headers=admin_headers).json()["plans"]
    assert [plan for plan in listed if plan["name"] == name] == [updated.json()]

    # A tenant may now be put on it.
    tenant = make_tenant(plan=name)
    assert service.get("/v1/me", headers=tenant.headers).json()["plan"] == name


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("ok-name", {"rate_per_second": 0, "burst": 5}),
        ("ok-name", {"rate_per_second": -1, "burst": 5}),
        ("ok-name", {"rate_per_second": 1, "burst": 0}),
        ("ok-name", {"rate_per_second": 1, "burst": 1.5}),
        ("ok-name", {"rate_per_second": "fast", "burst": 5}),
        ("ok-name", {"burst": 5}),
        ("ok-name", {"rate_per_second": 1}),
        ("ok-name", {"rate_per_second": 1, "burst": 5, "extra": True}),
        ("Bad-Name", {"rate_per_second": 1, "burst": 5}),
        ("-leading-dash", {"rate_per_second": 1, "burst": 5}),
        ("x" * 64, {"rate_per_second": 1, "burst": 5}),
    ],
)
def test_invalid_plans_are_422(service, admin_headers, name, body):
    answer = service.put(f"/admin/v1/plans/{name}", json=body, headers=admin_headers)
    assert "detail" in _is_problem(answer, 422)
    plans = service.get("/admin/v1/plans", headers=admin_headers).json()["plans"]
    assert name not in {plan["name"] for plan in plans}
