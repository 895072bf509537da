"""One pipelined round trip on a connection borrowed from the service's Redis, and where that
connection comes from: the pool of a single server, or the node of a Redis Cluster that holds
the tenant's slot.

redis-py's clients pick and return connections themselves; a tenant's round trip must instead
hold one connection from its first command (``SELECT``, ``AUTH``) to its last (``AUTH`` back),
so it borrows one from the pool below the client: :class:`PoolSource` for a single server,
:class:`ClusterSource` for a cluster (every key of a tenant shares its hash tag, so one node
holds them all, and the tenant's commands go to that node alone).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import redis.asyncio
from redis.exceptions import AskError, AuthenticationError, MovedError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from tenantgate.cache.pipelined import Command, PipelinedConnection, Reply, pack
from tenantgate.errors import ServiceUnavailableError

if TYPE_CHECKING:
    from redis.asyncio.cluster import ClusterNode
    from redis.asyncio.connection import AbstractConnection

__all__ = [
    "ClusterSource",
    "Command",
    "ConnectionSource",
    "DatabaseRefusedError",
    "NodeSource",
    "PoolSource",
    "RedisClient",
    "Reply",
    "TopologyChangedError",
    "on_every_node",
    "round_trip",
    "source_of",
]

_logger = logging.getLogger("tenantgate.cache")

RedisClient = redis.asyncio.Redis | redis.asyncio.RedisCluster
"""The service's management client: a single server's, or a cluster's."""


class DatabaseRefusedError(ServiceUnavailableError):
    """Redis refused to ``SELECT`` a database: it has fewer than the number asked for."""

    def __init__(self, database: int) -> None:
        super().__init__("redis")
        self.database = database


class TopologyChangedError(ServiceUnavailableError):
    """A cluster node answered ``MOVED``/``ASK``: the tenant's slot is elsewhere now (the
    topology has been read again; the round trip may be retried)."""

    def __init__(self) -> None:
        super().__init__("redis")


class Lease(Protocol):
    """A borrowed connection; ``give_back`` returns it (whatever state it is in: a broken one
    has been disconnected and reconnects on its next use)."""

    connection: AbstractConnection

    async def give_back(self) -> None: ...


class ConnectionSource(Protocol):
    """Where the connection for a tenant's round trip comes from."""

    async def borrow(self, routing_key: bytes) -> Lease: ...

    async def connection_failed(self) -> None: ...

    async def topology_changed(self) -> None: ...


class _PoolLease:
    __slots__ = ("_source", "connection")

    def __init__(self, source: PoolSource, connection: AbstractConnection) -> None:
        self._source = source
        self.connection = connection

    async def give_back(self) -> None:
        await self._source.give_back(self.connection)


class PoolSource:
    """A single server: any connection of the client's (blocking, bounded) pool. (Tenants'
    round trips on a single server take the shared pipelined connection instead; this one
    serves the service's own commands.)"""

    __slots__ = ("_pool",)

    def __init__(self, pool: redis.asyncio.ConnectionPool) -> None:
        self._pool = pool

    async def borrow(self, routing_key: bytes) -> Lease:
        connection = await self._pool.get_connection()  # type: ignore[no-untyped-call]
        return _PoolLease(self, connection)

    async def give_back(self, connection: AbstractConnection) -> None:
        await self._pool.release(connection)

    async def connection_failed(self) -> None:
        return None  # the pool checks each connection it lends

    async def topology_changed(self) -> None:
        return None


class _NodeLease:
    __slots__ = ("_node", "connection")

    def __init__(self, node: ClusterNode, connection: AbstractConnection) -> None:
        self._node = node
        self.connection = connection

    async def give_back(self) -> None:
        self._node.release(self.connection)  # type: ignore[arg-type]


async def _borrow_from(node: ClusterNode) -> Lease:
    connection = node.acquire_connection()
    try:
        if not connection.is_connected:
            await connection.connect()  # type: ignore[no-untyped-call]
    except BaseException:
        node.release(connection)
        raise
    return _NodeLease(node, connection)


