"""HSM-anchored keys on the session's SoftHSM2 token: hashed inside the HSM with a key that
never leaves it, verified through the HSM on a miss, and refused alone when the HSM fails."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import secrets
import string
from typing import Any

import asyncpg
import pytest
from auth_helpers import FORBIDDEN, eventually

from tenantgate.errors import HsmUnavailableError
from tenantgate.hsm import HMAC_KEY_LABEL, HSM_HASH_SCHEME, Hsm
from tenantgate.keys import KeyHasher, key_checksum, parse_key
from tenantgate.settings import HsmSettings

pytestmark = [pytest.mark.servers, pytest.mark.hsm]

_BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase


@pytest.fixture(autouse=True)
def _softhsm(hsm_info: Any) -> Any:
    """Every test here needs the token (and ``SOFTHSM2_CONF`` set before the HSM opens)."""
    return hsm_info


def _me(service: Any, key: str) -> Any:
    return service.get("/v1/me", headers={"Authorization": f"Bearer {key}"})


def _new_key(service: Any, admin_headers: dict[str, str], tenant_id: str, **body: Any) -> Any:
    return service.post(f"/admin/v1/tenants/{tenant_id}/keys", json=body, headers=admin_headers)


def _hsm_key(service: Any, admin_headers: dict[str, str], tenant_id: str) -> dict[str, Any]:
    answer = _new_key(service, admin_headers, tenant_id, hsm=True)
    assert answer.status_code == 201, answer.text
    key: dict[str, Any] = answer.json()
    assert key["hsm"] is True
    return key


def _same_prefix_other_key(key: str) -> str:
    """A well-formed key sharing ``key``'s display prefix (so the HSM is asked) but not it."""
    prefix = parse_key(key).display_prefix
    body = prefix + "".join(secrets.choice(_BASE62) for _ in range(24))
    other = body + key_checksum(body)
    assert parse_key(other).display_prefix == prefix
    assert other != key
    return other


def _stored(service_environment: dict[str, str], key_id: str) -> asyncpg.Record:
    async def fetch() -> asyncpg.Record:
        connection = await asyncpg.connect(service_environment["TENANTGATE_DATABASE_URL"])
        try:
            row = await connection.fetchrow(
                "SELECT key_hash, hash_scheme FROM api_keys WHERE id = $1", key_id
            )
        finally:
            await connection.close()
        assert row is not None
        return row

    return asyncio.run(fetch())


def _metric(service: Any, name: str) -> float:
    text = service.get("/metrics").text
    found = re.search(rf"^{name} ([0-9.e+]+)$", text, re.MULTILINE)
    assert found is not None, f"{name} is missing"
    return float(found[1])


def test_the_hmac_key_never_leaves_the_hsm(service, make_tenant, admin_headers, hsm_info):
    import pkcs11  # the `hsm` extra: missing, this fails rather than skips
    from pkcs11 import Attribute, KeyType, ObjectClass
    from pkcs11.exceptions import AttributeSensitive, UserAlreadyLoggedIn

    _hsm_key(service, admin_headers, make_tenant(tier="enterprise").id)  # the key exists now

    token = pkcs11.lib(hsm_info.library_path).get_token(token_label=hsm_info.token_label)
    try:
        session = token.open(user_pin=hsm_info.pin)
    except UserAlreadyLoggedIn:  # the service's session holds this process's login
        session = token.open()
    with session:
        key = session.get_key(
            object_class=ObjectClass.SECRET_KEY,
            key_type=KeyType.GENERIC_SECRET,
            label=HMAC_KEY_LABEL,
        )
        assert key[Attribute.TOKEN] is True
        assert key[Attribute.SENSITIVE] is True
        assert key[Attribute.EXTRACTABLE] is False
        assert key[Attribute.NEVER_EXTRACTABLE] is True
        assert key[Attribute.VALUE_LEN] == 32
        with pytest.raises(AttributeSensitive):
            key[Attribute.VALUE]


def test_an_hsm_key_is_stored_as_the_hsms_digest_not_the_pepper_hmac(
    service, make_tenant, admin_headers, service_environment, service_settings
):
    tenant = make_tenant(tier="enterprise")
    key = _hsm_key(service, admin_headers, tenant.id)

    stored = _stored(service_environment, key["id"])
    pepper = bytes.fromhex(service_environment["TENANTGATE_KEY_PEPPER"])
    assert stored["hash_scheme"] == HSM_HASH_SCHEME
    assert bytes(stored["key_hash"]) != KeyHasher(pepper).hash(key["key"])
    probe = Hsm(service_settings.hsm)
    try:
        assert bytes(stored["key_hash"]) == probe.digest_blocking(key["key"].encode())
    finally:
        probe.close()
    # The tenant's first key is an ordinary one: the pepper HMAC.
    ordinary = _stored(service_environment, tenant.key_id)
    assert bytes(ordinary["key_hash"]) == KeyHasher(pepper).hash(tenant.key)


def test_an_hsm_key_is_verified_and_a_wrong_one_refused(service, make_tenant, admin_headers):
    tenant = make_tenant(tier="enterprise")
    key = _hsm_key(service, admin_headers, tenant.id)

    me = _me(service, key["key"])
    assert me.status_code == 200, me.text
    assert (me.json()["tenant_id"], me.json()["key_id"]) == (tenant.id, key["id"])
    assert _me(service, key["key"]).status_code == 200  # now from the native table

    wrong = _me(service, _same_prefix_other_key(key["key"]))
    assert (wrong.status_code, wrong.content) == (403, FORBIDDEN)

    listed = service.get(f"/admin/v1/tenants/{tenant.id}/keys", headers=admin_headers)
    listed = listed.json()["keys"]
    assert {item["id"]: item["hsm"] for item in listed} == {tenant.key_id: False, key["id"]: True}


