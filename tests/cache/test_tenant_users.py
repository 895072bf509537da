"""Each tenant's Redis ACL user: made by provisioning, confined by Redis itself to the tenant's
namespace, removed with all the tenant's keys on deletion; a failed Redis step leaves nothing
behind in PostgreSQL or Redis; the service's own Redis user can do its job and no more."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import asyncpg
import pytest
import redis
import redis.asyncio
from redis.exceptions import NoPermissionError

from tenantgate.cache.provisioning import RedisUser, tenant_password
from tenantgate.cli import ExitCode
from tenantgate.cli.tenants import run_repair
from tenantgate.db import Database
from tenantgate.db.tenants import NewTenant
from tenantgate.dev.redis import SERVICE_USER
from tenantgate.errors import ServiceUnavailableError
from tenantgate.keys import KeyHasher
from tenantgate.naming import TenantNames
from tenantgate.tenancy import provisioning
from tenantgate.tenancy.keyring import KeyIssuer
from tenantgate.tenancy.provisioning import Provisioner, TenantUnderway
from tenantgate.tenancy.steps import service_steps

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tenantgate.dev import EmbeddedStack

pytestmark = pytest.mark.servers


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    return parts.hostname, parts.port


def _connect(url: str, username: str, password: str) -> redis.Redis:
    host, port = _host_port(url)
    return redis.Redis(host=host, port=port, username=username, password=password, socket_timeout=5)


@pytest.fixture
def admin(redis_admin_url: str) -> Iterator[redis.Redis]:
    """The `default` user: every right, for looking at what the service did."""
    client = redis.Redis.from_url(redis_admin_url, socket_timeout=5)
    try:
        yield client
    finally:
        client.close()


def _pepper(service_settings: Any) -> bytes:
    pepper: bytes = service_settings.security.key_pepper
    return pepper


def _as_tenant(redis_admin_url: str, service_settings: Any, tenant_id: str) -> redis.Redis:
    """A connection as the tenant's ACL user, its password recomputed as the service does."""
    tenant = uuid.UUID(tenant_id)
    return _connect(
        redis_admin_url,
        TenantNames.of(tenant).redis_user,
        tenant_password(_pepper(service_settings), tenant),
    )


def _key(tenant_id: str, rest: str) -> str:
    return TenantNames.of(uuid.UUID(tenant_id)).redis_namespace + rest


def _user_exists(admin: redis.Redis, tenant_id: str) -> bool:
    return admin.acl_getuser(TenantNames.of(uuid.UUID(tenant_id)).redis_user) is not None


def _tenant_keys(admin: redis.Redis, tenant_id: str) -> list[bytes]:
    return list(admin.scan_iter(match=TenantNames.of(uuid.UUID(tenant_id)).redis_pattern))


# -- a tenant's user, confined by Redis ------------------------------------------------------


REFUSED: list[tuple[str, ...]] = [
    ("KEYS", "*"),
    ("SCAN", "0"),
    ("RANDOMKEY",),
    ("DBSIZE",),
    ("FLUSHALL",),
    ("FLUSHDB",),
    ("SELECT", "1"),
    ("SWAPDB", "0", "1"),
    ("EVAL", "return 1", "0"),
    ("SCRIPT", "FLUSH"),
    ("CONFIG", "GET", "*"),
    ("ACL", "LIST"),
    ("ACL", "WHOAMI"),
    ("DEBUG", "SLEEP", "0"),
    ("MODULE", "LIST"),
    ("INFO",),
    ("CLIENT", "LIST"),
    ("PUBSUB", "CHANNELS"),
    ("MEMORY", "STATS"),
]


@pytest.mark.parametrize("command", REFUSED, ids=[" ".join(c[:2]) for c in REFUSED])
def test_a_tenants_user_is_refused_every_keyless_and_administrative_command(
    command: tuple[str, ...], make_tenant: Any, redis_admin_url: str, service_settings: Any
) -> None:
    tenant = make_tenant()
    client = _as_tenant(redis_admin_url, service_settings, tenant.id)
    try:
        with pytest.raises(NoPermissionError):
            client.execute_command(*command)
    finally:
        client.close()


