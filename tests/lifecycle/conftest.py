"""Fixtures for provisioning and migration tests that talk to PostgreSQL directly."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from tenantgate.keys import KeyHasher
from tenantgate.tenancy.keyring import KeyIssuer

if TYPE_CHECKING:
    from collections.abc import Iterator


def with_database(url: str, database: str) -> str:
    """`url` pointing at another database on the same server."""
    return urlunsplit(urlsplit(url)._replace(path="/" + database))


@dataclass(frozen=True)
class FreshDatabase:
    """A database of its own on the session's server, owned by the service's role."""

    name: str
    url: str
    """The service role's connection to it."""
    admin_url: str
    """The superuser's connection to it, for inspecting what the service role cannot see."""


@pytest.fixture
def fresh_database(stack_info: Any, service_environment: dict[str, str]) -> Iterator[FreshDatabase]:
    """A new, empty database owned by the service's role; dropped afterwards, together with
    every tenant role made in it (roles are cluster-wide, databases are not)."""
    service_url = service_environment["TENANTGATE_DATABASE_URL"]
    owner = urlsplit(service_url).username
    name = f"tg_test_{uuid.uuid4().hex[:12]}"
    admin_url = stack_info.postgres_admin_url

    async def create() -> None:
        connection = await asyncpg.connect(admin_url)
        try:
            await connection.execute(f'CREATE DATABASE "{name}" OWNER "{owner}"')
        finally:
            await connection.close()

    async def drop() -> None:
        connection = await asyncpg.connect(with_database(admin_url, name))
        try:
            exists = await connection.fetchval("SELECT to_regclass('public.tenants') IS NOT NULL")
            roles = (
                [
                    row["role_name"]
                    for row in await connection.fetch("SELECT role_name FROM tenants")
                ]
                if exists
                else []
            )
        finally:
            await connection.close()
        connection = await asyncpg.connect(admin_url)
        try:
            await connection.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            # Owned objects died with the database, so the roles can go now.
            for start in range(0, len(roles), 500):
                batch = ", ".join(f'"{role}"' for role in roles[start : start + 500])
                await connection.execute(f"DROP ROLE IF EXISTS {batch}")
        finally:
            await connection.close()

    asyncio.run(create())
    try:
        yield FreshDatabase(
            name=name,
            url=with_database(service_url, name),
            admin_url=with_database(admin_url, name),
        )
    finally:
        asyncio.run(drop())


@pytest.fixture
def service_database_url(service_environment: dict[str, str]) -> str:
    """The service role's direct connection to the session service's own database (not
    through PgBouncer on that route: the tests using it inspect, or provision with leases,
    below the service)."""
    return service_environment.get(
        "TENANTGATE_DATABASE_DIRECT_URL", service_environment["TENANTGATE_DATABASE_URL"]
    )


@pytest.fixture(scope="session")
def key_issuer(service_environment: dict[str, str]) -> KeyIssuer:
    """Issues keys under the session service's pepper, so they work against `service`."""
    return KeyIssuer(KeyHasher(bytes.fromhex(service_environment["TENANTGATE_KEY_PEPPER"])))