def test_rotating_an_hsm_key_gives_an_hsm_key(
    service, make_tenant, admin_headers, service_environment
):
    tenant = make_tenant(tier="enterprise")
    old = _hsm_key(service, admin_headers, tenant.id)
    rotated = service.post(
        f"/admin/v1/tenants/{tenant.id}/keys/{old['id']}/rotate",
        json={"grace_seconds": 60},
        headers=admin_headers,
    )
    assert rotated.status_code == 201, rotated.text
    new = rotated.json()
    assert new["hsm"] is True
    assert _stored(service_environment, new["id"])["hash_scheme"] == HSM_HASH_SCHEME
    assert _me(service, new["key"]).json()["key_id"] == new["id"]
    assert _me(service, old["key"]).status_code == 200  # its grace period


def test_a_revoked_hsm_key_is_refused(service, make_tenant, admin_headers):
    tenant = make_tenant(tier="enterprise")
    key = _hsm_key(service, admin_headers, tenant.id)
    assert _me(service, key["key"]).status_code == 200

    revoked = service.delete(
        f"/admin/v1/tenants/{tenant.id}/keys/{key['id']}", headers=admin_headers
    )
    assert revoked.status_code == 204, revoked.text
    refused = eventually(lambda: _me(service, key["key"]), 403, within=1.5)
    assert (refused.status_code, refused.content) == (403, FORBIDDEN)


def test_hsm_keys_are_for_enterprise_tenants_only(service, make_tenant, admin_headers):
    answer = _new_key(service, admin_headers, make_tenant().id, hsm=True)
    assert answer.status_code == 422, answer.text
    assert "enterprise" in answer.json()["detail"]


def test_hsm_keys_need_an_hsm(service_settings, admin_headers):
    from litestar.testing import TestClient

    from tenantgate.app import create_app

    settings = dataclasses.replace(service_settings, hsm=None)
    with TestClient(create_app(settings)) as without_hsm:
        created = without_hsm.post(
            "/admin/v1/tenants",
            json={"name": "no-hsm", "tier": "enterprise"},
            headers=admin_headers,
        )
        assert created.status_code == 201, created.text
        tenant_id = created.json()["tenant"]["id"]
        try:
            answer = _new_key(without_hsm, admin_headers, tenant_id, hsm=True)
            assert answer.status_code == 422, answer.text
            assert "HSM" in answer.json()["detail"]
            assert "tenantgate_hsm" not in without_hsm.get("/metrics").text
        finally:
            without_hsm.delete(f"/admin/v1/tenants/{tenant_id}", headers=admin_headers)


def test_with_the_hsm_gone_only_uncached_hsm_keys_are_refused(
    service, make_tenant, admin_headers, hsm_info
):
    tenant = make_tenant(tier="enterprise")
    recent = _hsm_key(service, admin_headers, tenant.id)
    assert _me(service, recent["key"]).status_code == 200  # confirmed by the HSM
    uncached = _hsm_key(service, admin_headers, tenant.id)
    ordinary = _new_key(service, admin_headers, tenant.id).json()["key"]  # never used either
    refused_before = _metric(service, "tenantgate_hsm_unavailable_total")
    accepted_before = _metric(service, "tenantgate_hsm_unavailable_accepted_total")

    tokens = hsm_info.conf_path.parent / "tokens"
    hidden = tokens.with_name("tokens-gone")
    tokens.rename(hidden)  # the token's files vanish under the open session
    try:
        refused = _me(service, uncached["key"])
        assert (refused.status_code, refused.content) == (403, FORBIDDEN)
        assert _me(service, ordinary).status_code == 200
        assert _metric(service, "tenantgate_hsm_unavailable_total") > refused_before
        # A key the HSM confirmed lately is still accepted after its record left the cache
        # (a tenant change drops its records), with its record read again.
        renamed = service.patch(
            f"/admin/v1/tenants/{tenant.id}", json={"name": "renamed"}, headers=admin_headers
        )
        assert renamed.status_code == 200, renamed.text
        accepted = _me(service, recent["key"])
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["name"] == "renamed"
        assert _metric(service, "tenantgate_hsm_unavailable_accepted_total") > accepted_before
    finally:
        hidden.rename(tokens)

    # The session is reopened by itself once the token is back.
    back = eventually(lambda: _me(service, uncached["key"]), 200, within=5.0)
    assert back.status_code == 200, back.text


def test_a_library_that_fails_is_a_typed_error_and_not_retried_at_once(tmp_path):
    not_pkcs11 = tmp_path / "libnot-pkcs11.so"
    not_pkcs11.write_bytes(b"not a shared object")
    hsm = Hsm(HsmSettings(not_pkcs11, "tenantgate", "0000"), reopen_interval=3600.0)
    try:
        with pytest.raises(HsmUnavailableError):
            hsm.digest_blocking(b"key")
        with pytest.raises(HsmUnavailableError, match="moments ago"):
            hsm.digest_blocking(b"key")  # within the interval: refused without a new attempt
        assert hsm.failures == 2
    finally:
        hsm.close()