def test_a_tenants_user_reads_and_writes_its_own_keys_only(
    make_tenant: Any, redis_admin_url: str, service_settings: Any, admin: redis.Redis
) -> None:
    a, b = make_tenant(), make_tenant()
    assert _user_exists(admin, a.id)
    assert _user_exists(admin, b.id)
    admin.set(_key(b.id, "x"), "b's")
    as_a = _as_tenant(redis_admin_url, service_settings, a.id)
    try:
        assert as_a.set(_key(a.id, "x"), "a's", ex=60) is True
        assert as_a.get(_key(a.id, "x")) == b"a's"
        assert 0 < as_a.ttl(_key(a.id, "x")) <= 60
        for refused in (
            lambda: as_a.get(_key(b.id, "x")),
            lambda: as_a.set(_key(b.id, "x"), "a's"),
            lambda: as_a.delete(_key(b.id, "x")),
            lambda: as_a.mget(_key(a.id, "x"), _key(b.id, "x")),
            lambda: as_a.rename(_key(a.id, "x"), _key(b.id, "y")),
            lambda: as_a.get("x"),
            lambda: as_a.copy(_key(a.id, "x"), _key(a.id, "y"), destination_db=5),
            lambda: as_a.move(_key(a.id, "x"), 5),
            lambda: as_a.publish(_key(b.id, "channel"), "hi"),
        ):
            with pytest.raises(NoPermissionError):
                refused()
        assert as_a.publish(_key(a.id, "channel"), "hi") == 0
        assert admin.get(_key(b.id, "x")) == b"b's"
    finally:
        as_a.close()


def test_a_wrong_password_does_not_log_in(make_tenant: Any, redis_admin_url: str) -> None:
    tenant = make_tenant()
    user = TenantNames.of(uuid.UUID(tenant.id)).redis_user
    client = _connect(redis_admin_url, user, tenant_password(b"another pepper!!", uuid.uuid4()))
    try:
        with pytest.raises(redis.exceptions.AuthenticationError):
            client.ping()
    finally:
        client.close()


def test_the_password_is_not_stored_in_clear(make_tenant: Any, admin: redis.Redis) -> None:
    tenant = make_tenant()
    described = admin.acl_getuser(TenantNames.of(uuid.UUID(tenant.id)).redis_user)
    assert described is not None
    assert all(len(p) == 64 for p in described["passwords"])  # Redis keeps SHA-256 only


# -- deletion --------------------------------------------------------------------------------


def test_deleting_a_tenant_removes_its_user_and_all_its_keys(
    make_tenant: Any,
    service: Any,
    admin_headers: dict[str, str],
    redis_admin_url: str,
    service_settings: Any,
    admin: redis.Redis,
) -> None:
    doomed, kept = make_tenant(), make_tenant()
    as_doomed = _as_tenant(redis_admin_url, service_settings, doomed.id)
    try:
        for number in range(1200):  # more than one SCAN/UNLINK batch
            as_doomed.set(_key(doomed.id, f"k{number}"), number)
    finally:
        as_doomed.close()
    admin.set(_key(kept.id, "x"), "kept")

    answer = service.delete(f"/admin/v1/tenants/{doomed.id}", headers=admin_headers)
    assert answer.status_code == 204, answer.text

    assert not _user_exists(admin, doomed.id)
    assert _tenant_keys(admin, doomed.id) == []
    assert _user_exists(admin, kept.id)
    assert admin.get(_key(kept.id, "x")) == b"kept"
    client = _as_tenant(redis_admin_url, service_settings, doomed.id)
    try:
        with pytest.raises(redis.exceptions.AuthenticationError):
            client.ping()
    finally:
        client.close()


# -- a failed Redis step ---------------------------------------------------------------------


class InjectedFailure(Exception):
    pass


@dataclasses.dataclass
class FailingAfterItsWork:
    """The Redis step: it does its work, then fails."""

    step: Any

    @property
    def name(self) -> str:
        return str(self.step.name)

    async def apply(self, tenant: TenantUnderway) -> None:
        await self.step.apply(tenant)
        raise InjectedFailure(self.step.name)

    async def undo(self, tenant: TenantUnderway) -> None:
        await self.step.undo(tenant)


