"""PostgreSQL itself keeps tenants apart: a tenant's role cannot read another tenant's schema,
and the service's login role, outside any tenant transaction, reads no tenant's data at all.

These queries go around the service's code on purpose, as a buggy query would.
"""

from __future__ import annotations

from uuid import UUID

import asyncpg
import pytest
from isolation_helpers import as_the_service

from tenantgate.naming import TenantNames, quote_ident

pytestmark = [pytest.mark.servers, pytest.mark.anyio, pytest.mark.pgbouncer]


@pytest.fixture
def two_tenants(service, make_tenant):
    """Tenants A and B, each with one item, as their TenantNames."""
    names = []
    for _ in range(2):
        tenant = make_tenant()
        created = service.post("/v1/items", json={"data": {}}, headers=tenant.headers)
        assert created.status_code == 201
        names.append(TenantNames.of(UUID(tenant.id)))
    return names


async def _as(connection, role, sql):
    """Run ``sql`` in a transaction acting as ``role`` (None: the login role itself)."""
    async with connection.transaction():
        if role is not None:
            await connection.execute(f"SET LOCAL ROLE {quote_ident(role)}")
        return await connection.fetch(sql)


async def test_a_tenant_role_cannot_read_another_tenants_schema(service_settings, two_tenants):
    a, b = two_tenants
    connection = await asyncpg.connect(
        service_settings.database.url, **as_the_service(service_settings)
    )
    try:
        own = await _as(connection, a.role, f"SELECT * FROM {quote_ident(a.schema)}.items")
        assert len(own) == 1
        for sql in (
            f"SELECT * FROM {quote_ident(b.schema)}.items",
            f"DELETE FROM {quote_ident(b.schema)}.items",
            f"INSERT INTO {quote_ident(b.schema)}.items (id, data) "
            "VALUES (gen_random_uuid(), '{}')",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await _as(connection, a.role, sql)
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await _as(connection, a.role, f"CREATE TABLE {quote_ident(b.schema)}.planted (x int)")
    finally:
        await connection.close()


async def test_a_tenant_role_cannot_read_the_shared_key_and_tenant_tables(
    service_settings, two_tenants
):
    a, _ = two_tenants
    connection = await asyncpg.connect(
        service_settings.database.url, **as_the_service(service_settings)
    )
    try:
        for table in ("api_keys", "tenants"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await _as(connection, a.role, f"SELECT * FROM public.{table}")
    finally:
        await connection.close()


async def test_without_a_tenant_context_queries_fail_closed(service_settings, two_tenants):
    a, _ = two_tenants
    connection = await asyncpg.connect(
        service_settings.database.url, **as_the_service(service_settings)
    )
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await _as(connection, None, f"SELECT * FROM {quote_ident(a.schema)}.items")
        with pytest.raises(asyncpg.UndefinedTableError):
            await _as(connection, None, "SELECT * FROM items")
    finally:
        await connection.close()


async def test_no_shared_table_is_named_like_a_tenant_table(service_settings, two_tenants):
    """An unqualified tenant query that somehow missed its search_path finds nothing to read."""
    a, _ = two_tenants
    connection = await asyncpg.connect(
        service_settings.database.url, **as_the_service(service_settings)
    )
    try:
        tenant_tables = {
            row["tablename"]
            for row in await connection.fetch(
                "SELECT tablename FROM pg_catalog.pg_tables WHERE schemaname = $1", a.schema
            )
        }
        search_path_tables = {
            row["tablename"]
            for row in await connection.fetch(
                "SELECT tablename FROM pg_catalog.pg_tables "
                "WHERE schemaname = ANY (current_schemas(true))"
            )
        }
    finally:
        await connection.close()
    assert "items" in tenant_tables
    assert not tenant_tables & search_path_tables


_READ = "SELECT id FROM public.tenantgate_read_item($1, $2, $3)"


async def _item_ids(connection, names):
    async with connection.transaction():
        await connection.execute(names.scope_sql)
        return [row["id"] for row in await connection.fetch("SELECT id FROM items")]


async def test_the_one_round_trip_read_reads_only_the_tenant_it_enters(
    service_settings, two_tenants
):
    """The hot read's function enters the tenant's role itself: with A's role and schema it
    finds A's item, and B's item is not there for it — nor for A's role in B's schema."""
    a, b = two_tenants
    connection = await asyncpg.connect(service_settings.database.url)
    try:
        [a_item], [b_item] = await _item_ids(connection, a), await _item_ids(connection, b)
        assert await connection.fetchval(_READ, a.role, a.schema, a_item) == a_item
        assert await connection.fetchval(_READ, a.role, a.schema, b_item) is None
        # B's schema is not even visible to A's role: its `items` does not resolve.
        with pytest.raises(asyncpg.UndefinedTableError):
            await connection.fetchval(_READ, a.role, b.schema, b_item)
    finally:
        await connection.close()


async def test_the_one_round_trip_read_leaves_the_session_as_it_found_it(
    service_settings, two_tenants
):
    a, _ = two_tenants
    connection = await asyncpg.connect(service_settings.database.url)
    try:
        [a_item] = await _item_ids(connection, a)
        login = await connection.fetchval("SELECT current_user")
        path = await connection.fetchval("SELECT current_setting('search_path')")
        async with connection.transaction():
            assert await connection.fetchval(_READ, a.role, a.schema, a_item) == a_item
            assert await connection.fetchval("SELECT current_user") == login
            assert await connection.fetchval("SELECT current_setting('search_path')") == path
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await connection.fetch(f"SELECT * FROM {quote_ident(a.schema)}.items")
    finally:
        await connection.close()


async def test_the_one_round_trip_read_refuses_roles_the_service_may_not_become(
    service_settings, two_tenants
):
    a, _ = two_tenants
    connection = await asyncpg.connect(service_settings.database.url)
    try:
        for role in ("postgres", "pg_read_all_data"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await connection.fetchval(_READ, role, a.schema, a.tenant_id)
        others = await connection.fetchval(
            "SELECT has_function_privilege('public', "
            "'public.tenantgate_read_item(text, text, uuid)', 'EXECUTE')"
        )
        assert others is False
    finally:
        await connection.close()
