"""A request whose tenant is deleted while it runs gets the very 403 of a request that came a
moment later — not a 500 for a table that vanished under it."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest
from isolation_helpers import as_the_service

from tenantgate.db import Database
from tenantgate.errors import TenantGoneError
from tenantgate.naming import TenantNames

pytestmark = [pytest.mark.servers, pytest.mark.pgbouncer]


def test_a_transaction_whose_tenant_is_deleted_under_it_is_tenant_gone(
    service: Any, make_tenant: Any, admin_headers: dict[str, str], service_settings: Any
) -> None:
    tenant = make_tenant()
    names = TenantNames.of(uuid.UUID(tenant.id))

    async def read_while_deleted(database: Database) -> None:
        async with database.transaction(names) as connection:
            deleted = await asyncio.to_thread(
                service.delete, f"/admin/v1/tenants/{tenant.id}", headers=admin_headers
            )
            assert deleted.status_code == 204, deleted.text
            await connection.fetch("SELECT * FROM items")

    async def scenario() -> None:
        url = service_settings.database.url
        options = as_the_service(service_settings)
        async with asyncpg.create_pool(url, min_size=0, max_size=2, **options) as pool:
            with pytest.raises(TenantGoneError):
                await read_while_deleted(Database(pool))

    asyncio.run(scenario())


def test_a_missing_table_of_a_living_tenant_is_not_mistaken_for_a_deletion(
    make_tenant: Any, service_settings: Any
) -> None:
    tenant = make_tenant()
    names = TenantNames.of(uuid.UUID(tenant.id))

    async def read_a_missing_table(database: Database) -> None:
        async with database.transaction(names) as connection:
            await connection.fetch("SELECT * FROM no_such_table")

    async def scenario() -> None:
        url = service_settings.database.url
        options = as_the_service(service_settings)
        async with asyncpg.create_pool(url, min_size=0, max_size=2, **options) as pool:
            with pytest.raises(asyncpg.UndefinedTableError):
                await read_a_missing_table(Database(pool))

    asyncio.run(scenario())