async def _postgres_traces(pool: asyncpg.Pool, tenant_id: uuid.UUID) -> dict[str, int]:
    names = TenantNames.of(tenant_id)
    async with pool.acquire() as connection:
        return {
            "row": await connection.fetchval(
                "SELECT count(*) FROM tenants WHERE id = $1", tenant_id
            ),
            "role": await connection.fetchval(
                "SELECT count(*) FROM pg_roles WHERE rolname = $1", names.role
            ),
            "schema": await connection.fetchval(
                "SELECT count(*) FROM pg_namespace WHERE nspname = $1", names.schema
            ),
        }


NO_TRACES = {"row": 0, "role": 0, "schema": 0}


def _create_with(
    service_environment: dict[str, str],
    service_settings: Any,
    tenant_id: uuid.UUID,
    wrap: Any,
    redis_url: str | None = None,
) -> tuple[BaseException, dict[str, int]]:
    """Create a tenant through a provisioner of the service's steps, the Redis one wrapped;
    the error it raised and what PostgreSQL holds of the tenant afterwards."""
    issuer = KeyIssuer(KeyHasher(_pepper(service_settings)))

    async def scenario() -> tuple[BaseException, dict[str, int]]:
        url = service_environment["TENANTGATE_DATABASE_URL"]
        client = redis.asyncio.Redis.from_url(
            redis_url or service_environment["TENANTGATE_REDIS_URL"], socket_connect_timeout=2
        )
        try:
            async with asyncpg.create_pool(url, min_size=0, max_size=2) as pool:
                steps = service_steps(client, service_settings)
                assert isinstance(steps[-1], RedisUser)
                steps[-1] = wrap(steps[-1])
                tenant = NewTenant(name="acme", plan="free", tier="standard", custom_domain=None)
                key = issuer.issue(name="default", expires_at=None).row
                with pytest.raises(Exception) as raised:
                    await Provisioner(Database(pool), steps).create(tenant, key)
                return raised.value, await _postgres_traces(pool, tenant_id)
        finally:
            await client.aclose()

    return asyncio.run(scenario())