class ClusterSource:
    """A Redis Cluster: a connection to the primary that holds the routing key's slot."""

    __slots__ = ("_cluster",)

    def __init__(self, cluster: redis.asyncio.RedisCluster) -> None:
        self._cluster = cluster

    async def borrow(self, routing_key: bytes) -> Lease:
        await self._cluster.initialize()  # once; later calls only check a flag
        node = self._cluster.get_node_from_key(routing_key)  # type: ignore[arg-type]
        if node is None:
            raise ServiceUnavailableError("redis")
        return await _borrow_from(node)

    async def connection_failed(self) -> None:
        return None

    async def topology_changed(self) -> None:
        await self._cluster.nodes_manager.initialize()

    async def nodes(self) -> list[NodeSource]:
        """Every node of the cluster, each as a source of its own."""
        await self._cluster.initialize()
        return [NodeSource(node) for node in self._cluster.get_nodes()]


class NodeSource:
    """One node of a cluster, whatever the key (for commands each node must run: ``ACL``)."""

    __slots__ = ("_node",)

    def __init__(self, node: ClusterNode) -> None:
        self._node = node

    async def borrow(self, routing_key: bytes) -> Lease:
        return await _borrow_from(self._node)

    async def connection_failed(self) -> None:
        return None

    async def topology_changed(self) -> None:
        return None


async def on_every_node(client: RedisClient, command: Command) -> list[Reply]:
    """``command`` on every node of a cluster (or on the one server); their replies."""
    if isinstance(client, redis.asyncio.RedisCluster):
        nodes = await ClusterSource(client).nodes()
    else:
        nodes = [PoolSource(client.connection_pool)]  # type: ignore[list-item]
    return [(await round_trip(node, b"", [command]))[0] for node in nodes]


def source_of(client: RedisClient) -> ConnectionSource:
    """The connection source below ``client``."""
    if isinstance(client, redis.asyncio.RedisCluster):
        return ClusterSource(client)
    return PoolSource(client.connection_pool)


async def round_trip(
    source: ConnectionSource | PipelinedConnection,
    routing_key: bytes,
    commands: Sequence[Command],
    *,
    database: int | None = None,
    restore: Sequence[Command] = (),
) -> list[Reply]:
    """Send ``commands`` on one borrowed connection in one round trip; their replies.

    ``routing_key`` is any key of the tenant (its slot picks the cluster node). With
    ``database``, the connection is put in that database first and back in its own after;
    ``restore`` (e.g. the ``AUTH`` back to the service's user) is sent last. If any of those
    fails, or the round trip breaks half-way, the connection is closed rather than given back
    in a state redis-py does not know. Redis refusing the database raises
    :class:`DatabaseRefusedError` (the commands then ran in the connection's own database,
    still as whoever ``commands`` authenticate as: only a server restarted with fewer
    ``databases`` than before does that). A connection found broken is replaced once; a cluster
    node that no longer holds the slot makes the topology be read again and the round trip go
    to the new node, once (then :class:`TopologyChangedError`). The commands must be
    idempotent.
    """
    if isinstance(source, PipelinedConnection):
        return await _pipelined_round_trip(source, commands, database, restore)
    for attempt in (1, 2):
        lease = await source.borrow(routing_key)
        try:
            replies = await _exchange(lease, commands, database, restore)
        except (RedisConnectionError, OSError):
            if attempt == 2:
                raise
            # A pooled connection Redis closed while it was idle (a restart, a client it
            # killed): once more, on a fresh connection. Our commands are idempotent.
            await source.connection_failed()
            continue
        if any(isinstance(reply, MovedError | AskError) for reply in replies):
            # The slot moved to another node: read the topology again and, once, go there.
            await source.topology_changed()
            if attempt == 2:
                raise TopologyChangedError
            continue
        return replies
    raise AssertionError("unreachable")  # pragma: no cover


