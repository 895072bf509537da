"""The `Bearer` scheme name is case-insensitive (RFC 9110 §11.1), on both APIs."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.servers

SPELLINGS = ["Bearer", "bearer", "BEARER", "BeArEr"]


@pytest.mark.parametrize("scheme", SPELLINGS)
def test_the_tenant_api_accepts_any_case_of_bearer(scheme, service, make_tenant):
    tenant = make_tenant()

    answer = service.get("/v1/me", headers={"Authorization": f"{scheme} {tenant.key}"})

    assert answer.status_code == 200, answer.text
    assert answer.json()["tenant_id"] == tenant.id


@pytest.mark.parametrize("scheme", SPELLINGS)
def test_the_admin_api_accepts_any_case_of_bearer(scheme, service, admin_headers):
    token = admin_headers["Authorization"].split(" ", 1)[1]

    answer = service.get("/admin/v1/plans", headers={"Authorization": f"{scheme} {token}"})

    assert answer.status_code == 200, answer.text
