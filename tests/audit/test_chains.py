"""The audit log is append-only and hash-chained: the service's role cannot change or remove a
record, concurrent writers never fork a chain, and `verify` names the first record a superuser
edited, deleted or reordered behind the triggers' back."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import asyncpg
import pytest

from tenantgate.audit import AuditEvent, append, verify
from tenantgate.cli.audit import run_verify
from tenantgate.db import Database

pytestmark = pytest.mark.servers


def _events(tenant_id: uuid.UUID | None, count: int) -> list[AuditEvent]:
    return [
        AuditEvent(
            actor="tenant" if tenant_id else "admin",
            method="POST",
            path=f"/v1/items/{n}",
            status=201,
            tenant_id=tenant_id,
            operation={"n": str(n)},
        )
        for n in range(count)
    ]


async def _append(url: str, batches: list[list[AuditEvent]]) -> None:
    async with asyncpg.create_pool(url, min_size=0, max_size=10) as pool:
        database = Database(pool)

        async def one(batch: list[AuditEvent]) -> None:
            async with database.transaction() as connection:
                await append(connection, batch)

        await asyncio.gather(*(one(batch) for batch in batches))


async def _verify(url: str) -> Any:
    async with asyncpg.create_pool(url, min_size=0, max_size=2) as pool:
        return await verify(Database(pool))


async def _superuser(url: str, *statements: str) -> list[Any]:
    connection: Any = await asyncpg.connect(url)
    try:
        results = []
        for statement in statements:
            results.append(await connection.fetch(statement))
        return results
    finally:
        await connection.close()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET status = 200",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ],
)
def test_the_service_role_can_neither_change_nor_remove_a_record(
    statement: str, scratch_database: Any
) -> None:
    asyncio.run(_append(scratch_database.service_url, [_events(None, 3)]))

    async def attempt() -> None:
        connection: Any = await asyncpg.connect(scratch_database.service_url)
        try:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(attempt())
    assert asyncio.run(_verify(scratch_database.service_url)).checked == 3


def test_fifty_concurrent_writers_never_fork_a_chain(scratch_database: Any) -> None:
    tenant = uuid.uuid4()
    batches = [_events(tenant, 2) for _ in range(50)] + [_events(None, 1) for _ in range(10)]
    asyncio.run(_append(scratch_database.service_url, batches))

    report = asyncio.run(_verify(scratch_database.service_url))
    assert (report.ok, report.checked) == (True, 110)
    (rows,) = asyncio.run(
        _superuser(
            scratch_database.superuser_url,
            f"SELECT seq FROM audit_log WHERE chain = '{tenant}' ORDER BY seq",
        )
    )
    assert [row["seq"] for row in rows] == list(range(1, 101))


TAMPERING = {
    "edited": ["UPDATE audit_log SET status = 500 WHERE chain = '{chain}' AND seq = 3"],
    "deleted": ["DELETE FROM audit_log WHERE chain = '{chain}' AND seq = 3"],
    "reordered": [  # records 3 and 4 swap places
        "UPDATE audit_log SET seq = 1000 WHERE chain = '{chain}' AND seq = 3",
        "UPDATE audit_log SET seq = 3 WHERE chain = '{chain}' AND seq = 4",
        "UPDATE audit_log SET seq = 4 WHERE chain = '{chain}' AND seq = 1000",
    ],
}


@pytest.mark.parametrize("how", sorted(TAMPERING))
def test_verify_names_the_first_record_tampered_with(how: str, scratch_database: Any) -> None:
    tenant = uuid.uuid4()
    asyncio.run(_append(scratch_database.service_url, [_events(tenant, 6), _events(None, 2)]))
    assert asyncio.run(_verify(scratch_database.service_url)).ok

    chain = str(tenant)
    (before,) = asyncio.run(
        _superuser(
            scratch_database.superuser_url,
            f"SELECT id, seq FROM audit_log WHERE chain = '{chain}' ORDER BY seq",
        )
    )
    ids = {row["seq"]: row["id"] for row in before}
    asyncio.run(
        _superuser(
            scratch_database.superuser_url,
            "SET session_replication_role = replica",  # the triggers stop accidents, not this
            *(statement.format(chain=chain) for statement in TAMPERING[how]),
        )
    )

    report = asyncio.run(_verify(scratch_database.service_url))
    assert not report.ok
    expected = {"edited": ids[3], "deleted": ids[4], "reordered": ids[4]}[how]
    assert report.first_bad == expected, report.problem

    environ = {
        "TENANTGATE_DATABASE_URL": scratch_database.service_url,
        "TENANTGATE_REDIS_URL": "redis://127.0.0.1:1/0",
        "TENANTGATE_ADMIN_TOKEN": "audit-test-token-0123456789",
        "TENANTGATE_KEY_PEPPER": "ab" * 32,
    }
    out = _Lines()
    assert run_verify(environ=environ, stdout=out, stderr=_Lines()) == 1
    assert json.loads(out.text)["first_bad"] == str(expected)


class _Lines:
    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        pass