async def _pipelined_round_trip(
    connection: PipelinedConnection,
    commands: Sequence[Command],
    database: int | None,
    restore: Sequence[Command],
) -> list[Reply]:
    """:func:`round_trip` on the shared, auto-pipelined connection (see
    :mod:`tenantgate.cache.pipelined`)."""
    everything, opened, closing = _framed(commands, database, restore, connection.database)
    packed = pack(everything)
    for attempt in (1, 2):
        try:
            async with asyncio.timeout(connection.timeout):
                replies = await connection.exchange(packed, len(everything))
            break
        except RedisConnectionError:
            if attempt == 2:
                raise
            # Redis closed the connection (a restart): once more, on a new one.
        except TimeoutError as slow:
            # Slow is not broken: the replies will be read and dropped in turn.
            raise RedisTimeoutError("Timeout talking to Redis") from slow
    back = replies[len(everything) - closing :]
    if not all(reply == b"OK" for reply in back):
        # The connection is not surely the service's in its own database any more.
        _logger.error("Redis did not put a connection back: %r", back)
        connection.close()
    if opened and isinstance(replies[0], Exception):
        raise DatabaseRefusedError(database or 0)
    return replies[opened : len(everything) - closing]


def _framed(
    commands: Sequence[Command],
    database: int | None,
    restore: Sequence[Command],
    own_database: int,
) -> tuple[list[Command], int, int]:
    """An exchange's commands — ``[SELECT database]``, ``commands``, ``restore``, ``[SELECT
    own_database]`` — and how many come before and after ``commands``."""
    if database is None:
        return [*commands, *restore], 0, len(restore)
    return (
        [("SELECT", database), *commands, *restore, ("SELECT", own_database)],
        1,
        len(restore) + 1,
    )


async def _exchange(
    lease: Lease,
    commands: Sequence[Command],
    database: int | None,
    restore: Sequence[Command],
) -> list[Reply]:
    connection = lease.connection
    everything, opened, closing = _framed(commands, database, restore, int(connection.db))
    clean = False
    try:
        # One deadline for the whole exchange. redis-py would wrap the write in a wait_for (a
        # Task per send on Python 3.11) and each reply in a timeout context of its own: both
        # showed in profiles of the cached reads.
        try:
            async with asyncio.timeout(connection.socket_timeout):
                await _send(connection, pack(everything))
                replies = [await _read(connection) for _ in everything]
        except TimeoutError as slow:
            # As redis-py would say it: slow is not broken, so no retry on another connection.
            raise RedisTimeoutError("Timeout talking to Redis") from slow
        back = replies[len(everything) - closing :]
        clean = all(reply == b"OK" for reply in back)
        if not clean:
            _logger.error("Redis did not put a connection back: %r", back)
    finally:
        if not clean:
            await connection.disconnect(nowait=True)
        await lease.give_back()
    if opened and isinstance(replies[0], Exception):
        raise DatabaseRefusedError(database or 0)
    return replies[opened : len(everything) - closing]


async def _send(connection: AbstractConnection, packed: bytes) -> None:
    """Write ``packed`` on ``connection`` (connecting it first if it is not), with no deadline
    of its own: the caller's covers the exchange. A failure is an ``OSError``."""
    if not connection.is_connected:
        await connection.connect()  # type: ignore[no-untyped-call]
    writer = connection._writer
    if writer is None:  # pragma: no cover - connect() sets it or raises
        raise ConnectionError("the Redis connection has no writer")
    writer.write(packed)
    await writer.drain()


async def _read(connection: AbstractConnection) -> Reply:
    """One reply; an error reply is returned, not raised, so the stream stays in step.

    redis-py's parser raises ``WRONGPASS`` (an :class:`AuthenticationError`, which it counts
    among connection errors) where it returns other error replies, and would close the
    connection for it: the connection is fine, so it is kept (a broken one is closed by
    :func:`round_trip`).
    """
    try:
        # No timeout of its own (math.inf): the caller's deadline covers every reply.
        reply: Reply = await connection.read_response(timeout=math.inf, disconnect_on_error=False)
    except (ResponseError, AuthenticationError) as refused:
        return refused
    return reply
