"""Provisioning and migrating tenants in PostgreSQL: atomic creation, complete deletion,
concurrency, and migrations over a thousand schemas that resume after an interruption."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import time
import uuid
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest

from tenantgate.cli.migrate import run_migrate
from tenantgate.db import provisioning
from tenantgate.db.fleet import migrate_everything
from tenantgate.db.migrator import Migration, MigrationReport, load_migrations, migrate_public
from tenantgate.db.provisioning import NewTenant, create_tenant, delete_tenant
from tenantgate.naming import TenantNames

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tenantgate.tenancy.keyring import KeyIssuer

pytestmark = pytest.mark.servers

NOTE_COLUMN = Migration(2, "note", "ALTER TABLE items ADD COLUMN note text")
VERSION_2 = (*load_migrations("tenant"), NOTE_COLUMN)


def _tenant(name: str = "acme") -> NewTenant:
    return NewTenant(name=name, plan="free", tier="standard", custom_domain=None)


async def _traces(connection: asyncpg.Connection, tenant_id: uuid.UUID) -> dict[str, Any]:
    """What PostgreSQL holds of a tenant: its row, role, schema and keys."""
    names = TenantNames.of(tenant_id)
    return {
        "row": await connection.fetchval("SELECT count(*) FROM tenants WHERE id = $1", tenant_id),
        "role": await connection.fetchval(
            "SELECT count(*) FROM pg_roles WHERE rolname = $1", names.role
        ),
        "schema": await connection.fetchval(
            "SELECT count(*) FROM pg_namespace WHERE nspname = $1", names.schema
        ),
        "keys": await connection.fetchval(
            "SELECT count(*) FROM api_keys WHERE tenant_id = $1", tenant_id
        ),
    }


NOTHING = {"row": 0, "role": 0, "schema": 0, "keys": 0}


async def _versions(admin_url: str) -> dict[str, int]:
    """Every tenant schema's migration version, read as the superuser."""
    connection = await asyncpg.connect(admin_url)
    try:
        schemas = [
            row["nspname"]
            for row in await connection.fetch(
                r"SELECT nspname FROM pg_namespace WHERE nspname LIKE 't\_%' ORDER BY 1"
            )
        ]
        versions: dict[str, int] = {}
        for start in range(0, len(schemas), 200):
            union = " UNION ALL ".join(
                f"SELECT '{schema}' AS s, max(version) AS v FROM \"{schema}\".schema_migrations"
                for schema in schemas[start : start + 200]
            )
            versions.update({row["s"]: row["v"] for row in await connection.fetch(union)})
        return versions
    finally:
        await connection.close()


async def _shapes(admin_url: str) -> dict[str, str]:
    """Every tenant schema's tables, columns and indexes, as one comparable string each."""
    connection = await asyncpg.connect(admin_url)
    try:
        rows = await connection.fetch(
            r"""
            SELECT n.nspname AS schema,
                   string_agg(
                       c.relname || ':' || c.relkind::text || coalesce('(' || (
                           SELECT string_agg(
                                      a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                                      || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END,
                                      ', ' ORDER BY a.attnum)
                             FROM pg_attribute a
                            WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                       ) || ')', ''),
                       '; ' ORDER BY c.relname) AS shape
              FROM pg_namespace n JOIN pg_class c ON c.relnamespace = n.oid
             WHERE n.nspname LIKE 't\_%'
             GROUP BY n.nspname
            """
        )
        return {row["schema"]: row["shape"] for row in rows}
    finally:
        await connection.close()


async def _wait_for_other_backends(admin_url: str, database: str) -> None:
    """Until the server has noticed every connection of an aborted run is gone (and so has
    rolled back its transactions)."""
    connection = await asyncpg.connect(admin_url)
    try:
        for _ in range(200):
            others = await connection.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = $1 AND pid <> pg_backend_pid()",
                database,
            )
            if others == 0:
                return
            await asyncio.sleep(0.05)
        raise AssertionError("connections of the interrupted run did not go away")
    finally:
        await connection.close()


# -- creation is all or nothing -------------------------------------------------------------


BROKEN = Migration(2, "broken", "ALTER TABLE no_such_table ADD COLUMN x int")


