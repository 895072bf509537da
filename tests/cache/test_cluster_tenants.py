"""The `namespace` placement on a three-node Redis Cluster (`TENANTGATE_REDIS_CLUSTER=true`):
a tenant's keys share one slot, its ACL user exists on every node and Redis refuses it every
other tenant's key and every keyless command, the cache API and items read through the cache
behave as on a single server, and deleting the tenant removes its user from every node and
all its keys."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
import redis
from redis.exceptions import NoPermissionError, ResponseError

from tenantgate.cache.passwords import tenant_password
from tenantgate.errors import SettingsError
from tenantgate.naming import TenantNames
from tenantgate.settings import Settings

pytestmark = pytest.mark.servers

KEYS = ["plain", "*", "../x", "a:{b}", "{other}", "é漢字", "k" * 512]


@pytest.fixture
def cluster_app(redis_cluster: Any, app_on: Any) -> Any:
    return app_on(redis_cluster, redis_cluster="true")


def _url(key: str) -> str:
    from urllib.parse import quote

    return "/v1/cache/" + quote(key, safe="").replace(".", "%2E")


def _names(tenant: dict[str, Any]) -> TenantNames:
    return TenantNames.of(uuid.UUID(tenant["tenant"]["id"]))


def _node_clients(redis_cluster: Any) -> list[redis.Redis]:
    return [
        redis.Redis(host=host, port=port, password=redis_cluster.password, socket_timeout=5)
        for host, port in redis_cluster.startup_nodes
    ]


def _as_tenant_on_its_node(redis_cluster: Any, settings: Any, names: TenantNames) -> redis.Redis:
    """A plain connection, as the tenant's ACL user, to the node that holds its slot."""
    admin = redis_cluster.client()
    try:
        node = admin.get_node_from_key(names.redis_namespace)
    finally:
        admin.close()
    return redis.Redis(
        host=node.host,
        port=node.port,
        username=names.redis_user,
        password=tenant_password(settings.security.key_pepper, names.tenant_id),
        socket_timeout=5,
    )


def test_tenants_keep_their_values_apart_on_a_cluster(cluster_app: Any) -> None:
    first, second = cluster_app.make_tenant(), cluster_app.make_tenant(tier="enterprise")
    for key in KEYS:
        for tenant in (first, second):
            body = {"value": [key, tenant["tenant"]["id"]]}
            answer = cluster_app.put(_url(key), json=body, headers=tenant["headers"])
            assert answer.status_code == 204, answer.text
        for tenant in (first, second):
            read = cluster_app.get(_url(key), headers=tenant["headers"])
            assert read.json() == {"key": key, "value": [key, tenant["tenant"]["id"]]}


def test_a_tenants_keys_share_one_slot_and_one_node(cluster_app: Any, redis_cluster: Any) -> None:
    tenant = cluster_app.make_tenant()
    for key in KEYS:
        answer = cluster_app.put(_url(key), json={"value": 1}, headers=tenant["headers"])
        assert answer.status_code == 204
    names = _names(tenant)
    nodes = _node_clients(redis_cluster)
    try:
        slots = {nodes[0].cluster("KEYSLOT", names.cache_key(key)) for key in KEYS}
        (slot,) = slots
        counts = [node.cluster("COUNTKEYSINSLOT", slot) for node in nodes]
    finally:
        for node in nodes:
            node.close()
    assert sorted(counts) == [0, 0, len(KEYS)]


def test_an_entry_expires_on_a_cluster(cluster_app: Any) -> None:
    tenant = cluster_app.make_tenant()
    body = {"value": 1, "ttl_seconds": 1}
    assert cluster_app.put(_url("ttl"), json=body, headers=tenant["headers"]).status_code == 204
    deadline = time.monotonic() + 5
    while cluster_app.get(_url("ttl"), headers=tenant["headers"]).status_code == 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_the_tenants_user_exists_on_every_node_and_is_confined(
    cluster_app: Any, redis_cluster: Any
) -> None:
    tenant, other = cluster_app.make_tenant(), cluster_app.make_tenant()
    names, other_names = _names(tenant), _names(other)
    nodes = _node_clients(redis_cluster)
    try:
        assert all(node.acl_getuser(names.redis_user) is not None for node in nodes)
    finally:
        for node in nodes:
            node.close()

    as_tenant = _as_tenant_on_its_node(redis_cluster, cluster_app.settings, names)
    try:
        as_tenant.set(names.cache_key("mine"), "1")
        assert as_tenant.get(names.cache_key("mine")) == b"1"
        for refused in (
            ("GET", other_names.cache_key("x")),
            ("SET", other_names.cache_key("x"), "stolen"),
            ("KEYS", "*"),
            ("SCAN", "0"),
            ("FLUSHALL",),
            ("FLUSHDB",),
            ("SELECT", "0"),
            ("EVAL", "return 1", "0"),
            ("CONFIG", "GET", "*"),
            ("CLUSTER", "NODES"),
        ):
            with pytest.raises(NoPermissionError):
                as_tenant.execute_command(*refused)
    finally:
        as_tenant.close()


