"""File paths are 1 to 1024 bytes of UTF-8, relative, with no empty, `.` or `..` segment and
no control character: anything else is 422, decided before S3 is contacted, from the path
exactly as the client sent it (not as the router normalised it)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from tenantgate.errors import InvalidInputError
from tenantgate.storage.paths import check_path, check_prefix

pytestmark = pytest.mark.servers

INVALID = {
    "empty segment": "a//b",
    "trailing slash": "a/",
    "dot": "a/%2E/b",
    "dot dot": "a/%2E%2E/b",
    "leading dot dot": "%2E%2E/x",
    "only dot": "%2E",
    "absolute": "%2Fetc/passwd",
    "nul": "a%00b",
    "newline": "a%0Ab",
    "delete char": "a%7Fb",
    "not utf-8": "%FF%FE",
    "too long": "a" * 1025,
    "too long in bytes": "%C3%A9" * 513,
}


@pytest.fixture(scope="module")
def refused_tenant(service: Any, admin_headers: dict[str, str]) -> Any:
    """One tenant for every invalid-path case: none of them may store anything, so it stays
    empty (and the module makes one tenant, not fifty). Its plan allows the burst."""
    answer = service.post(
        "/admin/v1/tenants",
        json={"name": "invalid-paths", "plan": "enterprise"},
        headers=admin_headers,
    )
    assert answer.status_code == 201, answer.text
    created = answer.json()
    return SimpleNamespace(headers={"Authorization": f"Bearer {created['api_key']['key']}"})


@pytest.mark.parametrize("path", list(INVALID.values()), ids=list(INVALID))
@pytest.mark.parametrize("method", ["PUT", "GET", "DELETE", "PRESIGN"])
def test_an_invalid_path_is_422(path: str, method: str, refused_tenant: Any, service: Any) -> None:
    tenant = refused_tenant
    if method == "PRESIGN":
        answer = service.post(
            f"/v1/files/{path}/presign", json={"method": "GET"}, headers=tenant.headers
        )
    else:
        content = b"x" if method == "PUT" else None
        answer = service.request(
            method, f"/v1/files/{path}", content=content, headers=tenant.headers
        )
    assert answer.status_code == 422, (method, path, answer.text)
    assert answer.json()["detail"].startswith("path:")
    assert service.get("/v1/files", headers=tenant.headers).json() == {"files": []}


VALID = {
    "plain": "a.txt",
    "nested": "a/b/c.txt",
    "unicode": "%C3%A9t%C3%A9/%E6%96%87%E4%BB%B6.txt",
    "spaces and symbols": "my%20file%20(1)%20%26%20%3F%23.txt",
    "dots inside names": "..a/b../.c",
    "987 bytes (1024 less a shared-bucket prefix)": "/".join(["a" * 200] * 4) + "/" + "a" * 183,
}


@pytest.mark.parametrize("path", list(VALID.values()), ids=list(VALID))
def test_a_valid_path_round_trips_as_sent(path: str, make_tenant: Any, service: Any) -> None:
    from urllib.parse import unquote

    tenant = make_tenant()
    stored = service.put(f"/v1/files/{path}", content=b"ok", headers=tenant.headers)
    assert stored.status_code == 201, stored.text
    assert stored.json()["path"] == unquote(path)
    assert service.get(f"/v1/files/{path}", headers=tenant.headers).content == b"ok"
    listed = service.get("/v1/files", headers=tenant.headers).json()["files"]
    assert [f["path"] for f in listed] == [unquote(path)]


def test_paths_up_to_1024_bytes_fit_an_enterprise_bucket_and_987_a_shared_one(
    make_tenant: Any, service: Any
) -> None:
    enterprise, standard = make_tenant(tier="enterprise"), make_tenant()
    longest = "/".join(["a" * 200] * 5) + "/" + "a" * 19
    assert len(longest) == 1024
    answer = service.put(f"/v1/files/{longest}", content=b"x", headers=enterprise.headers)
    assert answer.status_code == 201, answer.text
    refused = service.put(f"/v1/files/{longest}", content=b"x", headers=standard.headers)
    assert refused.status_code == 422
    assert "987 bytes" in refused.json()["detail"]
    just_over = "/v1/files/" + longest[:988]
    assert service.put(just_over, content=b"x", headers=standard.headers).status_code == 422


def test_a_segment_seaweedfs_cannot_hold_is_422_not_500(make_tenant: Any, service: Any) -> None:
    """SeaweedFS (unlike AWS) refuses a key segment over 255 bytes (KeyTooLongError)."""
    tenant = make_tenant()
    answer = service.put("/v1/files/" + "a" * 256, content=b"x", headers=tenant.headers)
    assert answer.status_code == 422, answer.text


@pytest.mark.parametrize("prefix", ["/a", "a//", "../", "a\x00", "x" * 1025])
def test_an_invalid_listing_prefix_is_422(prefix: str, refused_tenant: Any, service: Any) -> None:
    tenant = refused_tenant
    answer = service.get("/v1/files", params={"prefix": prefix}, headers=tenant.headers)
    assert answer.status_code == 422, answer.text


def test_the_rules_themselves() -> None:
    assert check_path("a/b") == "a/b"
    assert check_prefix("") == ""
    assert check_prefix("docs/") == "docs/"
    assert check_prefix("do") == "do"
    for bad in ("", "/a", "a/", "a//b", ".", "..", "a/../b", "a\tb", "\ud800", "é" * 513):
        with pytest.raises(InvalidInputError):
            check_path(bad)
