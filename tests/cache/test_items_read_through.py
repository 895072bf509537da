"""`GET /v1/items/{id}` is served through the tenant's cache: a hit does not ask PostgreSQL, an
update or deletion is never followed by a stale read once acknowledged — also when a slow
reader stores its copy after the update, and under concurrent readers and a writer."""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from tenantgate.cache import ItemCache, RedisTenant, TenantRedis, open_redis
from tenantgate.cache.provisioning import RedisUser
from tenantgate.naming import TenantNames

pytestmark = pytest.mark.servers

PLACEMENTS = [
    pytest.param({"tier": "standard"}, id="namespace"),
    pytest.param({"tier": "enterprise"}, id="database"),
]


def _behind_the_services_back(database_url: str, tenant_id: str, item_id: str, data: str) -> None:
    """Change the item's row in PostgreSQL directly, as the tenant's role."""
    names = TenantNames.of(uuid.UUID(tenant_id))

    async def change() -> None:
        connection = await asyncpg.connect(database_url)
        try:
            async with connection.transaction():
                await connection.execute(names.scope_sql)
                await connection.execute(
                    "UPDATE items SET data = $2::jsonb WHERE id = $1", uuid.UUID(item_id), data
                )
        finally:
            await connection.close()

    asyncio.run(change())


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_a_read_is_served_from_the_cache_until_the_item_is_written(
    placement: Any, service: Any, make_tenant: Any, service_environment: dict[str, str]
) -> None:
    tenant = make_tenant(**placement)
    created = service.post("/v1/items", json={"data": {"v": 1}}, headers=tenant.headers).json()
    url = f"/v1/items/{created['id']}"
    assert service.get(url, headers=tenant.headers).json() == created  # a miss: now cached

    _behind_the_services_back(
        service_environment["TENANTGATE_DATABASE_URL"], tenant.id, created["id"], '{"v": "db"}'
    )
    assert service.get(url, headers=tenant.headers).json() == created  # a hit: PostgreSQL unasked

    replaced = service.put(url, json={"data": {"v": 2}}, headers=tenant.headers)
    assert replaced.status_code == 200
    assert service.get(url, headers=tenant.headers).json() == replaced.json()
    assert service.get(url, headers=tenant.headers).json() == replaced.json()

    assert service.delete(url, headers=tenant.headers).status_code == 204
    assert service.get(url, headers=tenant.headers).status_code == 404


def test_a_cached_item_of_one_tenant_is_never_served_to_another(
    service: Any, make_tenant: Any
) -> None:
    owner, intruder = make_tenant(), make_tenant(tier="enterprise")
    created = service.post("/v1/items", json={"data": {"secret": 1}}, headers=owner.headers)
    url = f"/v1/items/{created.json()['id']}"
    assert service.get(url, headers=owner.headers).status_code == 200  # cached now
    assert service.get(url, headers=intruder.headers).status_code == 404
    assert service.put(url, json={"data": {}}, headers=intruder.headers).status_code == 404
    assert service.get(url, headers=owner.headers).json()["data"] == {"secret": 1}


def test_a_refill_that_arrives_after_an_update_is_never_served(
    service: Any, make_tenant: Any, service_settings: Any
) -> None:
    """The read-through race, step by step: a reader misses and takes the version, reads the
    old row; the writer commits and invalidates; the reader stores its old copy late."""
    tenant = make_tenant()
    where = RedisTenant(TenantNames.of(uuid.UUID(tenant.id)))
    item_id = uuid.uuid4()

    async def race() -> None:
        async with open_redis(service_settings.redis) as client:
            pepper = service_settings.security.key_pepper
            users = RedisUser(client, pepper)
            tenant_redis = TenantRedis(
                client, pepper=pepper, remake_user=lambda tenant: users.make(tenant.names)
            )
            try:
                await step_by_step(ItemCache(tenant_redis))
            finally:
                await tenant_redis.aclose()

    async def step_by_step(cache: ItemCache) -> None:
        cached, seen_version = await cache.lookup(where, item_id)
        assert cached is None
        assert seen_version is not None

        await cache.invalidate(where, item_id)  # the writer, after its commit
        await cache.store(where, item_id, seen_version, b'{"stale": true}')  # the reader

        cached, current_version = await cache.lookup(where, item_id)
        assert cached is None
        assert current_version not in (None, seen_version)

        assert current_version is not None
        await cache.store(where, item_id, current_version, b'{"fresh": true}')
        assert await cache.lookup(where, item_id) == (b'{"fresh": true}', current_version)

    asyncio.run(race())


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_concurrent_readers_never_see_an_update_undone(
    placement: Any, served: str, service: Any, make_tenant: Any
) -> None:
    """A writer replaces the item 40 times while four readers read it without pause (granian,
    one worker): every read returns at least the version acknowledged before it started."""
    tenant = make_tenant(plan="enterprise", **placement)  # its rate limit out of the way
    created = service.post("/v1/items", json={"data": {"v": 0}}, headers=tenant.headers).json()
    path = f"/v1/items/{created['id']}"
    acknowledged = 0
    done = threading.Event()
    regressions: list[tuple[int, int]] = []
    reads = 0

    def read() -> None:
        nonlocal reads
        with httpx.Client(base_url=served, headers=tenant.headers, timeout=10) as client:
            while not done.is_set():
                floor = acknowledged
                answer = client.get(path)
                assert answer.status_code == 200, answer.text
                seen = answer.json()["data"]["v"]
                reads += 1
                if seen < floor:
                    regressions.append((floor, seen))

    readers = [threading.Thread(target=read) for _ in range(4)]
    for reader in readers:
        reader.start()
    try:
        with httpx.Client(base_url=served, headers=tenant.headers, timeout=10) as client:
            for version in range(1, 41):
                answer = client.put(path, json={"data": {"v": version}})
                assert answer.status_code == 200, answer.text
                acknowledged = version
    finally:
        done.set()
        for reader in readers:
            reader.join()

    assert regressions == []
    assert reads > 40
    final = httpx.get(served + path, headers=tenant.headers, timeout=10)
    assert final.json()["data"] == {"v": 40}