def test_a_redis_step_failing_after_its_work_undoes_everything(
    service_environment: dict[str, str],
    service_settings: Any,
    admin: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tenant_id = uuid.uuid4()
    monkeypatch.setattr(provisioning, "uuid4", lambda: tenant_id)
    error, traces = _create_with(
        service_environment, service_settings, tenant_id, FailingAfterItsWork
    )
    assert isinstance(error, InjectedFailure)
    assert traces == NO_TRACES
    assert not _user_exists(admin, str(tenant_id))


def test_redis_down_during_provisioning_is_503_and_undoes_the_postgres_steps(
    service: Any,
    admin_headers: dict[str, str],
    embedded_stack: EmbeddedStack,
    service_environment: dict[str, str],
) -> None:
    name = f"no-redis-{uuid.uuid4().hex[:8]}"
    embedded_stack.redis.stop()
    try:
        answer = service.post("/admin/v1/tenants", json={"name": name}, headers=admin_headers)
        assert answer.status_code == 503, answer.text
        assert "Retry-After" in answer.headers
    finally:
        embedded_stack.redis.start()

    async def left_of_it() -> list[dict[str, Any]]:
        connection = await asyncpg.connect(service_environment["TENANTGATE_DATABASE_URL"])
        try:
            rows = await connection.fetch("SELECT id, status FROM tenants WHERE name = $1", name)
            found = []
            for row in rows:
                names = TenantNames.of(row["id"])
                found.append(
                    {
                        "status": row["status"],
                        "role": await connection.fetchval(
                            "SELECT count(*) FROM pg_roles WHERE rolname = $1", names.role
                        ),
                        "schema": await connection.fetchval(
                            "SELECT count(*) FROM pg_namespace WHERE nspname = $1", names.schema
                        ),
                        "keys": await connection.fetchval(
                            "SELECT count(*) FROM api_keys WHERE tenant_id = $1", row["id"]
                        ),
                    }
                )
            return found
        finally:
            await connection.close()

    # Every PostgreSQL step was undone; the Redis user's undo could not run, so the row stays
    # `provisioning` for repair, which finishes once Redis is back.
    assert asyncio.run(left_of_it()) == [
        {"status": "provisioning", "role": 0, "schema": 0, "keys": 0}
    ]
    assert run_repair(environ=service_environment, stderr=io.StringIO()) == ExitCode.OK
    assert asyncio.run(left_of_it()) == []
    # A restarted embedded Redis keeps no ACL user but its configured ones.
    fresh = redis.Redis.from_url(embedded_stack.info.redis_admin_url, socket_timeout=5)
    try:
        users = {user if isinstance(user, str) else user.decode() for user in fresh.acl_users()}
        assert users >= {"default", SERVICE_USER}
        assert not any(user.startswith("tg_") for user in users)
    finally:
        fresh.close()


def test_redis_down_inside_the_step_is_service_unavailable(
    service_environment: dict[str, str],
    service_settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tenant_id = uuid.uuid4()
    monkeypatch.setattr(provisioning, "uuid4", lambda: tenant_id)
    nobody_there = "redis://tenantgate:x@127.0.0.1:9/0"  # the discard port: refused

    error, traces = _create_with(
        service_environment, service_settings, tenant_id, lambda step: step, nobody_there
    )
    assert isinstance(error, ServiceUnavailableError)
    # PostgreSQL is clean; the row waits, `provisioning`, for a repair that can reach Redis.
    assert traces == {"row": 1, "role": 0, "schema": 0}
    assert run_repair(environ=service_environment, stderr=io.StringIO()) == ExitCode.OK
    assert _create_traces_after_repair(service_environment, tenant_id) == NO_TRACES


def _create_traces_after_repair(
    service_environment: dict[str, str], tenant_id: uuid.UUID
) -> dict[str, int]:
    async def look() -> dict[str, int]:
        url = service_environment["TENANTGATE_DATABASE_URL"]
        async with asyncpg.create_pool(url, min_size=0, max_size=1) as pool:
            return await _postgres_traces(pool, tenant_id)

    return asyncio.run(look())


# -- the service's own user ------------------------------------------------------------------


@pytest.fixture
def as_service(service_environment: dict[str, str]) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(service_environment["TENANTGATE_REDIS_URL"], socket_timeout=5)
    try:
        yield client
    finally:
        client.close()


def test_the_service_connects_as_its_own_user_and_is_ready(
    service_environment: dict[str, str], service: Any, as_service: redis.Redis
) -> None:
    assert urlsplit(service_environment["TENANTGATE_REDIS_URL"]).username == SERVICE_USER
    assert as_service.ping() is True
    assert service.get("/readyz").status_code == 200


@pytest.mark.parametrize(
    "command",
    [
        ("GET", "t:{x}:k"),
        ("SET", "t:{x}:k", "v"),
        ("GET", "anything"),
        ("KEYS", "*"),
        ("FLUSHALL",),
        ("FLUSHDB",),
        ("CONFIG", "GET", "*"),
        ("CONFIG", "SET", "maxmemory", "1"),
        ("ACL", "LIST"),
        ("ACL", "SAVE"),
        # EVAL is the rate-limit lease script's, for keys under tg:rl:* only.
        ("EVAL", "return 1", "1", "anything"),
        ("EVALSHA", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db", "0"),
        ("SCRIPT", "FLUSH"),
        ("HSET", "anything", "f", "v"),
        ("DEBUG", "SLEEP", "0"),
        ("INFO",),
        ("CLIENT", "LIST"),
        ("SHUTDOWN",),
        ("MODULE", "LIST"),
        ("UNLINK", "not-a-tenant-key"),
    ],
    ids=lambda command: " ".join(command[:2]),
)
def test_the_service_user_is_refused_what_it_does_not_need(
    command: tuple[str, ...], as_service: redis.Redis
) -> None:
    with pytest.raises(NoPermissionError):
        as_service.execute_command(*command)


def test_a_script_of_the_service_user_may_call_only_the_lease_scripts_commands(
    as_service: redis.Redis,
) -> None:
    """Redis checks what a script calls against its caller's rules: on its own bucket key
    the service user's script may not read a string or delete it with ``DEL``."""
    assert as_service.eval("return redis.call('HSET', KEYS[1], 'f', '1')", 1, "tg:rl:{x}") == 1
    for call in ("GET", "DEL"):
        with pytest.raises(redis.ResponseError, match="can't run this command"):
            as_service.eval(f"return redis.call('{call}', KEYS[1])", 1, "tg:rl:{x}")
