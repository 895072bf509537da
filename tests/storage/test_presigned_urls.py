"""Presigned URLs are signed with the tenant's own credentials and bound to one object, one
method, one expiry and (for a sized PUT) one size: S3 refuses every edit of them."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.servers


def _presign(service: Any, tenant: Any, path: str, **body: Any) -> Any:
    return service.post(f"/v1/files/{path}/presign", json=body, headers=tenant.headers)


def test_a_presigned_get_serves_the_file_and_nothing_else(make_tenant: Any, service: Any) -> None:
    a, b = make_tenant(), make_tenant(tier="enterprise")
    service.put("/v1/files/a.txt", content=b"a's", headers=a.headers)
    service.put("/v1/files/b.txt", content=b"b's", headers=b.headers)
    answer = _presign(service, a, "a.txt", method="GET", expires_in_seconds=60)
    assert answer.status_code == 200, answer.text
    presigned = answer.json()
    assert presigned["method"] == "GET"
    assert presigned["headers"] == {}
    assert presigned["expires_at"].endswith("Z")
    got = httpx.get(presigned["url"])
    assert got.status_code == 200
    assert got.content == b"a's"

    other_key = f"{b.id}/b.txt"  # another standard tenant's prefix in the shared bucket
    edited = presigned["url"].replace(f"{a.id}/a.txt", other_key)
    assert edited != presigned["url"]
    assert httpx.get(edited).status_code == 403
    assert httpx.put(presigned["url"], content=b"x").status_code == 403  # method is signed


def test_a_presigned_url_edited_to_another_tenants_object_is_refused(
    make_tenant: Any, service: Any
) -> None:
    a, b = make_tenant(), make_tenant()
    service.put("/v1/files/x.txt", content=b"a's", headers=a.headers)
    service.put("/v1/files/x.txt", content=b"b's", headers=b.headers)
    url = _presign(service, a, "x.txt", method="GET").json()["url"]
    assert httpx.get(url).content == b"a's"
    assert httpx.get(url.replace(a.id, b.id)).status_code == 403


def test_an_expired_url_is_refused(make_tenant: Any, service: Any) -> None:
    tenant = make_tenant()
    service.put("/v1/files/soon.txt", content=b"gone soon", headers=tenant.headers)
    url = _presign(service, tenant, "soon.txt", method="GET", expires_in_seconds=1).json()["url"]
    time.sleep(2.5)
    assert httpx.get(url).status_code == 403


def test_a_sized_put_url_accepts_that_size_only(make_tenant: Any, service: Any) -> None:
    tenant = make_tenant()
    answer = _presign(service, tenant, "up/load.bin", method="PUT", content_length=5)
    assert answer.status_code == 200, answer.text
    presigned = answer.json()
    assert presigned["headers"] == {"Content-Length": "5"}
    assert "content-length" in presigned["url"].lower()
    assert httpx.put(presigned["url"], content=b"123456").status_code == 403
    assert httpx.put(presigned["url"], content=b"1234").status_code == 403
    assert service.get("/v1/files/up/load.bin", headers=tenant.headers).status_code == 404
    ok = httpx.put(presigned["url"], content=b"12345", headers=presigned["headers"])
    assert ok.status_code == 200
    assert service.get("/v1/files/up/load.bin", headers=tenant.headers).content == b"12345"


def test_an_unsized_put_url_writes_that_one_object(make_tenant: Any, service: Any) -> None:
    a, b = make_tenant(), make_tenant()
    url = _presign(service, a, "free.bin", method="PUT").json()["url"]
    assert httpx.put(url.replace(a.id, b.id), content=b"sneaky").status_code == 403
    assert httpx.put(url, content=b"fine").status_code == 200
    assert service.get("/v1/files/free.bin", headers=a.headers).content == b"fine"
    assert service.get("/v1/files", headers=b.headers).json() == {"files": []}


@pytest.mark.parametrize(
    "body",
    [
        {"method": "GET", "expires_in_seconds": 0},
        {"method": "GET", "expires_in_seconds": 3601},
        {"method": "GET", "expires_in_seconds": "60"},
        {"method": "GET", "content_length": 5},
        {"method": "PUT", "content_length": -1},
        {"method": "DELETE"},
        {"method": "GET", "unknown": 1},
        {},
    ],
)
def test_an_invalid_presign_request_is_422(
    body: dict[str, Any], make_tenant: Any, service: Any
) -> None:
    tenant = make_tenant()
    answer = _presign(service, tenant, "f.txt", **body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"]


def test_a_put_url_larger_than_the_file_limit_is_422(
    make_tenant: Any, service: Any, service_settings: Any
) -> None:
    tenant = make_tenant()
    too_big = service_settings.limits.max_file_bytes + 1
    answer = _presign(service, tenant, "f.txt", method="PUT", content_length=too_big)
    assert answer.status_code == 422


def test_presign_is_only_at_presign(make_tenant: Any, service: Any) -> None:
    tenant = make_tenant()
    answer = service.post("/v1/files/f.txt", json={"method": "GET"}, headers=tenant.headers)
    assert answer.status_code == 404