def test_items_are_read_through_the_cache_on_a_cluster(cluster_app: Any) -> None:
    tenant = cluster_app.make_tenant()
    headers = tenant["headers"]
    created = cluster_app.post("/v1/items", json={"data": {"v": 1}}, headers=headers).json()
    url = f"/v1/items/{created['id']}"
    assert cluster_app.get(url, headers=headers).json() == created
    assert cluster_app.get(url, headers=headers).json() == created
    replaced = cluster_app.put(url, json={"data": {"v": 2}}, headers=headers).json()
    assert cluster_app.get(url, headers=headers).json() == replaced
    assert cluster_app.delete(url, headers=headers).status_code == 204
    assert cluster_app.get(url, headers=headers).status_code == 404


def test_deleting_a_tenant_clears_every_node(
    cluster_app: Any, redis_cluster: Any, admin_headers: dict[str, str]
) -> None:
    doomed, kept = cluster_app.make_tenant(plan="pro"), cluster_app.make_tenant()
    for number in range(40):
        body = {"value": number}
        answer = cluster_app.put(f"/v1/cache/k{number}", json=body, headers=doomed["headers"])
        assert answer.status_code == 204
    stored = cluster_app.put("/v1/cache/k", json={"value": 1}, headers=kept["headers"])
    assert stored.status_code == 204

    tenant_id = doomed["tenant"]["id"]
    deleted = cluster_app.delete(f"/admin/v1/tenants/{tenant_id}", headers=admin_headers)
    assert deleted.status_code == 204, deleted.text

    names = _names(doomed)
    nodes = _node_clients(redis_cluster)
    try:
        assert all(node.acl_getuser(names.redis_user) is None for node in nodes)
        leftovers = [key for node in nodes for key in node.scan_iter(match=names.redis_pattern)]
    finally:
        for node in nodes:
            node.close()
    assert leftovers == []
    assert cluster_app.get("/v1/cache/k", headers=kept["headers"]).json()["value"] == 1


def test_the_database_placement_is_refused_on_a_cluster(
    service_environment: dict[str, str],
) -> None:
    environ = {
        **service_environment,
        "TENANTGATE_REDIS_CLUSTER": "true",
        "TENANTGATE_REDIS_ISOLATION": "database",
    }
    with pytest.raises(SettingsError, match="TENANTGATE_REDIS_ISOLATION"):
        Settings.from_env(environ)
    environ["TENANTGATE_REDIS_ISOLATION"] = "auto"
    assert Settings.from_env(environ).redis.isolation == "namespace"


def test_a_tenants_user_cannot_reach_past_its_slot(cluster_app: Any, redis_cluster: Any) -> None:
    """A cross-slot command naming another tenant's key is refused too (ACL or CROSSSLOT)."""
    tenant, other = cluster_app.make_tenant(), cluster_app.make_tenant()
    settings = cluster_app.settings
    as_tenant = _as_tenant_on_its_node(redis_cluster, settings, _names(tenant))
    try:
        with pytest.raises(ResponseError):
            as_tenant.execute_command(
                "MGET", _names(tenant).cache_key("a"), _names(other).cache_key("a")
            )
    finally:
        as_tenant.close()


def test_the_announcements_subscription_is_provably_live_on_a_cluster(cluster_app: Any) -> None:
    """Its pings are answered on a cluster too, so key records may be trusted long there."""
    import time

    deadline = time.monotonic() + 10.0
    while "tenantgate_announcements_live 1.0" not in cluster_app.get("/metrics").text:
        assert time.monotonic() < deadline, "the subscription never proved itself live"
        time.sleep(0.1)
