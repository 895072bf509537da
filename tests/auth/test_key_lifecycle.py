"""Keys stop and start working when the operator says so, within the 1 s the contract allows."""

from __future__ import annotations

import pytest
from auth_helpers import FORBIDDEN, eventually

pytestmark = pytest.mark.servers


def _me(service, key):
    return service.get("/v1/me", headers={"Authorization": f"Bearer {key}"})


def _patch_status(service, admin_headers, tenant, status):
    answer = service.patch(
        f"/admin/v1/tenants/{tenant.id}", json={"status": status}, headers=admin_headers
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == status


def _rotate(service, admin_headers, tenant, grace_seconds):
    answer = service.post(
        f"/admin/v1/tenants/{tenant.id}/keys/{tenant.key_id}/rotate",
        json={"grace_seconds": grace_seconds},
        headers=admin_headers,
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_reactivating_a_suspended_tenant_makes_its_key_work_again(
    service, make_tenant, admin_headers
):
    tenant = make_tenant()
    assert _me(service, tenant.key).status_code == 200

    _patch_status(service, admin_headers, tenant, "suspended")
    assert eventually(lambda: _me(service, tenant.key), 403, within=1.0).status_code == 403

    _patch_status(service, admin_headers, tenant, "active")
    answer = eventually(lambda: _me(service, tenant.key), 200, within=1.0)
    assert answer.status_code == 200, answer.text
    assert answer.json()["tenant_id"] == tenant.id


def test_a_suspended_tenants_other_keys_are_refused_too(service, make_tenant, admin_headers):
    tenant = make_tenant()
    second = service.post(f"/admin/v1/tenants/{tenant.id}/keys", json={}, headers=admin_headers)
    assert second.status_code == 201
    second_key = second.json()["key"]
    assert _me(service, second_key).status_code == 200

    _patch_status(service, admin_headers, tenant, "suspended")

    assert eventually(lambda: _me(service, second_key), 403, within=1.0).status_code == 403


def test_a_revoked_key_is_refused_and_the_tenants_other_keys_still_work(
    service, make_tenant, admin_headers
):
    tenant = make_tenant()
    second = service.post(f"/admin/v1/tenants/{tenant.id}/keys", json={}, headers=admin_headers)
    second_key = second.json()["key"]
    assert _me(service, tenant.key).status_code == 200

    revoked = service.delete(
        f"/admin/v1/tenants/{tenant.id}/keys/{tenant.key_id}", headers=admin_headers
    )
    assert revoked.status_code == 204

    assert eventually(lambda: _me(service, tenant.key), 403, within=1.0).content == FORBIDDEN
    assert _me(service, second_key).status_code == 200


def test_rotation_with_a_grace_period_keeps_both_keys_working(service, make_tenant, admin_headers):
    tenant = make_tenant()
    assert _me(service, tenant.key).status_code == 200

    successor = _rotate(service, admin_headers, tenant, grace_seconds=60)

    assert successor["key"] != tenant.key
    assert successor["id"] != tenant.key_id
    new = _me(service, successor["key"])
    assert new.status_code == 200, new.text
    assert new.json()["key_id"] == successor["id"]
    old = _me(service, tenant.key)
    assert old.status_code == 200, old.text
    assert old.json()["key_id"] == tenant.key_id


def test_rotation_without_grace_refuses_the_old_key_at_once(service, make_tenant, admin_headers):
    tenant = make_tenant()
    assert _me(service, tenant.key).status_code == 200

    successor = _rotate(service, admin_headers, tenant, grace_seconds=0)

    assert eventually(lambda: _me(service, tenant.key), 403, within=1.0).status_code == 403
    new = _me(service, successor["key"])
    assert new.status_code == 200, new.text
    assert new.json()["tenant_id"] == tenant.id


def test_listing_keys_never_shows_a_secret_or_a_hash(service, make_tenant, admin_headers):
    tenant = make_tenant()
    extra = service.post(
        f"/admin/v1/tenants/{tenant.id}/keys", json={"name": "ci"}, headers=admin_headers
    ).json()
    successor = _rotate(service, admin_headers, tenant, grace_seconds=60)
    secrets = {
        tenant.key_id: tenant.key,
        extra["id"]: extra["key"],
        successor["id"]: successor["key"],
    }

    listed = service.get(f"/admin/v1/tenants/{tenant.id}/keys", headers=admin_headers)

    assert listed.status_code == 200, listed.text
    keys = listed.json()["keys"]
    assert {key["id"] for key in keys} == set(secrets)
    for key in keys:
        assert not {"key", "key_hash", "hash", "secret"} & set(key), key
        assert key["tenant_id"] == tenant.id
        assert secrets[key["id"]].startswith(key["prefix"])
        assert len(key["prefix"]) < len(secrets[key["id"]]) // 2
    for secret in secrets.values():
        assert secret not in listed.text
