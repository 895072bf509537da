"""Fixtures of the audit tests: a scratch database of the service's own, for tests that tamper
with the log (the session's database is shared by every test, and must keep verifying)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from tenantgate.db.migrator import migrate_public


def _on_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


@dataclass(frozen=True)
class ScratchDatabase:
    service_url: str
    """The service's role, on the scratch database (migrated)."""
    superuser_url: str
    """A superuser on the scratch database: what tampering needs."""


@pytest.fixture
def scratch_database(
    service_environment: dict[str, str], postgres_admin_url: str
) -> Iterator[ScratchDatabase]:
    name = f"audit_scratch_{secrets.token_hex(4)}"
    service_url = service_environment["TENANTGATE_DATABASE_URL"]
    owner = urlsplit(service_url).username

    async def admin(statement: str) -> None:
        connection: Any = await asyncpg.connect(postgres_admin_url)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    async def migrate(url: str) -> None:
        connection: Any = await asyncpg.connect(url)
        try:
            await migrate_public(connection)
        finally:
            await connection.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}" OWNER "{owner}"'))
    try:
        scratch = ScratchDatabase(
            service_url=_on_database(service_url, name),
            superuser_url=_on_database(postgres_admin_url, name),
        )
        asyncio.run(migrate(scratch.service_url))
        yield scratch
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
