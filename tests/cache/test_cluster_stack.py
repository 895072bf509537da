"""The embedded Redis Cluster: what the cache tests on a cluster may rely on.

Three masters share all 16384 slots; a tenant's keys (``t:{<id>}:...``, the hash tag is the
tenant id) all live in one slot; the service user reaches the cluster through redis-py's
``RedisCluster`` on every node and is refused the ``default`` user's commands; ACL users are
per node.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest
import redis
from redis.cluster import RedisCluster
from redis.exceptions import NoPermissionError

from tenantgate.dev.redis import SERVICE_USER
from tenantgate.dev.redis_cluster import CLUSTER_SLOTS

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tenantgate.dev.redis_cluster import EmbeddedRedisCluster

pytestmark = pytest.mark.servers


@pytest.fixture
def admin(redis_cluster: EmbeddedRedisCluster) -> Iterator[RedisCluster]:
    client = redis_cluster.client()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def service(redis_cluster: EmbeddedRedisCluster) -> Iterator[RedisCluster]:
    client = RedisCluster.from_url(redis_cluster.service_url, socket_timeout=5)
    try:
        yield client
    finally:
        client.close()


def test_the_cluster_is_ok_with_three_masters_covering_every_slot(
    redis_cluster: EmbeddedRedisCluster, admin: RedisCluster
) -> None:
    info = admin.cluster_info()
    assert info["cluster_state"] == "ok"
    assert int(info["cluster_slots_assigned"]) == CLUSTER_SLOTS
    assert int(info["cluster_known_nodes"]) == 3
    primaries = admin.get_primaries()
    assert sorted((node.host, node.port) for node in primaries) == sorted(
        redis_cluster.startup_nodes
    )
    assert admin.get_replicas() == []
    covered = [
        slot
        for start, end, *_ in admin.execute_command("CLUSTER SLOTS", target_nodes=admin.RANDOM)
        for slot in range(start, end + 1)
    ]
    assert sorted(covered) == list(range(CLUSTER_SLOTS))


def test_every_node_sees_the_cluster_ok(redis_cluster: EmbeddedRedisCluster) -> None:
    redis_cluster.check()  # raises unless every node: ok, 3 nodes, all slots


def test_a_tenants_keys_share_one_slot(admin: RedisCluster) -> None:
    tenant = uuid.uuid4()
    slots = {admin.cluster_keyslot(f"t:{{{tenant}}}:{rest}") for rest in ("a", "b", "c:d")}
    assert len(slots) == 1
    assert admin.cluster_keyslot(f"t:{{{tenant}}}:a") == admin.keyslot(f"t:{{{tenant}}}:a")


def test_a_tenants_keys_can_be_written_together(admin: RedisCluster) -> None:
    tenant = uuid.uuid4()
    keys = [f"t:{{{tenant}}}:a", f"t:{{{tenant}}}:b"]
    admin.mset_nonatomic(dict.fromkeys(keys, "1"))
    try:
        # one slot, so one node: a multi-key command needs no cross-slot splitting
        assert admin.execute_command("MGET", *keys) == [b"1", b"1"]
    finally:
        admin.delete(*keys)


def test_the_service_user_pings_every_node_through_the_cluster_client(
    service: RedisCluster,
) -> None:
    assert service.ping(target_nodes=RedisCluster.ALL_NODES) is True


@pytest.mark.parametrize(
    "command",
    [
        ("GET", "t:{x}:a"),
        ("SET", "t:{x}:a", "1"),
        ("KEYS", "*"),
        ("FLUSHALL",),
        ("CONFIG", "GET", "*"),
        ("CLUSTER", "NODES"),
        ("CLUSTER", "INFO"),
        ("ACL", "LIST"),
        ("INFO",),
    ],
    ids=lambda command: " ".join(command[:2]),
)
def test_the_default_users_commands_are_refused_to_the_service_user(
    service: RedisCluster, command: tuple[str, ...]
) -> None:
    with pytest.raises(NoPermissionError):
        service.execute_command(*command, target_nodes=RedisCluster.ALL_NODES)


def test_the_service_user_is_on_every_node(redis_cluster: EmbeddedRedisCluster) -> None:
    for node in redis_cluster.nodes:
        client = node.client()
        try:
            assert client.acl_getuser(SERVICE_USER) is not None, node.name
        finally:
            client.close()


def test_an_acl_user_made_on_one_node_exists_there_only(
    redis_cluster: EmbeddedRedisCluster, admin: RedisCluster
) -> None:
    user = f"probe-{uuid.uuid4().hex[:8]}"
    # redis-py routes ACL SETUSER to one node unless told otherwise
    admin.acl_setuser(user, enabled=True, passwords=["+probe"], commands=["+ping"])
    try:
        present = []
        for node in redis_cluster.nodes:
            client: redis.Redis = node.client()
            try:
                present.append(client.acl_getuser(user) is not None)
            finally:
                client.close()
        assert sorted(present) == [False, False, True]
    finally:
        admin.acl_deluser(user, target_nodes=RedisCluster.ALL_NODES)


def test_the_rate_limit_lease_script_runs_on_the_cluster_as_the_service_user(
    redis_cluster: EmbeddedRedisCluster,
) -> None:
    """The cluster tier's bucket ``tg:rl:{<tenant id>}`` is routed by its hash tag, to the
    tenant's own slot, and the service user may run the script there."""
    import asyncio

    import redis.asyncio

    from tenantgate.cache.leases import take_tokens

    tenant = str(uuid.uuid4())

    async def lease() -> list[int]:
        client = redis.asyncio.RedisCluster.from_url(redis_cluster.service_url)
        try:
            grants = [
                await take_tokens(client, tenant, rate_per_second=1.0, burst=5, want=3)
                for _ in range(3)
            ]
            return [grant.tokens for grant in grants]
        finally:
            await client.aclose()

    assert asyncio.run(lease()) == [3, 2, 0]
    admin = redis_cluster.client()
    try:
        assert admin.keyslot(f"tg:rl:{{{tenant}}}") == admin.keyslot(f"t:{{{tenant}}}:c:x")
    finally:
        admin.close()
