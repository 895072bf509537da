"""Whatever a client sends, the answer is a 4xx problem+json, never a 500.

Each case states the status API.md asks for: 422 for invalid input (with a `detail`), 413 for
a body over TENANTGATE_MAX_BODY_BYTES, 404 for a path naming nothing.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

pytestmark = pytest.mark.servers

PROBLEM = "application/problem+json"
ONE_MIB = 1024 * 1024


def assert_problem(answer: Any, status: int) -> dict[str, Any]:
    """`answer` is a problem+json of `status`, with a `detail` unless 403/404."""
    assert answer.status_code == status, (answer.status_code, answer.text[:500])
    assert answer.headers["content-type"].startswith(PROBLEM), answer.headers["content-type"]
    body: dict[str, Any] = answer.json()
    assert body["status"] == status
    assert body["type"] == "about:blank"
    assert isinstance(body["title"], str)
    if status not in (403, 404):
        assert isinstance(body.get("detail"), str)
        assert body["detail"]
    return body


def _nested(levels: int) -> dict[str, Any]:
    """`levels` objects, each inside the previous one; the innermost is empty."""
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def _raw(
    service: Any, method: str, path: str, content: bytes | str, headers: dict[str, str]
) -> Any:
    return service.request(
        method, path, content=content, headers={"Content-Type": "application/json", **headers}
    )


@pytest.fixture
def tenant(make_tenant: Any) -> Any:
    return make_tenant()


@pytest.fixture
def item_id(service: Any, tenant: Any) -> str:
    made = service.post("/v1/items", json={"data": {"n": 0}}, headers=tenant.headers)
    assert made.status_code == 201, made.text
    item: str = made.json()["id"]
    return item


# -- item bodies ---------------------------------------------------------------------------

BAD_ITEM_BODIES = {
    "malformed JSON": b'{"data": {',
    "trailing garbage": b'{"data": {}} x',
    "not JSON at all": b"data=1",
    "empty body": b"",
    "a JSON array": b"[1, 2]",
    "a JSON string": b'"data"',
    "null": b"null",
    "missing data": b"{}",
    "data is a list": b'{"data": [1]}',
    "data is a string": b'{"data": "x"}',
    "data is a number": b'{"data": 5}',
    "data is null": b'{"data": null}',
    "an unknown field": b'{"data": {}, "owner": "me"}',
    "nested 33 levels": json.dumps({"data": _nested(33)}).encode(),
    "nested 1000 levels": b'{"data": ' + b'{"a": ' * 999 + b"{}" + b"}" * 1000,
    "nested 100000 levels": b'{"data": ' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_001,
    "nested lists 100000 levels": b'{"data": {"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}",
    "a NUL in a string": b'{"data": {"k": "a\\u0000b"}}',
    "a NUL in a key": b'{"data": {"a\\u0000b": 1}}',
    "a lone surrogate": b'{"data": {"k": "\\ud800"}}',
    "invalid UTF-8": b'{"data": {"k": "\xff\xfe"}}',
    "duplicate data keys, one bad": b'{"data": {}, "data": 5}',
}


@pytest.mark.parametrize("case", sorted(BAD_ITEM_BODIES))
@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_bad_item_bodies_are_422(service, tenant, item_id, case, method):
    path = "/v1/items" if method == "POST" else f"/v1/items/{item_id}"
    answer = _raw(service, method, path, BAD_ITEM_BODIES[case], tenant.headers)
    assert_problem(answer, 422)
    # Nothing was stored or changed.
    items = service.get("/v1/items", params={"limit": 100}, headers=tenant.headers).json()["items"]
    assert [item["data"] for item in items] == [{"n": 0}]


def test_big_numbers_are_kept_exactly(service, tenant):
    body = b'{"data": {"big": 123456789012345678901234567890, "small": -1e-300}}'
    answer = _raw(service, "POST", "/v1/items", body, tenant.headers)
    assert answer.status_code == 201, answer.text
    assert answer.json()["data"]["big"] == 123456789012345678901234567890


def test_nesting_up_to_32_levels_is_accepted(service, tenant):
    answer = service.post("/v1/items", json={"data": _nested(32)}, headers=tenant.headers)
    assert answer.status_code == 201, answer.text
    assert answer.json()["data"] == _nested(32)


def _oversized(path: str, limit: int) -> str:
    padding = "x" * (limit + 1)
    return json.dumps({"data": {"pad": padding}} if path == "/v1/items" else {"name": padding})


@pytest.mark.parametrize("path", ["/v1/items", "/admin/v1/tenants"])
def test_a_body_over_the_limit_is_413(service, tenant, admin_headers, service_settings, path):
    limit = service_settings.limits.max_body_bytes
    assert limit == ONE_MIB  # the default, as API.md says
    headers = admin_headers if path.startswith("/admin") else tenant.headers
    answer = _raw(service, "POST", path, _oversized(path, limit), headers)
    assert answer.status_code == 413
    assert answer.headers["content-type"].startswith(PROBLEM)
    body = answer.json()
    assert set(body) <= {"type", "title", "status", "detail"}
    assert (body["type"], body["title"], body["status"]) == (
        "about:blank",
        "Request Entity Too Large",
        413,
    )


def test_a_413_says_what_the_limit_is(service, tenant, service_settings):
    limit = service_settings.limits.max_body_bytes
    answer = _raw(service, "POST", "/v1/items", _oversized("/v1/items", limit), tenant.headers)
    assert_problem(answer, 413)


def test_a_body_just_under_the_limit_is_not_413(service, tenant, service_settings):
    limit = service_settings.limits.max_body_bytes
    envelope = len(json.dumps({"data": {"pad": ""}}))
    body = json.dumps({"data": {"pad": "x" * (limit - envelope)}})
    assert len(body) == limit
    answer = _raw(service, "POST", "/v1/items", body, tenant.headers)
    assert answer.status_code == 201, answer.text[:300]


# -- paths and query parameters -------------------------------------------------------------

BAD_IDS = ["not-a-uuid", "1234", "00000000-0000-0000-0000-00000000000g", "%00", "..%2f.."]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_bad_item_ids_in_paths_are_4xx_problems(service, tenant, bad):
    for method in ("GET", "PUT", "DELETE"):
        answer = service.request(
            method, f"/v1/items/{bad}", json={"data": {}}, headers=tenant.headers
        )
        assert 400 <= answer.status_code < 500, (method, answer.status_code)
        assert_problem(answer, answer.status_code)


def test_an_unknown_item_is_404(service, tenant):
    for method in ("GET", "PUT", "DELETE"):
        answer = service.request(
            method, f"/v1/items/{uuid.uuid4()}", json={"data": {}}, headers=tenant.headers
        )
        assert_problem(answer, 404)


@pytest.mark.parametrize("bad", BAD_IDS)
def test_bad_tenant_and_key_ids_in_admin_paths_are_4xx_problems(
    service, admin_headers, tenant, bad
):
    paths = [
        ("GET", f"/admin/v1/tenants/{bad}"),
        ("PATCH", f"/admin/v1/tenants/{bad}"),
        ("DELETE", f"/admin/v1/tenants/{bad}"),
        ("GET", f"/admin/v1/tenants/{bad}/keys"),
        ("POST", f"/admin/v1/tenants/{bad}/keys"),
        ("POST", f"/admin/v1/tenants/{tenant.id}/keys/{bad}/rotate"),
        ("DELETE", f"/admin/v1/tenants/{tenant.id}/keys/{bad}"),
    ]
    for method, path in paths:
        answer = service.request(method, path, json={}, headers=admin_headers)
        assert 400 <= answer.status_code < 500, (method, path, answer.status_code)
        assert_problem(answer, answer.status_code)


BAD_LIMITS = ["0", "101", "-1", "abc", "1.5", "", "99999999999999999999999"]
BAD_CURSORS = [
    "!!!",
    "not a cursor",
    "AAAA",  # valid base64, wrong length
    "A" * 31,  # not a whole number of base64 bytes
    "A" * 33,
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",  # padded
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA+/",  # base64, not base64url
    "A" * 32 + "\n",
    "",
    "f" * 1000,
    "\u00e9t\u00e9",
]
# 32 characters of base64url are 24 bytes: a position, even one no row has (OpenAPI's pattern).
CURSORS_POINTING_NOWHERE = {
    "BY0V4XYoAAAAAAAAAAAAAAAAAAAAAAAA": "empty",  # a time after the year 9999
    "f_________8AAAAAAAAAAAAAAAAAAAAA": "empty",  # the largest time there is
    "gAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA": "everything",  # the smallest time there is
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA": "everything",  # the epoch, the nil id
    "_" * 32: "everything",  # a time before the epoch, the largest id
}


@pytest.mark.parametrize("limit", BAD_LIMITS)
@pytest.mark.parametrize("path", ["/v1/items", "/admin/v1/tenants"])
def test_bad_limits_are_422(service, tenant, admin_headers, path, limit):
    headers = admin_headers if path.startswith("/admin") else tenant.headers
    assert_problem(service.get(path, params={"limit": limit}, headers=headers), 422)


@pytest.mark.parametrize("cursor", BAD_CURSORS)
@pytest.mark.parametrize("path", ["/v1/items", "/admin/v1/tenants"])
def test_bad_cursors_are_422(service, tenant, admin_headers, path, cursor):
    headers = admin_headers if path.startswith("/admin") else tenant.headers
    assert_problem(service.get(path, params={"cursor": cursor}, headers=headers), 422)


@pytest.mark.parametrize("cursor", sorted(CURSORS_POINTING_NOWHERE))
@pytest.mark.parametrize("path", ["/v1/items", "/admin/v1/tenants"])
def test_well_formed_cursors_that_point_nowhere_position_the_page(
    service, tenant, item_id, admin_headers, path, cursor
):
    headers = admin_headers if path.startswith("/admin") else tenant.headers
    answer = service.get(path, params={"cursor": cursor}, headers=headers)
    assert answer.status_code == 200, answer.text
    entries = answer.json()["items" if path == "/v1/items" else "tenants"]
    if CURSORS_POINTING_NOWHERE[cursor] == "empty":
        assert entries == []
    else:
        assert entries  # the page starts at the beginning


@pytest.mark.parametrize("limit", ["1", "100"])
def test_the_limit_bounds_are_accepted(service, tenant, limit):
    assert (
        service.get("/v1/items", params={"limit": limit}, headers=tenant.headers).status_code == 200
    )


# -- admin bodies --------------------------------------------------------------------------

BAD_TENANT_BODIES = {
    "malformed JSON": b'{"name": ',
    "a JSON array": b'["name"]',
    "null": b"null",
    "missing name": b"{}",
    "name is a number": b'{"name": 5}',
    "name is null": b'{"name": null}',
    "name is an object": b'{"name": {"first": "a"}}',
    "an unknown field": b'{"name": "x", "id": "00000000-0000-4000-8000-000000000000"}',
    "a NUL in the name": b'{"name": "a\\u0000b"}',
    "a lone surrogate in the name": b'{"name": "\\udfff"}',
    "tier is a number": b'{"name": "x", "tier": 1}',
    "custom_domain is a list": b'{"name": "x", "tier": "enterprise", "custom_domain": ["a.b"]}',
    "custom_domain with a NUL": (
        b'{"name": "x", "tier": "enterprise", "custom_domain": "a\\u0000.b"}'
    ),
    "custom_domain too long": (
        b'{"name": "x", "tier": "enterprise", "custom_domain": "' + b"a." * 200 + b'com"}'
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_TENANT_BODIES))
def test_bad_tenant_bodies_are_422(service, admin_headers, case):
    answer = _raw(service, "POST", "/admin/v1/tenants", BAD_TENANT_BODIES[case], admin_headers)
    assert_problem(answer, 422)


@pytest.mark.parametrize(
    "body",
    [
        b'{"name": ',
        b"[]",
        b'{"name": "a\\u0000b"}',
        b'{"status": "gone"}',
        b'{"plan": 7}',
        b'{"unknown": 1}',
    ],
)
def test_bad_tenant_patches_are_422(service, admin_headers, tenant, body):
    answer = _raw(service, "PATCH", f"/admin/v1/tenants/{tenant.id}", body, admin_headers)
    assert_problem(answer, 422)


@pytest.mark.parametrize(
    "body",
    [b'{"name": "a\\u0000b"}', b'{"name": 3}', b"[]", b'{"expires_in_seconds": 1e100}'],
)
def test_bad_key_bodies_are_422(service, admin_headers, tenant, body):
    answer = _raw(service, "POST", f"/admin/v1/tenants/{tenant.id}/keys", body, admin_headers)
    assert_problem(answer, 422)


@pytest.mark.parametrize(
    "body",
    [
        b'{"rate_per_second": 1e309, "burst": 1}',
        b'{"rate_per_second": 1, "burst": 99999999999999999999}',
        b'{"rate_per_second": 1, "burst": 2147483648}',
        b'{"rate_per_second": "NaN", "burst": 1}',
        b"not json",
    ],
)
def test_bad_plan_bodies_are_422(service, admin_headers, body):
    answer = _raw(service, "PUT", "/admin/v1/plans/bad-input-plan", body, admin_headers)
    assert_problem(answer, 422)


# -- pagination of items -------------------------------------------------------------------


def test_five_items_in_pages_of_two_are_three_pages_in_a_stable_order(service, tenant, make_tenant):
    made = []
    for n in range(5):
        answer = service.post("/v1/items", json={"data": {"n": n}}, headers=tenant.headers)
        assert answer.status_code == 201
        made.append(answer.json()["id"])

    pages: list[list[str]] = []
    cursors: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        answer = service.get("/v1/items", params=params, headers=tenant.headers)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert set(body) == {"items", "next_cursor"}
        pages.append([item["id"] for item in body["items"]])
        cursor = body["next_cursor"]
        if cursor is None:
            break
        cursors.append(cursor)
        assert len(pages) < 10

    assert [len(page) for page in pages] == [2, 2, 1]
    assert [item_id for page in pages for item_id in page] == made  # oldest first
    # Stable: asking again with the same cursor gives the same page.
    again = service.get(
        "/v1/items", params={"limit": 2, "cursor": cursors[1]}, headers=tenant.headers
    )
    assert [item["id"] for item in again.json()["items"]] == pages[2]
    # Opaque: a cursor names no item and shows no time in clear.
    for text in cursors:
        assert not any(item_id in text or item_id.replace("-", "") in text for item_id in made)
        assert ":" not in text

    # Another tenant's cursor only positions a page of the caller's own items.
    other = make_tenant()
    assert service.post("/v1/items", json={"data": {}}, headers=other.headers).status_code == 201
    foreign = service.get("/v1/items", params={"cursor": cursors[0]}, headers=other.headers)
    assert foreign.status_code == 200
    assert not {item["id"] for item in foreign.json()["items"]} & set(made)
