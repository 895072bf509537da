"""A pooled connection never carries a tenant into the next use: after a request, a rolled
back transaction or a cancelled one, it is back to the login role and the default
search_path, exactly like a fresh connection."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from uuid import UUID, uuid4

import asyncpg
import pytest
from isolation_helpers import as_the_service, create_tenant, serving

from tenantgate.app import create_app
from tenantgate.db import Database
from tenantgate.errors import TenantGoneError
from tenantgate.naming import TenantNames
from tenantgate.plugin import RESOURCES_STATE_KEY

pytestmark = [pytest.mark.servers, pytest.mark.anyio, pytest.mark.pgbouncer]

STATE_SQL = """
SELECT current_user::text AS current_user, session_user::text AS session_user,
       current_setting('role') AS role, current_setting('search_path') AS search_path,
       pg_catalog.txid_current_if_assigned() IS NULL AS no_transaction_id
"""


async def _state(connection):
    return dict(await connection.fetchrow(STATE_SQL))


@pytest.fixture
async def fresh_state(service_settings):
    connection = await asyncpg.connect(
        service_settings.database.url, **as_the_service(service_settings)
    )
    try:
        return await _state(connection)
    finally:
        await connection.close()


@pytest.fixture
async def pool_of_one(service_settings):
    pool = await asyncpg.create_pool(
        service_settings.database.url, min_size=0, max_size=1, **as_the_service(service_settings)
    )
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
def names(make_tenant):
    return TenantNames.of(UUID(make_tenant().id))


async def _count(pool, names, item_id):
    async with Database(pool).transaction(names) as connection:
        return await connection.fetchval("SELECT count(*) FROM items WHERE id = $1", item_id)


async def test_after_requests_the_pooled_connection_is_back_to_defaults(
    service_settings, admin_headers, fresh_state
):
    settings = replace(
        service_settings, database=replace(service_settings.database, pool_max_size=1)
    )
    app = create_app(settings)
    async with serving(app) as client:
        first = await create_tenant(client, admin_headers)
        second = await create_tenant(client, admin_headers)
        for caller in (first, second, first):
            created = await client.post("/v1/items", json={"data": {}}, headers=caller.headers)
            assert created.status_code == 201, created.text
            listed = await client.get("/v1/items", headers=caller.headers)
            assert listed.status_code == 200
            missing = await client.get(f"/v1/items/{uuid4()}", headers=caller.headers)
            assert missing.status_code == 404

        pool = app.state[RESOURCES_STATE_KEY].database.pool
        assert pool.get_max_size() == 1
        async with pool.acquire() as connection:
            assert await _state(connection) == fresh_state


async def test_a_transaction_that_raises_leaves_no_tenant_state(pool_of_one, names, fresh_state):
    item_id = uuid4()

    async def insert_then_fail():
        async with Database(pool_of_one).transaction(names) as connection:
            await connection.execute("INSERT INTO items (id, data) VALUES ($1, '{}')", item_id)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await insert_then_fail()

    async with pool_of_one.acquire() as connection:
        assert await _state(connection) == fresh_state
    assert await _count(pool_of_one, names, item_id) == 0


async def test_a_transaction_failed_by_postgres_leaves_no_tenant_state(
    pool_of_one, names, fresh_state
):
    item_id = uuid4()

    async def insert_then_divide_by_zero():
        async with Database(pool_of_one).transaction(names) as connection:
            await connection.execute("INSERT INTO items (id, data) VALUES ($1, '{}')", item_id)
            await connection.execute("SELECT 1 / 0")

    with pytest.raises(asyncpg.DivisionByZeroError):
        await insert_then_divide_by_zero()

    async with pool_of_one.acquire() as connection:
        assert await _state(connection) == fresh_state
    assert await _count(pool_of_one, names, item_id) == 0


async def test_a_cancelled_transaction_leaves_no_tenant_state(pool_of_one, names, fresh_state):
    item_id = uuid4()
    inside = asyncio.Event()

    async def slow():
        async with Database(pool_of_one).transaction(names) as connection:
            await connection.execute("INSERT INTO items (id, data) VALUES ($1, '{}')", item_id)
            inside.set()
            await connection.execute("SELECT pg_sleep(10)")

    task = asyncio.create_task(slow())
    await inside.wait()
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    async with asyncio.timeout(5):
        async with pool_of_one.acquire() as connection:
            assert await _state(connection) == fresh_state
    assert await _count(pool_of_one, names, item_id) == 0


async def test_committed_work_persists_and_the_connection_is_still_reset(
    pool_of_one, names, fresh_state
):
    item_id = uuid4()

    async with Database(pool_of_one).transaction(names) as connection:
        await connection.execute("INSERT INTO items (id, data) VALUES ($1, '{}')", item_id)
        assert (await _state(connection))["current_user"] == names.role

    async with pool_of_one.acquire() as connection:
        assert await _state(connection) == fresh_state
    assert await _count(pool_of_one, names, item_id) == 1


async def test_a_transaction_whose_tenant_role_is_gone_rolls_itself_back(pool_of_one, fresh_state):
    """The scope statements fail after BEGIN (a request racing its tenant's deletion): the
    transaction is rolled back there and then, not left for the pool to find."""
    complaints = []
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: complaints.append(context["message"]))
    gone = TenantNames.of(uuid4())

    async def use_gone_tenant():
        async with Database(pool_of_one).transaction(gone) as connection:
            await connection.fetch("SELECT 1")

    try:
        with pytest.raises(TenantGoneError) as raised:
            await use_gone_tenant()
        assert "does not exist" in str(raised.value.__cause__)
        async with pool_of_one.acquire() as connection:
            assert await _state(connection) == fresh_state
    finally:
        loop.set_exception_handler(previous)
    assert complaints == []


async def test_when_the_rollback_itself_fails_the_original_error_survives(
    pool_of_one, names, fresh_state
):
    """The connection is busy when the body fails (a query still running on it): the rollback
    cannot run, the connection is dropped rather than pooled, and the body's error is the
    one raised."""
    item_id = uuid4()

    async def fail_while_busy():
        async with Database(pool_of_one).transaction(names) as connection:
            await connection.execute("INSERT INTO items (id, data) VALUES ($1, '{}')", item_id)
            busy = asyncio.create_task(connection.execute("SELECT pg_sleep(0.5)"))
            await asyncio.sleep(0.05)
            try:
                raise RuntimeError("the body's own error")
            finally:
                busy.cancel()

    with pytest.raises(RuntimeError, match="the body's own error"):
        await fail_while_busy()

    async with asyncio.timeout(5), pool_of_one.acquire() as connection:
        assert await _state(connection) == fresh_state
    assert await _count(pool_of_one, names, item_id) == 0
