"""Every failed authentication, tenant API and admin API alike, is the very same 403.

The body is byte-identical, the header names are the same and every header value but the
request id is the same, whatever the reason — a tenant deleted through another instance after
this one cached its key included: nothing tells a caller why it was refused.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from auth_helpers import FORBIDDEN, eventually
from litestar import Litestar, Router
from litestar.testing import TestClient

from tenantgate.keys import generate_key
from tenantgate.plugin import TenantGatePlugin
from tenantgate.routes.tenant import TenantController

pytestmark = pytest.mark.servers


@dataclass(frozen=True)
class Refused:
    """A request that must be refused: where it goes and with which headers."""

    path: str
    headers: dict[str, str]
    method: str = "GET"
    client: Any = None
    """The instance asked (default: the session's service)."""


def _with_checksum_flipped(key: str) -> str:
    last = key[-1]
    return key[:-1] + ("A" if last != "A" else "B")


# Each case makes whatever it needs (through the admin API) and returns the refused request.
# The key of the tenant API cases is checked to work first where that is possible, so the
# refusal cannot come from a key that never worked.


def _no_header(ctx: Context) -> Refused:
    return Refused("/v1/me", {})


def _empty_header(ctx: Context) -> Refused:
    return Refused("/v1/me", {"Authorization": ""})


def _basic_scheme(ctx: Context) -> Refused:
    return Refused("/v1/me", {"Authorization": f"Basic {ctx.tenant().key}"})


def _token_scheme(ctx: Context) -> Refused:
    return Refused("/v1/me", {"Authorization": f"Token {ctx.tenant().key}"})


def _bearer_alone(ctx: Context) -> Refused:
    return Refused("/v1/me", {"Authorization": "Bearer"})


def _bearer_and_space(ctx: Context) -> Refused:
    return Refused("/v1/me", {"Authorization": "Bearer "})


def _malformed_key(ctx: Context) -> Refused:
    return Refused("/v1/me", {"Authorization": "Bearer not-a-tenantgate-key"})


def _wrong_checksum(ctx: Context) -> Refused:
    key = _with_checksum_flipped(ctx.tenant().key)
    return Refused("/v1/me", {"Authorization": f"Bearer {key}"})


def _unknown_key(ctx: Context) -> Refused:
    return Refused("/v1/me", {"Authorization": f"Bearer {generate_key()}"})


def _unknown_key_on_a_write(ctx: Context) -> Refused:
    return Refused("/v1/items", {"Authorization": f"Bearer {generate_key()}"}, method="POST")


def _revoked_key(ctx: Context) -> Refused:
    tenant = ctx.working_tenant()
    ctx.admin("DELETE", f"/admin/v1/tenants/{tenant.id}/keys/{tenant.key_id}", 204)
    return Refused("/v1/me", tenant.headers)


def _expired_key(ctx: Context) -> Refused:
    tenant = ctx.tenant()
    key = ctx.admin("POST", f"/admin/v1/tenants/{tenant.id}/keys", 201, {"expires_in_seconds": 1})
    headers = {"Authorization": f"Bearer {key['key']}"}
    assert ctx.service.get("/v1/me", headers=headers).status_code == 200
    ctx.wait_until(datetime.fromisoformat(key["expires_at"]))
    return Refused("/v1/me", headers)


def _suspended_tenant(ctx: Context) -> Refused:
    tenant = ctx.working_tenant()
    ctx.admin("PATCH", f"/admin/v1/tenants/{tenant.id}", 200, {"status": "suspended"})
    return Refused("/v1/me", tenant.headers)


def _deleted_tenant(ctx: Context) -> Refused:
    tenant = ctx.working_tenant()
    ctx.admin("DELETE", f"/admin/v1/tenants/{tenant.id}", 204)
    return Refused("/v1/me", tenant.headers)


def _tenant_deleted_elsewhere(ctx: Context) -> Refused:
    """Deleted through `service` after `elsewhere` cached its key: `elsewhere` still
    identifies the key, and the request's tenant transaction finds the tenant's role gone."""
    tenant = ctx.tenant()
    primed = ctx.elsewhere.get("/v1/items", headers=tenant.headers)
    assert primed.status_code == 200, primed.text
    assert "ratelimit-limit" in primed.headers
    ctx.admin("DELETE", f"/admin/v1/tenants/{tenant.id}", 204)
    return Refused("/v1/items", tenant.headers, client=ctx.elsewhere)


def _other_tenants_key_on_a_custom_domain(ctx: Context) -> Refused:
    domain = f"api.{uuid.uuid4().hex[:12]}.example"
    ctx.tenant(tier="enterprise", custom_domain=domain)
    other = ctx.working_tenant()
    return Refused("/v1/me", {**other.headers, "Host": domain})


def _admin_without_token(ctx: Context) -> Refused:
    return Refused("/admin/v1/plans", {})


def _admin_wrong_token(ctx: Context) -> Refused:
    wrong = ctx.admin_headers["Authorization"] + "x"
    return Refused("/admin/v1/plans", {"Authorization": wrong})


def _admin_empty_bearer(ctx: Context) -> Refused:
    return Refused("/admin/v1/plans", {"Authorization": "Bearer "})


def _admin_token_in_basic_scheme(ctx: Context) -> Refused:
    token = ctx.admin_headers["Authorization"].split(" ", 1)[1]
    return Refused("/admin/v1/plans", {"Authorization": f"Basic {token}"})


def _admin_tenant_key_as_token(ctx: Context) -> Refused:
    return Refused("/admin/v1/tenants", ctx.working_tenant().headers)


CASES: dict[str, Callable[[Context], Refused]] = {
    "no Authorization header": _no_header,
    "empty Authorization header": _empty_header,
    "Basic scheme": _basic_scheme,
    "Token scheme": _token_scheme,
    "Bearer with nothing": _bearer_alone,
    "Bearer and a space": _bearer_and_space,
    "malformed key": _malformed_key,
    "wrong checksum": _wrong_checksum,
    "unknown key": _unknown_key,
    "unknown key on a write": _unknown_key_on_a_write,
    "revoked key": _revoked_key,
    "expired key": _expired_key,
    "suspended tenant": _suspended_tenant,
    "deleted tenant": _deleted_tenant,
    "tenant deleted through another instance": _tenant_deleted_elsewhere,
    "another tenant's key on a custom domain": _other_tenants_key_on_a_custom_domain,
    "admin: no token": _admin_without_token,
    "admin: wrong token": _admin_wrong_token,
    "admin: empty bearer": _admin_empty_bearer,
    "admin: token in Basic scheme": _admin_token_in_basic_scheme,
    "admin: tenant key as admin token": _admin_tenant_key_as_token,
}


@dataclass
class Context:
    service: Any
    make_tenant: Any
    admin_headers: dict[str, str]
    elsewhere: Any

    def tenant(self, **fields: Any) -> Any:
        return self.make_tenant(**fields)

    def working_tenant(self, **fields: Any) -> Any:
        """A new tenant whose key has just been accepted (so its record is cached)."""
        tenant = self.make_tenant(**fields)
        answer = self.service.get("/v1/me", headers=tenant.headers)
        assert answer.status_code == 200, answer.text
        return tenant

    def admin(self, method: str, path: str, status: int, body: Any = None) -> Any:
        answer = self.service.request(
            method, path, headers=self.admin_headers, json=body if body is not None else None
        )
        assert answer.status_code == status, answer.text
        return answer.json() if answer.content else None

    def wait_until(self, moment: datetime) -> None:
        import time

        delay = moment.timestamp() - time.time() + 0.05
        if delay > 0:
            time.sleep(delay)


def _send(service: Any, refused: Refused, request_id: str) -> Any:
    return (refused.client or service).request(
        refused.method,
        refused.path,
        headers={**refused.headers, "X-Request-ID": request_id},
        content=b'{"data": {}}' if refused.method == "POST" else None,
    )


def _shape(answer: Any) -> tuple[set[str], list[tuple[str, str]]]:
    """The header names, and every header but the request id as (name, value) pairs."""
    items = [(name.lower(), value) for name, value in answer.headers.multi_items()]
    return {name for name, _ in items}, sorted(item for item in items if item[0] != "x-request-id")


@pytest.fixture(scope="module")
def elsewhere(service_settings: Any) -> Any:
    """Another instance of the tenant API on the same stack, trusting a cached key for a
    minute (so a deletion made through `service` is not seen here by identification)."""
    plugin = TenantGatePlugin(service_settings, key_cache_ttl_seconds=60.0)
    tenant_api = Router("/", route_handlers=[TenantController], middleware=plugin.tenant_middleware)
    with TestClient(Litestar(route_handlers=[tenant_api], plugins=[plugin])) as client:
        yield client


@pytest.fixture(scope="module")
def reference(service: Any) -> Any:
    """The plainest refusal: the tenant API without any credentials."""
    answer = service.get("/v1/me")
    assert answer.status_code == 403
    return answer


@pytest.mark.parametrize("case", list(CASES))
def test_every_failed_authentication_is_the_same_403(
    case, service, make_tenant, admin_headers, elsewhere, reference
):
    refused = CASES[case](Context(service, make_tenant, admin_headers, elsewhere))
    request_id = f"auth-{uuid.uuid4().hex}"

    answer = eventually(lambda: _send(service, refused, request_id), 403)

    assert answer.status_code == 403, answer.text
    assert answer.content == FORBIDDEN
    assert _shape(answer) == _shape(reference)
    assert answer.headers.get_list("x-request-id") == [request_id]


def test_a_refusal_carries_only_its_own_request_id(service):
    """Nothing of an earlier refusal (its request id) shows up in a later one."""
    ids = [f"rid-{n}-{uuid.uuid4().hex[:8]}" for n in range(3)]
    for path in ("/v1/me", "/admin/v1/plans"):
        for request_id in ids:
            answer = service.get(path, headers={"X-Request-ID": request_id})
            assert answer.status_code == 403
            assert answer.headers.get_list("x-request-id") == [request_id]


def test_the_refusal_does_not_depend_on_the_request_body(service):
    """The 403 comes before the body is read: a body too large or not JSON changes nothing."""
    headers = {"Authorization": f"Bearer {generate_key()}", "Content-Type": "application/json"}
    for content in (b"{not json", b"x" * (2 * 1024 * 1024)):
        answer = service.post("/v1/items", headers=headers, content=content)
        assert answer.status_code == 403
        assert answer.content == FORBIDDEN
