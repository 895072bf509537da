"""Provisioning tenants in steps: every layer made in order and undone in reverse when a step
fails or the process dies; repair finishes what a crash left; deletion removes everything;
creation and deletion at once, by many."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import sys
import textwrap
import time
import uuid
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest
from lifecycle_helpers import (
    NOTHING,
    create_many,
    delete_many,
    new_tenant,
    provisioner,
    traces,
)

from tenantgate.db import Database
from tenantgate.db.migrator import Migration, load_migrations, migrate_public
from tenantgate.db.provisioning import postgres_steps
from tenantgate.naming import TenantNames
from tenantgate.tenancy import provisioning
from tenantgate.tenancy.provisioning import Provisioner, TenantUnderway

if TYPE_CHECKING:
    from tenantgate.tenancy.keyring import KeyIssuer

pytestmark = pytest.mark.servers

STEP_NAMES = [step.name for step in postgres_steps()]


class InjectedFailure(Exception):
    pass


@dataclasses.dataclass
class Failing:
    """A step that does its work (or not), then fails."""

    step: Any
    after_its_work: bool

    @property
    def name(self) -> str:
        return self.step.name

    async def apply(self, tenant: TenantUnderway) -> None:
        if self.after_its_work:
            await self.step.apply(tenant)
        raise InjectedFailure(self.step.name)

    async def undo(self, tenant: TenantUnderway) -> None:
        await self.step.undo(tenant)


def _run(scenario: Any) -> Any:
    return asyncio.run(scenario())


# -- creation is all or nothing -------------------------------------------------------------


@pytest.mark.parametrize("after_its_work", [False, True], ids=["before", "after"])
@pytest.mark.parametrize("failing", range(len(STEP_NAMES)), ids=STEP_NAMES)
def test_each_step_failing_in_turn_undoes_every_step_before_it(
    failing: int,
    after_its_work: bool,
    service_database_url: str,
    key_issuer: KeyIssuer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tenant_id = uuid.uuid4()
    monkeypatch.setattr(provisioning, "uuid4", lambda: tenant_id)

    async def scenario() -> None:
        async with asyncpg.create_pool(service_database_url, min_size=0, max_size=2) as pool:
            steps = postgres_steps()
            steps[failing] = Failing(steps[failing], after_its_work)
            with pytest.raises(InjectedFailure):
                await Provisioner(Database(pool), steps).create(
                    new_tenant(), key_issuer.issue(name="default", expires_at=None).row
                )
            async with pool.acquire() as connection:
                assert await traces(connection, tenant_id) == NOTHING

    _run(scenario)


BROKEN = Migration(2, "broken", "ALTER TABLE no_such_table ADD COLUMN x int")


@pytest.mark.parametrize("failure", ["migration", "role", "first key"])
def test_a_real_failure_part_way_through_creation_leaves_nothing_behind(
    failure: str,
    service_database_url: str,
    postgres_admin_url: str,
    key_issuer: KeyIssuer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tenant_id = uuid.uuid4()
    names = TenantNames.of(tenant_id)
    monkeypatch.setattr(provisioning, "uuid4", lambda: tenant_id)

    async def scenario() -> None:
        async with asyncpg.create_pool(service_database_url, min_size=0, max_size=2) as pool:
            key = key_issuer.issue(name="default", expires_at=None).row
            migrations: list[Migration] | None = None
            expected: type[Exception] = asyncpg.PostgresError
            if failure == "migration":
                migrations = [*load_migrations("tenant"), BROKEN]
                expected = asyncpg.UndefinedTableError
            elif failure == "role":
                # Someone else holds the role name: it is neither adopted nor dropped.
                superuser = await asyncpg.connect(postgres_admin_url)
                try:
                    await superuser.execute(f'CREATE ROLE "{names.role}" NOLOGIN')
                finally:
                    await superuser.close()
                expected = asyncpg.DuplicateObjectError
            else:
                # The first key clashes with another tenant's key: the last step fails.
                monkeypatch.setattr(provisioning, "uuid4", uuid.uuid4)
                other_tenant = await provisioner(pool).create(
                    new_tenant("other"), key_issuer.issue(name=None, expires_at=None).row
                )
                monkeypatch.setattr(provisioning, "uuid4", lambda: tenant_id)
                other = await pool.fetchval(
                    "SELECT id FROM api_keys WHERE tenant_id = $1", other_tenant["id"]
                )
                key = dataclasses.replace(key, id=other)
                expected = asyncpg.UniqueViolationError

            with pytest.raises(expected):
                await provisioner(pool, migrations).create(new_tenant(), key)

            async with pool.acquire() as connection:
                found = await traces(connection, tenant_id)
            if failure == "role":
                assert found["role"] == 1, "someone else's role was dropped"
                superuser = await asyncpg.connect(postgres_admin_url)
                try:
                    await superuser.execute(f'DROP ROLE "{names.role}"')
                finally:
                    await superuser.close()
                found["role"] = 0
            assert found == NOTHING

    _run(scenario)


def test_a_taken_custom_domain_or_unknown_plan_fails_before_anything_is_made(
    service_database_url: str, key_issuer: KeyIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tenantgate.errors import ConflictError, InvalidInputError

    domain = f"api-{uuid.uuid4().hex[:8]}.example.com"
    tenant_id = uuid.uuid4()

    async def scenario() -> None:
        async with asyncpg.create_pool(service_database_url, min_size=0, max_size=2) as pool:
            making = provisioner(pool)
            first = await making.create(
                dataclasses.replace(new_tenant(), tier="enterprise", custom_domain=domain),
                key_issuer.issue(name=None, expires_at=None).row,
            )
            monkeypatch.setattr(provisioning, "uuid4", lambda: tenant_id)
            with pytest.raises(ConflictError):
                await making.create(
                    dataclasses.replace(new_tenant(), tier="enterprise", custom_domain=domain),
                    key_issuer.issue(name=None, expires_at=None).row,
                )
            with pytest.raises(InvalidInputError, match="unknown plan 'no-such-plan'"):
                await making.create(
                    dataclasses.replace(new_tenant(), plan="no-such-plan"),
                    key_issuer.issue(name=None, expires_at=None).row,
                )
            async with pool.acquire() as connection:
                assert await traces(connection, tenant_id) == NOTHING
            assert await making.delete(first["id"])

    _run(scenario)


def test_a_created_tenant_has_its_row_role_schema_tables_and_key(
    service_database_url: str, key_issuer: KeyIssuer
) -> None:
    async def scenario() -> None:
        async with asyncpg.create_pool(service_database_url, min_size=0, max_size=2) as pool:
            making = provisioner(pool)
            key = key_issuer.issue(name="default", expires_at=None).row
            row = await making.create(new_tenant(), key)
            tenant_id = row["id"]
            assert row["status"] == "active"
            assert uuid.UUID(str(tenant_id)).version == 4
            connection = await asyncpg.connect(service_database_url)
            try:
                assert await traces(connection, tenant_id) == {
                    "row": 1,
                    "role": 1,
                    "schema": 1,
                    "keys": 1,
                }
                names = TenantNames.of(tenant_id)
                stored = await connection.fetchrow(
                    "SELECT schema_name, role_name FROM tenants WHERE id = $1", tenant_id
                )
                assert (stored["schema_name"], stored["role_name"]) == (names.schema, names.role)
                assert (
                    await connection.fetchval(
                        "SELECT tenant_id FROM api_keys WHERE id = $1", key.id
                    )
                    == tenant_id
                )
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
                    assert (
                        await connection.fetchval("SELECT max(version) FROM schema_migrations") == 1
                    )
                    assert await connection.fetchval("SELECT count(*) FROM items") == 0
                assert await making.delete(tenant_id)
                assert await traces(connection, tenant_id) == NOTHING
                assert not await making.delete(tenant_id)
            finally:
                await connection.close()

    _run(scenario)


def test_tenant_ids_are_random_uuid4s(service_database_url: str, key_issuer: KeyIssuer) -> None:
    async def scenario() -> list[uuid.UUID]:
        async with asyncpg.create_pool(service_database_url, min_size=0, max_size=2) as pool:
            making = provisioner(pool)
            made = [
                (
                    await making.create(
                        new_tenant(), key_issuer.issue(name=None, expires_at=None).row
                    )
                )["id"]
                for _ in range(3)
            ]
            for tenant_id in made:
                await making.delete(tenant_id)
            return made

    made = _run(scenario)
    assert all(tenant_id.version == 4 for tenant_id in made)
    assert len(set(made)) == 3
    # Not sequential: no shared prefix beyond chance (the first 8 hex digits of three
    # random ids collide with probability ~2^-31).
    assert len({tenant_id.hex[:8] for tenant_id in made}) == 3


# -- a crash between steps, and repair ------------------------------------------------------

_KILLED_SCRIPT = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    import asyncpg
    from tenantgate.db import Database
    from tenantgate.db.provisioning import postgres_steps
    from tenantgate.db.tenants import NewTenant
    from tenantgate.keys import KeyHasher
    from tenantgate.tenancy.keyring import KeyIssuer
    from tenantgate.tenancy.provisioning import Provisioner

    url, pepper, phase = sys.argv[1], bytes.fromhex(sys.argv[2]), sys.argv[3]
    position = int(sys.argv[4])

    class Killer:
        name = "killer"
        async def apply(self, tenant):
            print(tenant.id, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        async def undo(self, tenant):
            if phase == "delete":
                os.kill(os.getpid(), signal.SIGKILL)

    async def main():
        async with asyncpg.create_pool(url, min_size=0, max_size=2) as pool:
            steps = postgres_steps()
            key = KeyIssuer(KeyHasher(pepper)).issue(name=None, expires_at=None).row
            tenant = NewTenant("doomed", "free", "standard", None)
            if phase == "create":
                steps.insert(position, Killer())
                await Provisioner(Database(pool), steps).create(tenant, key)
            else:
                row = await Provisioner(Database(pool), steps).create(tenant, key)
                print(row["id"], flush=True)
                steps.insert(position, Killer())
                await Provisioner(Database(pool), steps).delete(row["id"])

    asyncio.run(main())
    """
)


