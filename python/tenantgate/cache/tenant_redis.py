"""Commands run as a tenant's own Redis ACL user, on connections every tenant shares.

Redis walls a tenant off only if its commands run *as its ACL user*, and a connection is
authenticated as one user at a time. One pool per tenant does not stay bounded with thousands
of tenants, and an LRU of small per-tenant pools reconnects (TCP, ``HELLO``/``AUTH``) on every
miss; ``benches/redis_connections.py`` measured both (README, "Redis connections"). So every
call here is one round trip on a connection of the service's one bounded pool::

    [SELECT n]  AUTH <tenant user> <tenant password>  <commands...>  AUTH <service>  [SELECT back]

sent together and answered together. ``SELECT n`` (the ``database`` placement) comes while the
connection is still the service's: the tenant's user may not ``SELECT``, and ``AUTH`` keeps
the selected database. The last ``AUTH`` (and ``SELECT``) put the connection back exactly as
redis-py made it before it returns to the pool; if anything goes wrong half-way — a timeout, a
reset, an answer missing — the connection is closed instead, so a pooled connection never
changes database or user behind redis-py's back.

**Failing closed.** If the tenant's ``AUTH`` is refused (its user is missing: a Redis restarted
without its ACLs), the commands after it run as the service's user, which may not read or
write any key: Redis refuses them too. The user is then made again (the provisioning step's
``apply``, which is idempotent) and the call retried once.

**Down or slow.** Every wait (a pooled connection, connecting, an answer) is bounded by
``TENANTGATE_REDIS_TIMEOUT``. A call that fails for want of Redis raises
:class:`~tenantgate.errors.ServiceUnavailableError` and marks Redis down for
:data:`DOWN_FOR_SECONDS`: calls meanwhile fail at once instead of each waiting out the timeout
(the cache stays out of the way of requests that can do without it), and the first call after
that tries again, so the service uses Redis again as soon as it is back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import redis.asyncio

from tenantgate.cache.connections import (
    Command,
    ConnectionSource,
    RedisClient,
    Reply,
    round_trip,
    source_of,
)
from tenantgate.cache.errors import translate, translating
from tenantgate.cache.passwords import tenant_password
from tenantgate.cache.pipelined import PipelinedConnection
from tenantgate.errors import ServiceUnavailableError

if TYPE_CHECKING:
    from tenantgate.identity import TenantIdentity
    from tenantgate.naming import TenantNames

__all__ = ["DOWN_FOR_SECONDS", "RedisTenant", "TenantRedis"]

_logger = logging.getLogger("tenantgate.cache")

DOWN_FOR_SECONDS: Final = 1
"""How long Redis counts as down after a call failed for want of it (also the ``Retry-After``
of the 503 meanwhile)."""


@dataclass(frozen=True, slots=True)
class RedisTenant:
    """Where a tenant lives in Redis: its names (namespace, ACL user) and its database."""

    names: TenantNames
    database: int | None = None
    """The tenant's own logical database (the ``database`` placement), or ``None`` for the
    ``namespace`` placement (the service's database, 0)."""

    @classmethod
    def of(cls, tenant: TenantIdentity) -> RedisTenant:
        """Where the authenticated ``tenant`` lives."""
        return cls(tenant.names, tenant.redis_database)


RemakeUser = Callable[[RedisTenant], Awaitable[None]]
"""Makes a tenant's ACL user again (the provisioning step's ``apply``)."""


class TenantRedis:
    """Runs commands as tenants' ACL users on the service's shared, bounded pool."""

    __slots__ = ("_down_until", "_pepper", "_remake_user", "_service_auth", "_source")

    def __init__(self, client: RedisClient, *, pepper: bytes, remake_user: RemakeUser) -> None:
        self._pepper = pepper
        self._remake_user = remake_user
        kwargs = (
            client.nodes_manager.connection_kwargs
            if isinstance(client, redis.asyncio.RedisCluster)
            else client.connection_pool.connection_kwargs
        )
        self._service_auth: Command = (
            "AUTH",
            kwargs.get("username") or "default",
            kwargs.get("password") or "",
        )
        self._source = _tenant_source(client, kwargs, self._service_auth)
        self._down_until = 0.0

    async def run(self, tenant: RedisTenant, commands: Sequence[Command]) -> list[Reply]:
        """Run ``commands`` as ``tenant``'s user, in its database; their replies, in order.

        A command Redis refused is a :class:`~redis.exceptions.ResponseError` in the list (the
        caller decides what it means); Redis being unreachable or slow raises
        :class:`~tenantgate.errors.ServiceUnavailableError`.
        """
        authenticated, replies = await self._round_trip(tenant, commands)
        if not authenticated:
            _logger.warning(
                "Redis user of tenant %s was missing: made again", tenant.names.tenant_id
            )
            with translating():
                await self._remake_user(tenant)
            authenticated, replies = await self._round_trip(tenant, commands)
            if not authenticated:
                raise ServiceUnavailableError("redis")
        return replies

    async def _round_trip(
        self, tenant: RedisTenant, commands: Sequence[Command]
    ) -> tuple[bool, list[Reply]]:
        """One pipelined round trip; whether the tenant's ``AUTH`` succeeded, and the
        replies to ``commands``."""
        if time.monotonic() < self._down_until:
            raise ServiceUnavailableError("redis", retry_after=DOWN_FOR_SECONDS)
        names = tenant.names
        login: Command = ("AUTH", names.redis_user, tenant_password(self._pepper, names.tenant_id))
        everything = [login, *commands]
        restore = [self._service_auth]
        routing_key = names.redis_namespace.encode()
        try:
            replies = await round_trip(
                self._source, routing_key, everything, database=tenant.database, restore=restore
            )
        except Exception as exc:
            raise self._down(exc) from exc
        return not isinstance(replies[0], Exception), replies[1:]

    async def aclose(self) -> None:
        """Close the shared connection of a single server (a pool closes its own)."""
        if isinstance(self._source, PipelinedConnection):
            await self._source.aclose()

    def _down(self, exc: Exception) -> Exception:
        """Remember that Redis failed us; the error to raise for ``exc``."""
        translated = translate(exc)
        if isinstance(translated, ServiceUnavailableError):
            self._down_until = time.monotonic() + DOWN_FOR_SECONDS
            return ServiceUnavailableError("redis", retry_after=DOWN_FOR_SECONDS)
        return exc


def _tenant_source(
    client: RedisClient, kwargs: dict[str, Any], service_auth: Command
) -> ConnectionSource | PipelinedConnection:
    """Where tenants' round trips go: on a single server reached over plain TCP, one shared
    connection that writes concurrent round trips together (:mod:`~tenantgate.cache.pipelined`);
    on a cluster, the node of the tenant's slot; over TLS or a Unix socket, the client's pool."""
    if (
        isinstance(client, redis.asyncio.RedisCluster)
        or client.connection_pool.connection_class is not redis.asyncio.Connection
    ):
        return source_of(client)
    login: list[Command] = []
    if kwargs.get("password"):
        login.append(service_auth)
    database = int(kwargs.get("db") or 0)
    if database:
        login.append(("SELECT", database))
    return PipelinedConnection(
        kwargs["host"],
        int(kwargs.get("port") or 6379),
        login=login,
        database=database,
        timeout=float(kwargs.get("socket_timeout") or 0.5),
    )
