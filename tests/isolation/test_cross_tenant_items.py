"""A tenant can neither see nor touch another tenant's items: it gets the same 404 as for an
item that does not exist, and the owner's item is unchanged."""

from __future__ import annotations

import uuid

import pytest

pytestmark = [pytest.mark.servers, pytest.mark.pgbouncer]


@pytest.fixture
def owner_item(service, make_tenant):
    owner = make_tenant()
    created = service.post("/v1/items", json={"data": {"secret": owner.id}}, headers=owner.headers)
    assert created.status_code == 201, created.text
    return owner, created.json()


def _shape(answer):
    return (
        answer.status_code,
        answer.headers.get("content-type"),
        answer.content,
        sorted(name.lower() for name in answer.headers if name.lower() != "x-request-id"),
    )


@pytest.mark.parametrize(
    ("method", "body"),
    [("GET", None), ("PUT", {"data": {"stolen": True}}), ("DELETE", None)],
)
def test_another_tenants_item_is_404_like_a_missing_one(
    method, body, service, make_tenant, owner_item
):
    owner, item = owner_item
    intruder = make_tenant()
    intruder_own = service.post("/v1/items", json={"data": {}}, headers=intruder.headers)
    assert intruder_own.status_code == 201

    foreign = service.request(
        method, f"/v1/items/{item['id']}", json=body, headers=intruder.headers
    )
    missing = service.request(
        method, f"/v1/items/{uuid.uuid4()}", json=body, headers=intruder.headers
    )

    assert foreign.status_code == 404, foreign.text
    assert foreign.headers["content-type"] == "application/problem+json"
    assert _shape(foreign) == _shape(missing)
    after = service.get(f"/v1/items/{item['id']}", headers=owner.headers)
    assert after.status_code == 200
    assert after.json() == item


def test_another_tenants_items_never_show_in_a_list(service, make_tenant, owner_item):
    _, item = owner_item
    intruder = make_tenant()
    mine = set()
    for n in range(3):
        created = service.post("/v1/items", json={"data": {"n": n}}, headers=intruder.headers)
        mine.add(created.json()["id"])

    whole = service.get("/v1/items", params={"limit": 100}, headers=intruder.headers)
    assert whole.status_code == 200
    assert {entry["id"] for entry in whole.json()["items"]} == mine

    seen, cursor = [], None
    for _ in range(10):
        params = {"limit": 1} if cursor is None else {"limit": 1, "cursor": cursor}
        page = service.get("/v1/items", params=params, headers=intruder.headers)
        assert page.status_code == 200, page.text
        seen.extend(entry["id"] for entry in page.json()["items"])
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(mine)
    assert item["id"] not in seen


def test_a_cursor_from_another_tenant_reveals_nothing(service, make_tenant, owner_item):
    """A cursor is a position, not a capability: replayed by another tenant, it pages through
    that tenant's own items only."""
    owner, _ = owner_item
    service.post("/v1/items", json={"data": {"second": True}}, headers=owner.headers)
    first = service.get("/v1/items", params={"limit": 1}, headers=owner.headers).json()
    assert first["next_cursor"] is not None
    intruder = make_tenant()

    replayed = service.get(
        "/v1/items", params={"limit": 100, "cursor": first["next_cursor"]}, headers=intruder.headers
    )

    assert replayed.status_code in (200, 422), replayed.text
    if replayed.status_code == 200:
        assert replayed.json()["items"] == []
