"""S3 down: file routes answer 503 with Retry-After, everything else is served as usual,
invalid paths are still 422 (decided before S3 is contacted), a tenant cannot be created
(503, its PostgreSQL steps undone) — and when S3 is back, files are served again without
restarting the service."""

from __future__ import annotations

import asyncio
import io
import time
import uuid
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest

from tenantgate.cli import ExitCode
from tenantgate.cli.tenants import run_repair
from tenantgate.naming import TenantNames

if TYPE_CHECKING:
    from tenantgate.dev import EmbeddedStack

pytestmark = pytest.mark.servers


def _left_of(service_environment: dict[str, str], name: str) -> list[dict[str, Any]]:
    async def look() -> list[dict[str, Any]]:
        connection = await asyncpg.connect(service_environment["TENANTGATE_DATABASE_URL"])
        try:
            found = []
            for row in await connection.fetch(
                "SELECT id, status FROM tenants WHERE name = $1", name
            ):
                names = TenantNames.of(row["id"])
                found.append(
                    {
                        "status": row["status"],
                        "schema": await connection.fetchval(
                            "SELECT count(*) FROM pg_namespace WHERE nspname = $1", names.schema
                        ),
                        "keys": await connection.fetchval(
                            "SELECT count(*) FROM api_keys WHERE tenant_id = $1", row["id"]
                        ),
                    }
                )
            return found
        finally:
            await connection.close()

    return asyncio.run(look())


def test_s3_down_is_503_on_file_routes_only_and_recovery_needs_no_restart(
    make_tenant: Any,
    service: Any,
    admin_headers: dict[str, str],
    embedded_stack: EmbeddedStack,
    service_environment: dict[str, str],
) -> None:
    used, fresh = make_tenant(), make_tenant(tier="enterprise")
    assert (
        service.put("/v1/files/kept.txt", content=b"kept", headers=used.headers).status_code == 201
    )
    name = f"no-s3-{uuid.uuid4().hex[:8]}"

    embedded_stack.s3.stop()
    try:
        for tenant in (used, fresh):  # a cached tenant client, and one never used yet
            for method, path, content in (
                ("GET", "/v1/files/kept.txt", None),
                ("PUT", "/v1/files/new.txt", b"new"),
                ("DELETE", "/v1/files/kept.txt", None),
                ("GET", "/v1/files", None),
            ):
                answer = service.request(method, path, content=content, headers=tenant.headers)
                assert answer.status_code == 503, (method, path, answer.text)
                assert int(answer.headers["Retry-After"]) >= 1
                assert answer.json()["detail"] == "s3 is unavailable"
            invalid = service.get("/v1/files/a%2F%2Fb/%2E%2E/x", headers=tenant.headers)
            assert invalid.status_code == 422
        assert service.get("/v1/me", headers=used.headers).status_code == 200
        item = service.post("/v1/items", json={"data": {"x": 1}}, headers=used.headers)
        assert item.status_code == 201
        assert service.get("/healthz").status_code == 200
        assert service.get("/readyz").status_code == 503

        created = service.post("/admin/v1/tenants", json={"name": name}, headers=admin_headers)
        assert created.status_code == 503, created.text
        assert "Retry-After" in created.headers
    finally:
        embedded_stack.s3.start()

    # Back without restarting the service: the same tenant identity (persisted by SeaweedFS's
    # filer) signs again, once SeaweedFS's volume server has rejoined (InternalError, 503,
    # until then: a few seconds after the gateway answers).
    deadline = time.monotonic() + 60
    while (again := service.get("/v1/files/kept.txt", headers=used.headers)).status_code == 503:
        assert time.monotonic() < deadline, "files never came back"
        time.sleep(0.5)
    assert again.status_code == 200
    assert again.content == b"kept"
    assert (
        service.put("/v1/files/new.txt", content=b"new", headers=fresh.headers).status_code == 201
    )
    assert service.get("/readyz").status_code == 200

    # The failed creation: its PostgreSQL steps were undone; the S3 step's undo could not run,
    # so the row waits, `provisioning`, for a repair, which finishes now that S3 is back.
    assert _left_of(service_environment, name) == [
        {"status": "provisioning", "schema": 0, "keys": 0}
    ]
    assert run_repair(environ=service_environment, stderr=io.StringIO()) == ExitCode.OK
    assert _left_of(service_environment, name) == []


def test_credentials_s3_does_not_know_are_503_not_500(
    service_environment: dict[str, str], admin_headers: dict[str, str]
) -> None:
    """The service's own S3 credentials wrong (an operator's mistake, or a rotated secret):
    creating a tenant, which needs S3, is a 503 with Retry-After, never a 500, and what it
    began is undone by a repair once the credentials are right again."""
    from litestar.testing import TestClient

    from tenantgate.app import create_app
    from tenantgate.settings import Settings

    wrong = {**service_environment, "TENANTGATE_S3_ACCESS_KEY_ID": "TGUNKNOWNKEY0000"}
    name = f"wrong-s3-{uuid.uuid4().hex[:8]}"
    with TestClient(create_app(Settings.from_env(wrong))) as client:
        answer = client.post("/admin/v1/tenants", json={"name": name}, headers=admin_headers)
    assert answer.status_code == 503, answer.text
    assert "Retry-After" in answer.headers
    assert run_repair(environ=service_environment, stderr=io.StringIO()) == ExitCode.OK
    assert _left_of(service_environment, name) == []
