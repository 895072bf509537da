"""Migrating tenant schemas: a thousand schemas migrated, interrupted and resumed; a schema
that fails is reported and finished by the next run; the `tenantgate migrate` command."""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
import uuid
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest
from lifecycle_helpers import (
    create_many,
    delete_many,
    schema_shapes,
    schema_versions,
    wait_for_other_backends,
)

from tenantgate.cli.migrate import run_migrate
from tenantgate.db.fleet import migrate_everything
from tenantgate.db.migrator import Migration, MigrationReport, load_migrations, migrate_public
from tenantgate.naming import TenantNames

if TYPE_CHECKING:
    from tenantgate.tenancy.keyring import KeyIssuer

pytestmark = pytest.mark.servers

NOTE_COLUMN = Migration(2, "note", "ALTER TABLE items ADD COLUMN note text")
VERSION_2 = (*load_migrations("tenant"), NOTE_COLUMN)


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
            tenant_ids = await create_many(pool, key_issuer, count, concurrency=16)
            timings["create"] = time.perf_counter() - started
        assert len(set(tenant_ids)) == count
        versions = await schema_versions(fresh_database.admin_url)
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
        await wait_for_other_backends(fresh_database.admin_url, fresh_database.name)

        versions = await schema_versions(fresh_database.admin_url)
        at_2 = sum(1 for version in versions.values() if version == 2)
        at_1 = sum(1 for version in versions.values() if version == 1)
        assert at_2 >= 300
        assert at_1 >= 1
        assert at_1 + at_2 == count
        # No schema is half-way: a schema has the new column exactly when it is at version 2.
        shapes = await schema_shapes(fresh_database.admin_url)
        for schema, version in versions.items():
            assert ("note text" in shapes[schema]) == (version == 2), schema

        report = await migrate_everything(fresh_database.url, concurrency=8, migrations=VERSION_2)
        timings["migrate"] = time.perf_counter() - started
        assert report.failed == {}
        assert (report.total, report.migrated, report.up_to_date) == (count, at_1, at_2)

        versions = await schema_versions(fresh_database.admin_url)
        assert len(versions) == count
        assert set(versions.values()) == {2}
        shapes = await schema_shapes(fresh_database.admin_url)
        assert len(shapes) == count
        assert len(set(shapes.values())) == 1, "tenant schemas differ in shape"
        assert "note text" in next(iter(shapes.values()))

        async with asyncpg.create_pool(fresh_database.url, min_size=0, max_size=16) as pool:
            started = time.perf_counter()
            await delete_many(pool, tenant_ids, concurrency=16)
            timings["delete"] = time.perf_counter() - started
            assert await pool.fetchval("SELECT count(*) FROM tenants") == 0
            roles = await pool.fetchval(
                "SELECT count(*) FROM pg_roles WHERE rolname = ANY($1::text[])",
                [TenantNames.of(tenant_id).role for tenant_id in tenant_ids],
            )
            assert roles == 0
        assert await schema_versions(fresh_database.admin_url) == {}
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
            return await create_many(pool, key_issuer, 6, concurrency=4)

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

    versions = asyncio.run(schema_versions(fresh_database.admin_url))
    assert sorted(versions.values()) == [1, 1, 2, 2, 2, 2]
    assert {versions[TenantNames.of(tenant_id).schema] for tenant_id in doomed} == {1}

    stderr = io.StringIO()
    assert run_migrate(environ=environ, stderr=stderr, migrations=VERSION_2) == 0
    assert "migrated 2, up to date 4, failed 0 of 6 tenant schemas" in stderr.getvalue()
    assert set(asyncio.run(schema_versions(fresh_database.admin_url)).values()) == {2}


def _other_settings() -> dict[str, str]:
    """Settings that `migrate` does not use but `Settings.from_env` requires."""
    return {
        "TENANTGATE_REDIS_URL": "redis://127.0.0.1:1/0",
        "TENANTGATE_ADMIN_TOKEN": "admin-token-0123456789",
        "TENANTGATE_KEY_PEPPER": "00" * 32,
    }


# -- the command --------------------------------------------------------------------------


@pytest.mark.pgbouncer
def test_the_migrate_command_migrates_and_prints_a_summary(
    run_tenantgate, service_environment: dict[str, str], make_tenant: Any
) -> None:
    make_tenant()
    make_tenant()

    result = run_tenantgate("migrate", "--concurrency", "3", environ=service_environment)

    assert result.returncode == 0, result.stderr
    # Progress lines ("1/2 tenant schemas (…)") come first, then the one summary line.
    summary = [line for line in result.stderr.splitlines() if line.endswith(" tenant schemas")]
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
