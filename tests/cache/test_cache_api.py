"""The cache API, `/v1/cache/{key}`: each tenant's values are its own, whatever the key, in both
placements; keys are any 1 to 512 bytes of UTF-8 and land inside the tenant's namespace (and
database); TTLs are honoured; bad input is a 422 that stores nothing."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any
from urllib.parse import quote

import asyncpg
import pytest
import redis

from tenantgate.naming import TenantNames

pytestmark = pytest.mark.servers

PLACEMENTS = [
    pytest.param({"tier": "standard"}, id="namespace"),
    pytest.param({"tier": "enterprise"}, id="database"),
]

KEYS = [
    "plain",
    "*",
    "?",
    "[a-z]*",
    "../x",
    "..",
    ".",
    "a:{b}",
    "{t}:x",
    "t:{00000000-0000-0000-0000-000000000000}:c:x",
    "a/b/c",
    "/leading",
    "trailing/",
    "with space",
    "percent%41",
    "é漢字🙂",
    "nul\x00inside",
    "k" * 512,
    "é" * 256,
]


def _url(key: str) -> str:
    # Every byte but unreserved ones escaped: `..` and `/` reach the service as sent.
    return "/v1/cache/" + quote(key, safe="").replace(".", "%2E")


@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("key", KEYS, ids=range(len(KEYS)))
def test_two_tenants_writing_the_same_key_never_see_each_others_value(
    placement: dict[str, str], key: str, service: Any, make_tenant: Any
) -> None:
    first, second = make_tenant(**placement), make_tenant(**placement)

    for tenant in (first, second):
        body = {"value": {"owner": tenant.id}}
        stored = service.put(_url(key), json=body, headers=tenant.headers)
        assert stored.status_code == 204, stored.text

    for tenant in (first, second):
        read = service.get(_url(key), headers=tenant.headers)
        assert read.status_code == 200, read.text
        assert read.json() == {"key": key, "value": {"owner": tenant.id}}

    assert service.delete(_url(key), headers=first.headers).status_code == 204
    assert service.get(_url(key), headers=first.headers).status_code == 404
    assert service.get(_url(key), headers=second.headers).json()["value"] == {"owner": second.id}


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_a_key_is_stored_inside_the_tenants_namespace_and_database(
    placement: dict[str, str],
    service: Any,
    make_tenant: Any,
    redis_admin_url: str,
    service_environment: dict[str, str],
) -> None:
    tenant = make_tenant(**placement)
    key = "../../{other}:*"
    assert service.put(_url(key), json={"value": 1}, headers=tenant.headers).status_code == 204

    names = TenantNames.of(uuid.UUID(tenant.id))
    assert names.cache_key(key) == f"t:{{{tenant.id}}}:c:{key}".encode()
    number = _redis_database(service_environment, tenant.id)
    assert (number is None) == (placement["tier"] == "standard")
    assert _exists(redis_admin_url, number or 0, names.cache_key(key))
    if number is not None:
        assert not _exists(redis_admin_url, 0, names.cache_key(key))


def test_enterprise_tenants_get_databases_of_their_own(
    service: Any, make_tenant: Any, redis_admin_url: str, service_environment: dict[str, str]
) -> None:
    tenants = [make_tenant(tier="enterprise") for _ in range(3)]
    databases = []
    for tenant in tenants:
        assert service.put(_url("k"), json={"value": 1}, headers=tenant.headers).status_code == 204
        number = _redis_database(service_environment, tenant.id)
        assert number is not None
        assert _exists(redis_admin_url, number, TenantNames.of(uuid.UUID(tenant.id)).cache_key("k"))
        databases.append(number)
    assert len(set(databases)) == 3
    assert 0 not in databases


def _redis_database(service_environment: dict[str, str], tenant_id: str) -> int | None:
    async def read() -> int | None:
        connection = await asyncpg.connect(service_environment["TENANTGATE_DATABASE_URL"])
        try:
            number: int | None = await connection.fetchval(
                "SELECT redis_database FROM tenants WHERE id = $1", uuid.UUID(tenant_id)
            )
            return number
        finally:
            await connection.close()

    return asyncio.run(read())


def _exists(redis_admin_url: str, database: int, key: bytes) -> bool:
    client = redis.Redis.from_url(redis_admin_url, socket_timeout=5, single_connection_client=True)
    try:
        client.execute_command("SELECT", database)
        return bool(client.exists(key))
    finally:
        client.close()


@pytest.mark.parametrize(
    "value", [None, 0, -1.5, True, "text", "", [], {}, [1, [2, [3]]], {"a": {"b": None}}]
)
def test_any_json_value_comes_back_as_stored(value: Any, service: Any, make_tenant: Any) -> None:
    tenant = make_tenant()
    assert service.put(_url("v"), json={"value": value}, headers=tenant.headers).status_code == 204
    assert service.get(_url("v"), headers=tenant.headers).json() == {"key": "v", "value": value}


def test_an_entry_expires_after_its_ttl(service: Any, make_tenant: Any) -> None:
    tenant = make_tenant()
    body = {"value": "soon gone", "ttl_seconds": 1}
    assert service.put(_url("ttl"), json=body, headers=tenant.headers).status_code == 204
    assert service.put(_url("kept"), json={"value": 1}, headers=tenant.headers).status_code == 204
    assert service.get(_url("ttl"), headers=tenant.headers).status_code == 200

    deadline = time.monotonic() + 5
    while service.get(_url("ttl"), headers=tenant.headers).status_code == 200:
        assert time.monotonic() < deadline, "the entry outlived its TTL"
        time.sleep(0.1)
    assert service.get(_url("kept"), headers=tenant.headers).status_code == 200


def test_a_missing_key_is_404_and_deleting_it_is_204(service: Any, make_tenant: Any) -> None:
    tenant = make_tenant()
    missing = service.get(_url("nothing"), headers=tenant.headers)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert service.delete(_url("nothing"), headers=tenant.headers).status_code == 204


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(_url("k" * 513), id="513 bytes"),
        pytest.param(_url("é" * 256 + "k"), id="513 bytes of UTF-8"),
        pytest.param("/v1/cache/%FF", id="not UTF-8"),
        pytest.param("/v1/cache/a%C3", id="truncated UTF-8"),
    ],
)
def test_a_key_that_is_not_1_to_512_bytes_of_utf8_is_422(
    path: str, service: Any, make_tenant: Any
) -> None:
    tenant = make_tenant()
    for method, body in (("PUT", {"value": 1}), ("GET", None), ("DELETE", None)):
        answer = service.request(method, path, json=body, headers=tenant.headers)
        assert answer.status_code == 422, (method, answer.text)
        assert "key" in answer.json()["detail"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"ttl_seconds": 5},
        {"value": 1, "ttl_seconds": 0},
        {"value": 1, "ttl_seconds": -1},
        {"value": 1, "ttl_seconds": "5"},
        {"value": 1, "ttl_seconds": 1.5},
        {"value": 1, "ttl_seconds": 10**12},
        {"value": 1, "extra": True},
        [1],
        "value",
    ],
)
def test_a_malformed_body_is_422_and_stores_nothing(
    body: Any, service: Any, make_tenant: Any
) -> None:
    tenant = make_tenant()
    answer = service.put(_url("k"), json=body, headers=tenant.headers)
    assert answer.status_code == 422, answer.text
    assert answer.json()["detail"]
    assert service.get(_url("k"), headers=tenant.headers).status_code == 404


def test_the_cache_needs_a_tenant_key(service: Any) -> None:
    for method in ("GET", "PUT", "DELETE"):
        answer = service.request(method, _url("k"), json={"value": 1})
        assert answer.status_code == 403
