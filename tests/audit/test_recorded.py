"""What the audit log records, as clients and operators see it: each change of a tenant's items
exactly once, in the same transaction as the change (none for a change rolled back); operator
requests, cache writes and refused identifications soon after their answer; a tenant reads its
own records only — by PostgreSQL's row-level security, not only by the query."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import asyncpg
import pytest

from tenantgate.audit import record_change
from tenantgate.db import Database
from tenantgate.keys import generate_key
from tenantgate.naming import TenantNames

pytestmark = pytest.mark.servers


def _own_records(service: Any, tenant: Any) -> list[dict[str, Any]]:
    answer = service.get("/v1/audit?limit=100", headers=tenant.headers)
    assert answer.status_code == 200, answer.text
    records: list[dict[str, Any]] = answer.json()["records"]
    return records


def _operator_records(service: Any, admin_headers: dict[str, str], **query: str) -> list[Any]:
    answer = service.get("/admin/v1/audit", params={"limit": "100", **query}, headers=admin_headers)
    assert answer.status_code == 200, answer.text
    records: list[Any] = answer.json()["records"]
    return records


def _eventually(check: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (outcome := check()):
        assert time.monotonic() < deadline, "not recorded in time"
        time.sleep(0.1)
    return outcome


def test_each_item_change_is_recorded_once_with_its_tenant_and_key(
    service: Any, make_tenant: Any
) -> None:
    tenant = make_tenant(plan="pro")
    created = service.post("/v1/items", json={"data": {"v": 1}}, headers=tenant.headers).json()
    url = f"/v1/items/{created['id']}"
    assert service.put(url, json={"data": {"v": 2}}, headers=tenant.headers).status_code == 200
    assert service.get(url, headers=tenant.headers).status_code == 200  # a read: not recorded
    assert service.delete(url, headers=tenant.headers).status_code == 204

    records = _own_records(service, tenant)
    about_item = [r for r in records if r["operation"].get("item_id") == created["id"]]
    assert [(r["method"], r["status"]) for r in reversed(about_item)] == [
        ("POST", 201),
        ("PUT", 200),
        ("DELETE", 204),
    ]
    for record in about_item:
        assert record["tenant_id"] == tenant.id
        assert record["key_id"] == tenant.key_id
        assert record["actor"] == "tenant"
        assert record["request_id"]
        assert len(record["hash"]) == len(record["prev_hash"]) == 64
    assert about_item[0]["prev_hash"] == about_item[1]["hash"]  # newest first, chained


def test_a_change_rolled_back_leaves_no_record(
    make_tenant: Any, service_environment: dict[str, str], service: Any
) -> None:
    tenant = make_tenant()
    names = TenantNames.of(uuid.UUID(tenant.id))
    scope: dict[str, Any] = {"method": "POST", "path": "/v1/items", "state": {}, "headers": []}

    async def change_then_fail(database: Database) -> None:
        async with database.transaction(names) as connection:
            await record_change(connection, names, scope, 201, {"item_id": "rolled-back"})
            raise RuntimeError("the change fails after its record was written")

    async def scenario() -> None:
        url = service_environment["TENANTGATE_DATABASE_URL"]
        async with asyncpg.create_pool(url, min_size=0, max_size=2) as pool:
            with pytest.raises(RuntimeError):
                await change_then_fail(Database(pool))

    asyncio.run(scenario())
    assert not any(
        r["operation"].get("item_id") == "rolled-back" for r in _own_records(service, tenant)
    )


def test_operator_requests_cache_writes_and_refusals_are_recorded(
    service: Any, make_tenant: Any, admin_headers: dict[str, str]
) -> None:
    tenant = make_tenant()
    plan = f"audited-{uuid.uuid4().hex[:8]}"
    body = {"rate_per_second": 5, "burst": 5}
    assert service.put(f"/admin/v1/plans/{plan}", json=body, headers=admin_headers).is_success
    assert service.put("/v1/cache/k", json={"value": 1}, headers=tenant.headers).status_code == 204
    made_up = {"Authorization": f"Bearer {generate_key()}"}
    request_id = uuid.uuid4().hex
    assert service.get("/v1/me", headers={**made_up, "X-Request-ID": request_id}).status_code == 403

    _eventually(
        lambda: any(
            r["path"] == f"/admin/v1/plans/{plan}" and r["actor"] == "admin" and r["status"] == 200
            for r in _operator_records(service, admin_headers)
        )
    )
    _eventually(
        lambda: any(
            r["path"] == "/v1/cache/k" and r["method"] == "PUT" and r["status"] == 204
            for r in _own_records(service, tenant)
        )
    )
    refusal = _eventually(
        lambda: [
            r for r in _operator_records(service, admin_headers) if r["request_id"] == request_id
        ]
    )
    assert refusal[0]["status"] == 403
    assert refusal[0]["tenant_id"] is None


def test_a_tenant_reads_only_its_own_records_even_in_sql(
    service: Any, make_tenant: Any, service_environment: dict[str, str]
) -> None:
    first, second = make_tenant(), make_tenant()
    for tenant in (first, second):
        assert service.post("/v1/items", json={"data": {}}, headers=tenant.headers).is_success

    assert {r["tenant_id"] for r in _own_records(service, first)} == {first.id}
    assert {r["tenant_id"] for r in _own_records(service, second)} == {second.id}

    async def as_first_tenant() -> set[Any]:
        connection: Any = await asyncpg.connect(service_environment["TENANTGATE_DATABASE_URL"])
        try:
            async with connection.transaction():
                await connection.execute(TenantNames.of(uuid.UUID(first.id)).scope_sql)
                rows = await connection.fetch("SELECT DISTINCT tenant_id FROM public.audit_log")
                return {str(row["tenant_id"]) for row in rows}
        finally:
            await connection.close()

    assert asyncio.run(as_first_tenant()) == {first.id}


def test_the_operator_filters_by_tenant_and_pages_newest_first(
    service: Any, make_tenant: Any, admin_headers: dict[str, str]
) -> None:
    tenant = make_tenant(plan="pro")
    for _ in range(5):
        assert service.post("/v1/items", json={"data": {}}, headers=tenant.headers).is_success
    seen: list[str] = []
    cursor: str | None = None
    while True:
        query = {"tenant_id": tenant.id, "limit": "2", **({"cursor": cursor} if cursor else {})}
        page = service.get("/admin/v1/audit", params=query, headers=admin_headers).json()
        seen += [r["id"] for r in page["records"]]
        assert all(r["tenant_id"] == tenant.id for r in page["records"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 5


def test_the_session_logs_chains_verify(service: Any, admin_headers: dict[str, str]) -> None:
    answer = service.post("/admin/v1/audit/verify", headers=admin_headers)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["ok"] is True
    assert body["first_bad"] is None
    assert body["checked"] > 0
