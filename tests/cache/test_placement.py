"""Where a tenant's cache lives: `TENANTGATE_REDIS_ISOLATION` picks the placement, a `database`
tenant gets a logical database no other tenant holds, a server whose databases are all held
refuses a new one with a clear 409 and leaves nothing behind, and deleting a tenant empties its
database and removes its user."""

from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import asyncpg
import httpx
import pytest
import redis

from tenantgate.naming import TenantNames

pytestmark = pytest.mark.servers


def _held_databases(database_url: str) -> dict[uuid.UUID, int | None]:
    async def read() -> dict[uuid.UUID, int | None]:
        connection = await asyncpg.connect(database_url)
        try:
            rows = await connection.fetch("SELECT id, redis_database FROM tenants")
        finally:
            await connection.close()
        return {row["id"]: row["redis_database"] for row in rows}

    return asyncio.run(read())


def _database_of(database_url: str, tenant_id: str) -> int | None:
    return _held_databases(database_url)[uuid.UUID(tenant_id)]


@pytest.mark.parametrize(
    ("isolation", "tier", "own_database"),
    [
        ("auto", "standard", False),
        ("auto", "enterprise", True),
        ("namespace", "enterprise", False),
        ("namespace", "standard", False),
        ("database", "standard", True),
        ("database", "enterprise", True),
    ],
)
def test_the_isolation_setting_chooses_the_placement(
    isolation: str,
    tier: str,
    own_database: bool,
    own_redis: Any,
    app_on: Any,
    service_environment: dict[str, str],
) -> None:
    redis_server = own_redis()
    app = app_on(redis_server, redis_isolation=isolation)
    tenant = app.make_tenant(tier=tier)
    number = _database_of(service_environment["TENANTGATE_DATABASE_URL"], tenant["tenant"]["id"])
    assert (number is not None) is own_database
    assert app.put("/v1/cache/k", json={"value": 1}, headers=tenant["headers"]).status_code == 204

    admin = redis_server.client(number or 0)
    try:
        key = TenantNames.of(uuid.UUID(tenant["tenant"]["id"])).cache_key("k")
        assert admin.exists(key) == 1
    finally:
        admin.close()


def test_concurrently_made_tenants_never_share_a_database(
    served: str, admin_headers: dict[str, str], service_environment: dict[str, str]
) -> None:
    def create(_: int) -> str:
        answer = httpx.post(
            served + "/admin/v1/tenants",
            json={"name": "concurrent", "tier": "enterprise"},
            headers=admin_headers,
            timeout=30,
        )
        assert answer.status_code == 201, answer.text
        tenant_id: str = answer.json()["tenant"]["id"]
        return tenant_id

    with ThreadPoolExecutor(max_workers=6) as pool:
        made = list(pool.map(create, range(6)))

    held = _held_databases(service_environment["TENANTGATE_DATABASE_URL"])
    numbers = [held[uuid.UUID(tenant_id)] for tenant_id in made]
    assert None not in numbers
    taken = [number for number in held.values() if number is not None]
    assert len(taken) == len(set(taken))


def test_a_server_with_every_database_held_refuses_a_new_tenant_with_409(
    own_redis: Any, app_on: Any, service_environment: dict[str, str], admin_headers: dict[str, str]
) -> None:
    database_url = service_environment["TENANTGATE_DATABASE_URL"]
    held = {number for number in _held_databases(database_url).values() if number is not None}
    lowest_free = min(set(range(1, len(held) + 2)) - held)
    redis_server = own_redis(databases=lowest_free + 1)  # exactly one database left
    app = app_on(redis_server, redis_isolation="database")

    last = app.make_tenant()
    assert _database_of(database_url, last["tenant"]["id"]) == lowest_free
    before = set(_held_databases(database_url))

    refused = app.post("/admin/v1/tenants", json={"name": "one too many"}, headers=admin_headers)
    assert refused.status_code == 409, refused.text
    assert "databases" in refused.json()["detail"]
    assert set(_held_databases(database_url)) == before  # nothing left behind
    admin = redis_server.client()
    try:
        users = [user.decode() for user in admin.execute_command("ACL", "USERS")]
    finally:
        admin.close()
    assert users.count(TenantNames.of(uuid.UUID(last["tenant"]["id"])).redis_user) == 1
    assert len([user for user in users if user.startswith("tg_")]) == 1

    tenant_id = last["tenant"]["id"]
    assert app.delete(f"/admin/v1/tenants/{tenant_id}", headers=admin_headers).status_code == 204
    assert app.make_tenant()  # its database is free again


