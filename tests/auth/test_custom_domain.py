"""An enterprise tenant's custom domain accepts that tenant's keys only.

`Host` is compared with its port stripped and its case folded; other hosts are unaffected.
"""

from __future__ import annotations

import time
import uuid

import pytest
from auth_helpers import FORBIDDEN, eventually

pytestmark = pytest.mark.servers


def _me(service, tenant, host):
    return service.get("/v1/me", headers={**tenant.headers, "Host": host})


@pytest.mark.parametrize(
    "spelling",
    [
        pytest.param(lambda d: d, id="as configured"),
        pytest.param(lambda d: d.upper(), id="upper case"),
        pytest.param(lambda d: f"{d.upper()}:8443", id="upper case with port"),
        pytest.param(lambda d: f"{d}:443", id="with port"),
    ],
)
def test_the_owners_key_works_on_its_custom_domain(spelling, service, make_tenant, custom_domain):
    owner = make_tenant(tier="enterprise", custom_domain=custom_domain)

    answer = _me(service, owner, spelling(custom_domain))

    assert answer.status_code == 200, answer.text
    assert answer.json()["tenant_id"] == owner.id


@pytest.mark.parametrize(
    "spelling",
    [
        pytest.param(lambda d: d, id="as configured"),
        pytest.param(lambda d: d.upper(), id="upper case"),
        pytest.param(lambda d: f"{d.upper()}:8443", id="upper case with port"),
    ],
)
def test_another_tenants_key_is_refused_on_a_custom_domain(
    spelling, service, make_tenant, custom_domain
):
    make_tenant(tier="enterprise", custom_domain=custom_domain)
    other = make_tenant()

    answer = _me(service, other, spelling(custom_domain))

    assert answer.status_code == 403
    assert answer.content == FORBIDDEN


def test_another_enterprise_tenants_key_is_refused_on_a_custom_domain(
    service, make_tenant, custom_domain
):
    make_tenant(tier="enterprise", custom_domain=custom_domain)
    other = make_tenant(tier="enterprise", custom_domain=f"api.{uuid.uuid4().hex[:12]}.example")

    assert _me(service, other, custom_domain).status_code == 403


def test_a_key_works_on_any_host_that_is_no_tenants_domain(service, make_tenant, custom_domain):
    make_tenant(tier="enterprise", custom_domain=custom_domain)
    tenant = make_tenant()

    for host in ("testserver.local", "api.example.com:8080", f"other.{custom_domain}"):
        answer = _me(service, tenant, host)
        assert answer.status_code == 200, (host, answer.text)


def test_the_domain_owner_may_use_other_hosts_too(service, make_tenant, custom_domain):
    owner = make_tenant(tier="enterprise", custom_domain=custom_domain)

    assert _me(service, owner, "testserver.local").status_code == 200


def test_changing_the_custom_domain_rebinds_it(service, make_tenant, admin_headers):
    old_domain = f"old.{uuid.uuid4().hex[:12]}.example"
    new_domain = f"new.{uuid.uuid4().hex[:12]}.example"
    owner = make_tenant(tier="enterprise", custom_domain=old_domain)
    other = make_tenant()
    assert _me(service, other, old_domain).status_code == 403

    patched = service.patch(
        f"/admin/v1/tenants/{owner.id}", json={"custom_domain": new_domain}, headers=admin_headers
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["custom_domain"] == new_domain

    assert eventually(lambda: _me(service, other, new_domain), 403).status_code == 403
    assert eventually(lambda: _me(service, other, old_domain), 200).status_code == 200
    assert _me(service, owner, new_domain).status_code == 200
    assert _me(service, owner, old_domain).status_code == 200


def test_removing_the_custom_domain_unbinds_it(service, make_tenant, admin_headers, custom_domain):
    owner = make_tenant(tier="enterprise", custom_domain=custom_domain)
    other = make_tenant()
    assert _me(service, other, custom_domain).status_code == 403

    patched = service.patch(
        f"/admin/v1/tenants/{owner.id}", json={"custom_domain": None}, headers=admin_headers
    )
    assert patched.status_code == 200, patched.text

    assert eventually(lambda: _me(service, other, custom_domain), 200).status_code == 200


def test_a_deleted_tenants_domain_no_longer_binds(
    service, make_tenant, admin_headers, custom_domain
):
    owner = make_tenant(tier="enterprise", custom_domain=custom_domain)
    other = make_tenant()
    assert _me(service, other, custom_domain).status_code == 403

    deleted = service.delete(f"/admin/v1/tenants/{owner.id}", headers=admin_headers)
    assert deleted.status_code == 204

    assert eventually(lambda: _me(service, other, custom_domain), 200).status_code == 200


def _holds_for(seconds, check):
    """``check()`` holds on every try for ``seconds`` (each try 0.1 s apart)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        check()
        time.sleep(0.1)


def test_a_domain_changed_through_the_admin_api_binds_at_once_and_no_refresh_undoes_it(
    service, make_tenant, admin_headers
):
    """The admin use case reloads the bindings from PostgreSQL before it answers, and the
    every-second refresh reads the same source: there is no second copy it could restore."""
    old_domain = f"old.{uuid.uuid4().hex[:12]}.example"
    new_domain = f"new.{uuid.uuid4().hex[:12]}.example"
    owner = make_tenant(tier="enterprise", custom_domain=old_domain)
    other = make_tenant()
    assert _me(service, other, old_domain).status_code == 403

    def patch(domain):
        answer = service.patch(
            f"/admin/v1/tenants/{owner.id}", json={"custom_domain": domain}, headers=admin_headers
        )
        assert answer.status_code == 200, answer.text

    def moved():
        assert _me(service, other, new_domain).status_code == 403
        assert _me(service, other, old_domain).status_code == 200
        assert _me(service, owner, new_domain).status_code == 200

    patch(new_domain)
    _holds_for(2.5, moved)  # from the admin answer on, across two refreshes at least

    def removed():
        assert _me(service, other, new_domain).status_code == 200

    patch(None)
    _holds_for(2.5, removed)