def _kill_while_provisioning(
    phase: str, position: int, service_environment: dict[str, str], database_url: str
) -> uuid.UUID:
    """Run a provisioning in a process that SIGKILLs itself before step `position` (of the
    creation, or of the deletion's undo); the tenant it was working on."""
    killed = subprocess.run(
        [
            sys.executable,
            "-c",
            _KILLED_SCRIPT,
            database_url,
            service_environment["TENANTGATE_KEY_PEPPER"],
            phase,
            str(position),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert killed.returncode == -9, killed.stderr
    return uuid.UUID(killed.stdout.split()[-1])


def _left_behind(database_url: str, tenant_id: uuid.UUID) -> tuple[str | None, dict[str, int]]:
    """The tenant's status (None: no row) and what PostgreSQL holds of it."""

    async def look() -> tuple[str | None, dict[str, int]]:
        connection = await asyncpg.connect(database_url)
        try:
            status = await connection.fetchval(
                "SELECT status FROM tenants WHERE id = $1", tenant_id
            )
            return status, await traces(connection, tenant_id)
        finally:
            await connection.close()

    return asyncio.run(look())


@pytest.mark.parametrize(
    ("phase", "position"),
    [("create", position) for position in range(len(STEP_NAMES) + 1)] + [("delete", 1)],
    ids=[f"create-before-step-{p}" for p in range(len(STEP_NAMES) + 1)] + ["delete-mid-way"],
)
def test_a_process_killed_between_steps_leaves_a_tenant_that_repair_removes(
    phase: str,
    position: int,
    service_environment: dict[str, str],
    service_database_url: str,
    run_tenantgate: Any,
) -> None:
    tenant_id = _kill_while_provisioning(phase, position, service_environment, service_database_url)
    status, before = _left_behind(service_database_url, tenant_id)
    if status is not None:  # the session's service may have repaired it already
        assert status == ("provisioning" if phase == "create" else "deleting")
        assert before["row"] == 1

    repaired = run_tenantgate("tenants", "repair", environ=service_environment)
    assert repaired.returncode == 0, repaired.stderr
    assert "Traceback" not in repaired.stderr
    assert _left_behind(service_database_url, tenant_id) == (None, NOTHING)


@pytest.mark.pgbouncer
def test_the_next_start_of_the_service_removes_what_a_killed_process_left(
    service_environment: dict[str, str], service_database_url: str, service_settings: Any
) -> None:
    from litestar.testing import TestClient

    from tenantgate import create_app

    tenant_id = _kill_while_provisioning("create", 2, service_environment, service_database_url)
    assert _left_behind(service_database_url, tenant_id)[0] == "provisioning"

    with TestClient(create_app(service_settings)):
        deadline = time.monotonic() + 15
        while _left_behind(service_database_url, tenant_id) != (None, NOTHING):
            assert time.monotonic() < deadline, "the start-up repair did not remove it"
            time.sleep(0.2)


def test_repair_leaves_a_tenant_that_a_live_process_is_provisioning_alone(
    service_database_url: str, key_issuer: KeyIssuer
) -> None:
    async def scenario() -> None:
        async with asyncpg.create_pool(service_database_url, min_size=0, max_size=4) as pool:
            entered, release = asyncio.Event(), asyncio.Event()
            seen: list[uuid.UUID] = []

            class Waiting:
                name = "waiting"

                async def apply(self, tenant: TenantUnderway) -> None:
                    seen.append(tenant.id)
                    entered.set()
                    await release.wait()

                async def undo(self, tenant: TenantUnderway) -> None:
                    pass

            steps = [*postgres_steps(), Waiting()]
            creating = asyncio.create_task(
                Provisioner(Database(pool), steps).create(
                    new_tenant(), key_issuer.issue(name=None, expires_at=None).row
                )
            )
            await entered.wait()
            report = await provisioner(pool).repair()
            assert seen[0] in report.busy
            assert seen[0] not in report.removed
            release.set()
            row = await creating
            assert row["status"] == "active"
            assert await provisioner(pool).delete(row["id"])

    _run(scenario)


@pytest.mark.pgbouncer
def test_a_tenant_being_provisioned_is_not_served_and_not_changed(
    service: Any, admin_headers: dict[str, str], service_database_url: str, key_issuer: KeyIssuer
) -> None:
    async def scenario() -> None:
        async with asyncpg.create_pool(service_database_url, min_size=0, max_size=4) as pool:
            entered, release = asyncio.Event(), asyncio.Event()

            class Waiting:
                name = "waiting"

                async def apply(self, tenant: TenantUnderway) -> None:
                    entered.set()
                    await release.wait()

                async def undo(self, tenant: TenantUnderway) -> None:
                    pass

            issued = key_issuer.issue(name=None, expires_at=None)
            creating = asyncio.create_task(
                Provisioner(Database(pool), [*postgres_steps(), Waiting()]).create(
                    new_tenant(), issued.row
                )
            )
            await entered.wait()
            tenant_id = await pool.fetchval(
                "SELECT tenant_id FROM api_keys WHERE id = $1", issued.row.id
            )
            headers = {"Authorization": f"Bearer {issued.secret}"}
            # The service runs in its own thread and event loop.
            me = await asyncio.to_thread(service.get, "/v1/me", headers=headers)
            assert me.status_code == 403
            patched = await asyncio.to_thread(
                service.patch,
                f"/admin/v1/tenants/{tenant_id}",
                json={"status": "active"},
                headers=admin_headers,
            )
            assert patched.status_code == 404
            release.set()
            row = await creating
            assert await provisioner(pool).delete(row["id"])

    _run(scenario)


# -- deletion ------------------------------------------------------------------------------


@pytest.mark.pgbouncer
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

    async def doomed_traces() -> dict[str, Any]:
        connection = await asyncpg.connect(service_database_url)
        try:
            return await traces(connection, doomed_id)
        finally:
            await connection.close()

    assert asyncio.run(doomed_traces()) == {"row": 1, "role": 1, "schema": 1, "keys": 2}

    answer = service.delete(f"/admin/v1/tenants/{doomed.id}", headers=admin_headers)
    assert answer.status_code == 204, answer.text

    assert asyncio.run(doomed_traces()) == NOTHING
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
                first = await create_many(pool, key_issuer, 20, concurrency=20)
                assert len(set(first)) == 20
                # Creating and deleting at once: CREATE ROLE, GRANT and DROP ROLE side by side.
                second, _ = await asyncio.gather(
                    create_many(pool, key_issuer, 20, concurrency=20),
                    delete_many(pool, first, concurrency=20),
                )
                assert await pool.fetchval("SELECT count(*) FROM tenants") == 20
                await delete_many(pool, second, concurrency=20)
                assert await pool.fetchval("SELECT count(*) FROM tenants") == 0
            assert (
                await pool.fetchval(r"SELECT count(*) FROM pg_namespace WHERE nspname LIKE 't\_%'")
                == 0
            )

    asyncio.run(scenario())
