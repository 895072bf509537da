"""A revocation reaches every instance: at once through Redis pub/sub, even where the key's
record would otherwise be trusted for a minute; and, with Redis unreachable, within the record's
lifetime (the backstop)."""

from __future__ import annotations

import time
from contextlib import ExitStack
from typing import Any

import pytest
from litestar.testing import TestClient

from tenantgate.app import create_app
from tenantgate.plugin import TenantGatePlugin
from tenantgate.settings import Settings

pytestmark = pytest.mark.servers


def _refused_within(client: Any, headers: dict[str, str], seconds: float) -> float:
    """Seconds until ``client`` refuses ``headers``' key (fails after ``seconds``)."""
    started = time.monotonic()
    while client.get("/v1/me", headers=headers).status_code == 200:
        assert time.monotonic() - started < seconds, "the revoked key is still accepted"
        time.sleep(0.02)
    return time.monotonic() - started


def _instances(environ: dict[str, str], *ttls: float) -> tuple[ExitStack, list[Any]]:
    stack = ExitStack()
    clients = [
        stack.enter_context(
            TestClient(
                create_app(
                    plugin=TenantGatePlugin(Settings.from_env(environ), key_cache_ttl_seconds=ttl)
                )
            )
        )
        for ttl in ttls
    ]
    return stack, clients


def test_a_revocation_is_announced_to_the_other_instances(
    service_environment: dict[str, str], make_tenant: Any, admin_headers: dict[str, str]
) -> None:
    tenant = make_tenant()
    stack, (revoker, other) = _instances(service_environment, 60.0, 60.0)
    with stack:
        assert other.get("/v1/me", headers=tenant.headers).status_code == 200  # cached: 60 s
        revoked = revoker.delete(
            f"/admin/v1/tenants/{tenant.id}/keys/{tenant.key_id}", headers=admin_headers
        )
        assert revoked.status_code == 204
        _refused_within(other, tenant.headers, seconds=5.0)


def test_a_suspension_is_announced_too(
    service_environment: dict[str, str], make_tenant: Any, admin_headers: dict[str, str]
) -> None:
    tenant = make_tenant()
    stack, (operator, other) = _instances(service_environment, 60.0, 60.0)
    with stack:
        assert other.get("/v1/me", headers=tenant.headers).status_code == 200
        suspended = operator.patch(
            f"/admin/v1/tenants/{tenant.id}", json={"status": "suspended"}, headers=admin_headers
        )
        assert suspended.status_code == 200, suspended.text
        _refused_within(other, tenant.headers, seconds=5.0)


def test_without_redis_the_records_lifetime_is_the_bound(
    service_environment: dict[str, str],
    make_tenant: Any,
    admin_headers: dict[str, str],
    own_redis: Any,
) -> None:
    redis_server = own_redis()
    environ = {**service_environment, "TENANTGATE_REDIS_URL": redis_server.service_url}
    tenant = make_tenant()
    stack, (revoker, other) = _instances(environ, 1.0, 1.0)
    with stack:
        assert other.get("/v1/me", headers=tenant.headers).status_code == 200
        redis_server.stop()
        revoked = revoker.delete(
            f"/admin/v1/tenants/{tenant.id}/keys/{tenant.key_id}", headers=admin_headers
        )
        assert revoked.status_code == 204
        _refused_within(other, tenant.headers, seconds=3.0)