def test_deleting_a_database_tenant_empties_its_database(
    service: Any,
    make_tenant: Any,
    admin_headers: dict[str, str],
    redis_admin_url: str,
    service_environment: dict[str, str],
) -> None:
    doomed = make_tenant(tier="enterprise", plan="enterprise")
    kept = make_tenant(tier="enterprise", plan="enterprise")
    for tenant in (doomed, kept):
        for number in range(30):
            body = {"value": number}
            answer = service.put(f"/v1/cache/k{number}", json=body, headers=tenant.headers)
            assert answer.status_code == 204
    database_url = service_environment["TENANTGATE_DATABASE_URL"]
    doomed_database = _database_of(database_url, doomed.id)
    kept_database = _database_of(database_url, kept.id)
    assert doomed_database is not None
    assert kept_database is not None

    deleted = service.delete(f"/admin/v1/tenants/{doomed.id}", headers=admin_headers)
    assert deleted.status_code == 204, deleted.text

    admin = redis.Redis.from_url(redis_admin_url, socket_timeout=5)
    try:
        admin.execute_command("SELECT", doomed_database)
        assert admin.dbsize() == 0
        admin.execute_command("SELECT", kept_database)
        assert admin.dbsize() == 30
        doomed_user = TenantNames.of(uuid.UUID(doomed.id)).redis_user
        assert admin.acl_getuser(doomed_user) is None
    finally:
        admin.close()
    assert service.get("/v1/cache/k1", headers=kept.headers).json()["value"] == 1


def test_a_database_tenants_user_cannot_leave_its_database(
    make_tenant: Any,
    redis_admin_url: str,
    service_settings: Any,
    service_environment: dict[str, str],
) -> None:
    """As the service does it: `SELECT n` as a privileged user, then `AUTH` as the tenant."""
    from tenantgate.cache.passwords import tenant_password

    tenant, other = make_tenant(tier="enterprise"), make_tenant(tier="enterprise")
    number = _database_of(service_environment["TENANTGATE_DATABASE_URL"], tenant.id)
    assert number is not None
    names = TenantNames.of(uuid.UUID(tenant.id))
    other_names = TenantNames.of(uuid.UUID(other.id))
    client = redis.Redis.from_url(redis_admin_url, socket_timeout=5, single_connection_client=True)
    try:
        client.execute_command("SELECT", number)
        password = tenant_password(service_settings.security.key_pepper, names.tenant_id)
        client.execute_command("AUTH", names.redis_user, password)
        client.set(names.cache_key("mine"), "1")
        for refused in (
            ("SELECT", "0"),
            ("SWAPDB", str(number), "0"),
            ("MOVE", names.cache_key("mine"), "0"),
            ("COPY", names.cache_key("mine"), names.cache_key("copy"), "DB", "0"),
            ("GET", other_names.cache_key("x")),
            ("FLUSHDB",),
            ("KEYS", "*"),
        ):
            with pytest.raises(redis.exceptions.NoPermissionError):
                client.execute_command(*refused)
        assert client.get(names.cache_key("mine")) == b"1"
    finally:
        client.close()
    admin = redis.Redis.from_url(redis_admin_url, socket_timeout=5)
    try:
        admin.execute_command("SELECT", number)
        assert admin.get(names.cache_key("mine")) == b"1"  # it was written in its database
    finally:
        admin.close()