@pytest.mark.parametrize("failure", ["migration", "role", "first key"])
def test_a_failure_part_way_through_creation_leaves_nothing_behind(
    failure: str,
    service_database_url: str,
    key_issuer: KeyIssuer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tenant_id = uuid.uuid4()
    names = TenantNames.of(tenant_id)
    monkeypatch.setattr(provisioning, "uuid4", lambda: tenant_id)

    async def scenario() -> None:
        connection = await asyncpg.connect(service_database_url)
        try:
            key = key_issuer.issue(name="default", expires_at=None).row
            migrations: Sequence[Migration] | None = None
            expected: type[Exception] = asyncpg.PostgresError
            if failure == "migration":
                migrations = (*load_migrations("tenant"), BROKEN)
                expected = asyncpg.UndefinedTableError
            elif failure == "role":
                # Someone else holds the role name: CREATE ROLE fails after the row went in.
                await connection.execute(f'CREATE ROLE "{names.role}" NOLOGIN')
                expected = asyncpg.DuplicateObjectError
            else:
                # The first key clashes with an existing key: the last step fails.
                other = await connection.fetchval("SELECT id FROM api_keys LIMIT 1")
                if other is None:
                    pre_id = uuid.uuid4()
                    monkeypatch.setattr(provisioning, "uuid4", lambda: pre_id)
                    await create_tenant(
                        connection,
                        _tenant("other"),
                        key_issuer.issue(name=None, expires_at=None).row,
                    )
                    monkeypatch.setattr(provisioning, "uuid4", lambda: tenant_id)
                    other = await connection.fetchval("SELECT id FROM api_keys LIMIT 1")
                key = dataclasses.replace(key, id=other)
                expected = asyncpg.UniqueViolationError

            with pytest.raises(expected):
                await create_tenant(connection, _tenant(), key, migrations=migrations)

            traces = await _traces(connection, tenant_id)
            if failure == "role":
                await connection.execute(f'DROP ROLE "{names.role}"')
                traces["role"] -= 1  # the one we made, not the tenant's
            assert traces == NOTHING
            assert not connection.is_in_transaction()
        finally:
            await connection.close()

    asyncio.run(scenario())


def test_a_created_tenant_has_its_row_role_schema_tables_and_key(
    service_database_url: str, key_issuer: KeyIssuer
) -> None:
    async def scenario() -> None:
        connection = await asyncpg.connect(service_database_url)
        try:
            row, key_row = await create_tenant(
                connection, _tenant(), key_issuer.issue(name="default", expires_at=None).row
            )
            tenant_id = row["id"]
            assert uuid.UUID(str(tenant_id)).version == 4
            assert await _traces(connection, tenant_id) == {
                "row": 1,
                "role": 1,
                "schema": 1,
                "keys": 1,
            }
            names = TenantNames.of(tenant_id)
            assert (row["schema_name"], row["role_name"]) == (names.schema, names.role)
            assert key_row["tenant_id"] == tenant_id
            # The role cannot log in, and the service role can act as it without inheriting.
            role = await connection.fetchrow(
                "SELECT rolcanlogin, rolsuper, rolcreaterole, rolbypassrls FROM pg_roles "
                "WHERE rolname = $1",
                names.role,
            )
            assert dict(role) == {
                "rolcanlogin": False,
                "rolsuper": False,
                "rolcreaterole": False,
                "rolbypassrls": False,
            }
            owner = await connection.fetchval(
                "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = $1",
                names.schema,
            )
            assert owner == names.role
            async with connection.transaction():
                await connection.execute(names.scope_sql)
                assert await connection.fetchval("SELECT max(version) FROM schema_migrations") == 1
                assert await connection.fetchval("SELECT count(*) FROM items") == 0
            assert await delete_tenant(connection, tenant_id)
            assert await _traces(connection, tenant_id) == NOTHING
            assert not await delete_tenant(connection, tenant_id)
        finally:
            await connection.close()

    asyncio.run(scenario())


def test_tenant_ids_are_random_uuid4s(service_database_url: str, key_issuer: KeyIssuer) -> None:
    async def scenario() -> list[uuid.UUID]:
        connection = await asyncpg.connect(service_database_url)
        made: list[uuid.UUID] = []
        try:
            for _ in range(3):
                row, _key = await create_tenant(
                    connection, _tenant(), key_issuer.issue(name=None, expires_at=None).row
                )
                made.append(row["id"])
        finally:
            for tenant_id in made:
                await delete_tenant(connection, tenant_id)
            await connection.close()
        return made

    made = asyncio.run(scenario())
    assert all(tenant_id.version == 4 for tenant_id in made)
    assert len(set(made)) == 3
    # Not sequential: no shared prefix beyond chance (the first 8 hex digits of three
    # random ids collide with probability ~2^-31).
    assert len({tenant_id.hex[:8] for tenant_id in made}) == 3


# -- deletion ------------------------------------------------------------------------------


def test_deleting_a_tenant_drops_schema_role_and_keys_and_others_keep_working(
    service: Any, admin_headers: dict[str, str], make_tenant: Any, service_database_url: str
) -> None:
    doomed = make_tenant()
    survivor = make_tenant()
    extra_key = service.post(
        f"/admin/v1/tenants/{doomed.id}/keys", json={"name": "second"}, headers=admin_headers
    )
    assert extra_key.status_code == 201, extra_key.text
    for tenant in (doomed, survivor):
        made = service.post("/v1/items", json={"data": {"n": 1}}, headers=tenant.headers)
        assert made.status_code == 201, made.text
    doomed_id = uuid.UUID(doomed.id)

    async def traces() -> dict[str, Any]:
        connection = await asyncpg.connect(service_database_url)
        try:
            return await _traces(connection, doomed_id)
        finally:
            await connection.close()

    assert asyncio.run(traces()) == {"row": 1, "role": 1, "schema": 1, "keys": 2}

    answer = service.delete(f"/admin/v1/tenants/{doomed.id}", headers=admin_headers)
    assert answer.status_code == 204, answer.text

    assert asyncio.run(traces()) == NOTHING
    assert service.get(f"/admin/v1/tenants/{doomed.id}", headers=admin_headers).status_code == 404
    assert (
        service.delete(f"/admin/v1/tenants/{doomed.id}", headers=admin_headers).status_code == 404
    )
    for key in (doomed.key, extra_key.json()["key"]):
        assert service.get("/v1/me", headers={"Authorization": f"Bearer {key}"}).status_code == 403

    assert service.get("/v1/me", headers=survivor.headers).status_code == 200
    listed = service.get("/v1/items", headers=survivor.headers)
    assert listed.status_code == 200
    assert [item["data"] for item in listed.json()["items"]] == [{"n": 1}]
    again = service.post("/v1/items", json={"data": {"n": 2}}, headers=survivor.headers)
    assert again.status_code == 201
    # And new tenants can still be made.
    assert service.get("/v1/me", headers=make_tenant().headers).status_code == 200


# -- concurrency ---------------------------------------------------------------------------


async def _create_many(
    pool: asyncpg.Pool, issuer: KeyIssuer, count: int, concurrency: int
) -> list[uuid.UUID]:
    gate = asyncio.Semaphore(concurrency)

    async def one(number: int) -> uuid.UUID:
        async with gate, pool.acquire() as connection:
            row, _key = await create_tenant(
                connection,
                _tenant(f"tenant {number}"),
                issuer.issue(name="default", expires_at=None).row,
            )
            tenant_id: uuid.UUID = row["id"]
            return tenant_id

    return list(await asyncio.gather(*(one(number) for number in range(count))))


async def _delete_many(
    pool: asyncpg.Pool, tenant_ids: Sequence[uuid.UUID], concurrency: int
) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def one(tenant_id: uuid.UUID) -> None:
        async with gate, pool.acquire() as connection:
            assert await delete_tenant(connection, tenant_id)

    await asyncio.gather(*(one(tenant_id) for tenant_id in tenant_ids))


def test_twenty_tenants_created_at_once_all_succeed_also_while_others_are_deleted(
    fresh_database: Any, key_issuer: KeyIssuer
) -> None:
    async def scenario() -> None:
        connection = await asyncpg.connect(fresh_database.url)
        try:
            await migrate_public(connection)
        finally:
            await connection.close()
        async with asyncpg.create_pool(fresh_database.url, min_size=20, max_size=40) as pool:
            for _round in range(3):
                first = await _create_many(pool, key_issuer, 20, concurrency=20)
                assert len(set(first)) == 20
                # Creating and deleting at once: CREATE ROLE, GRANT and DROP ROLE side by side.
                second, _ = await asyncio.gather(
                    _create_many(pool, key_issuer, 20, concurrency=20),
                    _delete_many(pool, first, concurrency=20),
                )
                assert await pool.fetchval("SELECT count(*) FROM tenants") == 20
                await _delete_many(pool, second, concurrency=20)
                assert await pool.fetchval("SELECT count(*) FROM tenants") == 0
            assert (
                await pool.fetchval(r"SELECT count(*) FROM pg_namespace WHERE nspname LIKE 't\_%'")
                == 0
            )

    asyncio.run(scenario())


# -- migrations ----------------------------------------------------------------------------


def test_a_thousand_tenants_are_created_migrated_interrupted_and_resumed(
    fresh_database: Any, key_issuer: KeyIssuer
) -> None:
    count = 1000

    async def scenario() -> dict[str, float]:
        timings: dict[str, float] = {}
        connection = await asyncpg.connect(fresh_database.url)
        try:
            await migrate_public(connection)
        finally:
            await connection.close()

        async with asyncpg.create_pool(fresh_database.url, min_size=0, max_size=16) as pool:
            started = time.perf_counter()
            tenant_ids = await _create_many(pool, key_issuer, count, concurrency=16)
            timings["create"] = time.perf_counter() - started
        assert len(set(tenant_ids)) == count
        versions = await _versions(fresh_database.admin_url)
        assert len(versions) == count
        assert set(versions.values()) == {1}

        # Nothing to do yet: every schema is up to date.
        started = time.perf_counter()
        report = await migrate_everything(fresh_database.url, concurrency=8)
        timings["noop run"] = time.perf_counter() - started
        assert (report.total, report.up_to_date, report.migrated, report.failed) == (
            count,
            count,
            0,
            {},
        )

        # Version 2 arrives; the run is interrupted once at least 300 schemas are done.
        enough = asyncio.Event()

        def watch(progress: MigrationReport) -> None:
            if progress.migrated >= 300:
                enough.set()

        started = time.perf_counter()
        run = asyncio.create_task(
            migrate_everything(
                fresh_database.url, concurrency=8, migrations=VERSION_2, on_progress=watch
            )
        )
        waiter = asyncio.create_task(enough.wait())
        await asyncio.wait({run, waiter}, return_when=asyncio.FIRST_COMPLETED)
        assert not run.done(), "the run finished before it could be interrupted"
        run.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await run
        waiter.cancel()
        await _wait_for_other_backends(fresh_database.admin_url, fresh_database.name)

        versions = await _versions(fresh_database.admin_url)
        at_2 = sum(1 for version in versions.values() if version == 2)
        at_1 = sum(1 for version in versions.values() if version == 1)
        assert at_2 >= 300
        assert at_1 >= 1
        assert at_1 + at_2 == count
        # No schema is half-way: a schema has the new column exactly when it is at version 2.
        shapes = await _shapes(fresh_database.admin_url)
        for schema, version in versions.items():
            assert ("note text" in shapes[schema]) == (version == 2), schema

        report = await migrate_everything(fresh_database.url, concurrency=8, migrations=VERSION_2)
        timings["migrate"] = time.perf_counter() - started
        assert report.failed == {}
        assert (report.total, report.migrated, report.up_to_date) == (count, at_1, at_2)

        versions = await _versions(fresh_database.admin_url)
        assert len(versions) == count
        assert set(versions.values()) == {2}
        shapes = await _shapes(fresh_database.admin_url)
        assert len(shapes) == count
        assert len(set(shapes.values())) == 1, "tenant schemas differ in shape"
        assert "note text" in next(iter(shapes.values()))

        async with asyncpg.create_pool(fresh_database.url, min_size=0, max_size=16) as pool:
            started = time.perf_counter()
            await _delete_many(pool, tenant_ids, concurrency=16)
            timings["delete"] = time.perf_counter() - started
            assert await pool.fetchval("SELECT count(*) FROM tenants") == 0
            roles = await pool.fetchval(
                "SELECT count(*) FROM pg_roles WHERE rolname = ANY($1::text[])",
                [TenantNames.of(tenant_id).role for tenant_id in tenant_ids],
            )
            assert roles == 0
        assert await _versions(fresh_database.admin_url) == {}
        return timings

    timings = asyncio.run(scenario())
    print(  # shown with -s or -rA: the numbers the brief asks for
        "1,000 tenants: "
        + ", ".join(f"{step} {seconds:.1f} s" for step, seconds in timings.items())
    )
    assert timings["create"] < 60


def test_a_schema_that_fails_is_reported_left_behind_and_finished_by_the_next_run(
    fresh_database: Any, key_issuer: KeyIssuer
) -> None:
    async def setup() -> list[uuid.UUID]:
        connection = await asyncpg.connect(fresh_database.url)
        try:
            await migrate_public(connection)
        finally:
            await connection.close()
        async with asyncpg.create_pool(fresh_database.url, min_size=0, max_size=4) as pool:
            return await _create_many(pool, key_issuer, 6, concurrency=4)

    tenant_ids = asyncio.run(setup())
    doomed = sorted(tenant_ids, key=lambda tenant_id: tenant_id.hex)[:2]
    doomed_schemas = ", ".join(f"'{TenantNames.of(tenant_id).schema}'" for tenant_id in doomed)
    flaky = Migration(
        2,
        "note",
        f"""
        DO $$ BEGIN
            IF current_schema() IN ({doomed_schemas}) THEN
                RAISE EXCEPTION 'injected failure in %', current_schema();
            END IF;
        END $$;
        ALTER TABLE items ADD COLUMN note text
        """,
    )
    environ = {"TENANTGATE_DATABASE_URL": fresh_database.url, **_other_settings()}

    stderr = io.StringIO()
    assert (
        run_migrate(environ=environ, stderr=stderr, migrations=(*load_migrations("tenant"), flaky))
        == 1
    )
    output = stderr.getvalue()
    assert "migrated 4, up to date 0, failed 2 of 6 tenant schemas" in output
    for tenant_id in doomed:
        assert f"tenant {tenant_id} failed" in output
        assert "injected failure" in output

    versions = asyncio.run(_versions(fresh_database.admin_url))
    assert sorted(versions.values()) == [1, 1, 2, 2, 2, 2]
    assert {versions[TenantNames.of(tenant_id).schema] for tenant_id in doomed} == {1}

    stderr = io.StringIO()
    assert run_migrate(environ=environ, stderr=stderr, migrations=VERSION_2) == 0
    assert "migrated 2, up to date 4, failed 0 of 6 tenant schemas" in stderr.getvalue()
    assert set(asyncio.run(_versions(fresh_database.admin_url)).values()) == {2}


def _other_settings() -> dict[str, str]:
    """Settings that `migrate` does not use but `Settings.from_env` requires."""
    return {
        "TENANTGATE_REDIS_URL": "redis://127.0.0.1:1/0",
        "TENANTGATE_ADMIN_TOKEN": "admin-token-0123456789",
        "TENANTGATE_KEY_PEPPER": "00" * 32,
    }


# -- the command --------------------------------------------------------------------------


def test_the_migrate_command_migrates_and_prints_a_summary(
    run_tenantgate, service_environment: dict[str, str], make_tenant: Any
) -> None:
    make_tenant()
    make_tenant()

    result = run_tenantgate("migrate", "--concurrency", "3", environ=service_environment)

    assert result.returncode == 0, result.stderr
    summary = [line for line in result.stderr.splitlines() if "tenant schemas" in line]
    assert len(summary) == 1
    assert " failed 0 of " in summary[0]
    assert "migrated 0, up to date " in summary[0]  # the service migrates tenants on creation
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_the_migrate_command_without_a_database_url_names_it_and_exits_2(
    run_tenantgate,
    service_environment: dict[str, str],
) -> None:
    environ = {
        name: value
        for name, value in service_environment.items()
        if name != "TENANTGATE_DATABASE_URL"
    }
    result = run_tenantgate("migrate", environ=environ)
    assert result.returncode == 2
    assert "TENANTGATE_DATABASE_URL" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_migrate_command_refuses_a_concurrency_below_one(
    run_tenantgate,
    service_environment: dict[str, str],
) -> None:
    result = run_tenantgate("migrate", "--concurrency", "0", environ=service_environment)
    assert result.returncode == 2
    assert "usage:" in result.stderr


def test_the_migrate_command_reports_an_unreachable_database_and_exits_1(run_tenantgate) -> None:
    environ = {
        "TENANTGATE_DATABASE_URL": "postgresql://u:secret@127.0.0.1:1/db",
        **_other_settings(),
    }
    result = run_tenantgate("migrate", environ=environ)
    assert result.returncode == 1
    assert "127.0.0.1:1" in result.stderr
    assert "secret" not in result.stderr
    assert "Traceback" not in result.stderr
