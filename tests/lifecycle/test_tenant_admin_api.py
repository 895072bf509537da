"""The operator creates tenants and keys over the admin API, and clients then use them."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.servers, pytest.mark.pgbouncer]


def test_a_new_tenant_comes_with_a_working_key(service, make_tenant):
    tenant = make_tenant(plan="pro")

    me = service.get("/v1/me", headers=tenant.headers)

    assert me.status_code == 200, me.text
    assert me.json() == {
        "tenant_id": tenant.id,
        "name": tenant.body["tenant"]["name"],
        "plan": "pro",
        "tier": "standard",
        "key_id": tenant.key_id,
    }


def test_items_round_trip_in_the_tenants_schema(service, make_tenant):
    tenant = make_tenant()

    created = service.post("/v1/items", json={"data": {"a": [1, 2]}}, headers=tenant.headers)
    assert created.status_code == 201, created.text
    item = created.json()
    assert item["data"] == {"a": [1, 2]}

    fetched = service.get(f"/v1/items/{item['id']}", headers=tenant.headers)
    assert fetched.json() == item

    replaced = service.put(
        f"/v1/items/{item['id']}", json={"data": {"b": True}}, headers=tenant.headers
    )
    assert replaced.status_code == 200
    assert replaced.json()["data"] == {"b": True}

    assert service.delete(f"/v1/items/{item['id']}", headers=tenant.headers).status_code == 204
    assert service.get(f"/v1/items/{item['id']}", headers=tenant.headers).status_code == 404
