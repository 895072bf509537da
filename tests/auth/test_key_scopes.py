"""Least privilege per key: a key may be limited to some scopes and to some source networks;
a request outside them gets the one 403 (the operator's audit log says which check failed),
the limits show in the key's record, survive rotation, and bad ones are a 422."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tenantgate.identity.responses import FORBIDDEN_BODY

pytestmark = pytest.mark.servers

ALL = ["items:read", "items:write", "files:read", "files:write", "cache:read", "cache:write",
       "audit:read"]  # fmt: skip


def _key(service: Any, admin_headers: dict[str, str], tenant: Any, **body: Any) -> dict[str, Any]:
    answer = service.post(f"/admin/v1/tenants/{tenant.id}/keys", json=body, headers=admin_headers)
    assert answer.status_code == 201, answer.text
    key: dict[str, Any] = answer.json()
    return key


def _bearer(key: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {key['key']}"}


def test_a_read_only_key_reads_and_is_refused_every_write(
    service: Any, make_tenant: Any, admin_headers: dict[str, str]
) -> None:
    tenant = make_tenant(plan="pro")
    item = service.post("/v1/items", json={"data": {}}, headers=tenant.headers).json()
    reader = _key(service, admin_headers, tenant, scopes=["items:read", "cache:read"])
    assert reader["scopes"] == ["items:read", "cache:read"]
    headers = _bearer(reader)

    assert service.get("/v1/me", headers=headers).status_code == 200
    assert service.get(f"/v1/items/{item['id']}", headers=headers).status_code == 200
    assert service.get("/v1/items", headers=headers).status_code == 200
    assert service.get("/v1/cache/k", headers=headers).status_code == 404
    for method, path, body in (
        ("POST", "/v1/items", {"data": {}}),
        ("PUT", f"/v1/items/{item['id']}", {"data": {"x": 1}}),
        ("DELETE", f"/v1/items/{item['id']}", None),
        ("PUT", "/v1/cache/k", {"value": 1}),
        ("GET", "/v1/audit", None),
    ):
        answer = service.request(method, path, json=body, headers=headers)
        assert (answer.status_code, answer.content) == (403, FORBIDDEN_BODY), (method, path)
    assert service.get(f"/v1/items/{item['id']}", headers=tenant.headers).json() == item


def test_a_refusal_for_scope_is_explained_to_the_operator_only(
    service: Any, make_tenant: Any, admin_headers: dict[str, str]
) -> None:
    tenant = make_tenant()
    reader = _key(service, admin_headers, tenant, scopes=["items:read"])
    assert service.post("/v1/items", json={"data": {}}, headers=_bearer(reader)).status_code == 403

    deadline = time.monotonic() + 10
    while True:
        records = service.get(
            "/admin/v1/audit", params={"limit": 50}, headers=admin_headers
        ).json()["records"]
        refusals = [r for r in records if r["operation"].get("key_id") == reader["id"]]
        if refusals:
            break
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert refusals[0]["operation"]["refused"] == "scope items:write"
    assert refusals[0]["tenant_id"] is None  # the operator's chain: the tenant never sees it
    own = service.get("/v1/audit", headers=tenant.headers).json()["records"]
    assert not any(r["operation"].get("refused") for r in own)


def test_a_key_limited_to_networks_works_only_from_them(
    served: str, service: Any, make_tenant: Any, admin_headers: dict[str, str]
) -> None:
    tenant = make_tenant()
    local = _key(service, admin_headers, tenant, allowed_cidrs=["127.0.0.0/8", "::1/128"])
    remote = _key(service, admin_headers, tenant, allowed_cidrs=["10.1.2.3/8"])
    assert remote["allowed_cidrs"] == ["10.0.0.0/8"]

    assert httpx.get(served + "/v1/me", headers=_bearer(local)).status_code == 200
    refused = httpx.get(served + "/v1/me", headers=_bearer(remote))
    assert (refused.status_code, refused.content) == (403, FORBIDDEN_BODY)


def test_requests_refused_for_scope_or_network_spend_none_of_the_tenants_budget(
    served: str, service: Any, make_tenant: Any, admin_headers: dict[str, str]
) -> None:
    """A leaked restricted key, used from the wrong network or for the wrong thing, cannot
    drain its tenant's rate limit: refusals are decided before a token is taken."""
    tenant = make_tenant(plan="free")  # burst 20
    remote = _key(service, admin_headers, tenant, allowed_cidrs=["10.0.0.0/8"])
    reader = _key(service, admin_headers, tenant, scopes=["items:read"])
    with httpx.Client(base_url=served) as client:
        for _ in range(30):
            assert client.get("/v1/me", headers=_bearer(remote)).status_code == 403
            assert client.get("/v1/cache/k", headers=_bearer(reader)).status_code == 403
        answer = client.get("/v1/me", headers=tenant.headers)
    assert answer.status_code == 200
    assert int(answer.headers["RateLimit-Remaining"]) >= 18


def test_rotation_keeps_the_limits(
    service: Any, make_tenant: Any, admin_headers: dict[str, str]
) -> None:
    tenant = make_tenant()
    limited = _key(service, admin_headers, tenant, scopes=["cache:read"], allowed_cidrs=["::/0"])
    rotated = service.post(
        f"/admin/v1/tenants/{tenant.id}/keys/{limited['id']}/rotate", json={},
        headers=admin_headers,
    )  # fmt: skip
    assert rotated.status_code == 201, rotated.text
    assert rotated.json()["scopes"] == ["cache:read"]
    assert rotated.json()["allowed_cidrs"] == ["::/0"]
    assert tenant.body["api_key"]["scopes"] == ALL
    assert tenant.body["api_key"]["allowed_cidrs"] == []


@pytest.mark.parametrize(
    "body",
    [
        {"scopes": []},
        {"scopes": ["items:admin"]},
        {"scopes": ["items:read", "items:read"]},
        {"scopes": "items:read"},
        {"allowed_cidrs": ["not a network"]},
        {"allowed_cidrs": ["10.0.0.0/33"]},
        {"allowed_cidrs": "10.0.0.0/8"},
    ],
)
def test_bad_limits_are_422(
    body: dict[str, Any], service: Any, make_tenant: Any, admin_headers: dict[str, str]
) -> None:
    tenant = make_tenant()
    answer = service.post(f"/admin/v1/tenants/{tenant.id}/keys", json=body, headers=admin_headers)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"]


def test_a_files_read_key_cannot_write_nor_presign_a_write(
    service: Any, make_tenant: Any, admin_headers: dict[str, str]
) -> None:
    tenant = make_tenant()
    typed = {**tenant.headers, "Content-Type": "text/plain"}
    stored = service.put("/v1/files/a.txt", content=b"hello", headers=typed)
    assert stored.status_code == 201, stored.text
    headers = _bearer(_key(service, admin_headers, tenant, scopes=["files:read"]))

    assert service.get("/v1/files/a.txt", headers=headers).content == b"hello"
    assert service.get("/v1/files", headers=headers).status_code == 200
    read_url = service.post("/v1/files/a.txt/presign", json={"method": "GET"}, headers=headers)
    assert read_url.status_code == 200, read_url.text
    for answer in (
        service.put("/v1/files/b.txt", content=b"x", headers=headers),
        service.delete("/v1/files/a.txt", headers=headers),
        service.post("/v1/files/a.txt/presign", json={"method": "PUT"}, headers=headers),
    ):
        assert (answer.status_code, answer.content) == (403, FORBIDDEN_BODY)
