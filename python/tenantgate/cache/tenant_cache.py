"""``TenantCache``: a tenant's key-value cache, walled off by Redis itself.

Handlers get one by dependency injection (``cache``); plugin users may build one with
:meth:`TenantCache.of`. Every value is JSON; every key is any 1 to :data:`MAX_KEY_BYTES` bytes
of UTF-8 — glob characters, braces, colons and ``..`` included — and becomes
``t:{<tenant id>}:c:<key>`` (:meth:`~tenantgate.naming.TenantNames.cache_key`): the client's
bytes only ever follow the tenant's own prefix, so no key reaches another tenant's, and
Redis's own ACL refuses the tenant's user any key outside ``t:{<tenant id>}:*`` besides.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final

import msgspec

from tenantgate.cache.tenant_redis import RedisTenant
from tenantgate.errors import InvalidInputError, ServiceUnavailableError

if TYPE_CHECKING:
    from tenantgate.cache.connections import Command, Reply
    from tenantgate.cache.tenant_redis import TenantRedis
    from tenantgate.identity import TenantIdentity

__all__ = ["MAX_KEY_BYTES", "MAX_TTL_SECONDS", "TenantCache", "check_key", "check_ttl"]

_logger = logging.getLogger("tenantgate.cache")

MAX_KEY_BYTES: Final = 512
"""The longest cache key, in bytes of UTF-8."""

MAX_TTL_SECONDS: Final = 10 * 366 * 24 * 3600
"""The longest time to live a cache entry may be given (ten years)."""


def check_key(key: str) -> None:
    """Refuse (422) a key that is not 1 to :data:`MAX_KEY_BYTES` bytes of UTF-8."""
    try:
        size = len(key.encode())
    except UnicodeEncodeError:
        raise InvalidInputError("cache key must be valid UTF-8") from None
    if not 1 <= size <= MAX_KEY_BYTES:
        raise InvalidInputError(
            f"cache key must be 1 to {MAX_KEY_BYTES} bytes of UTF-8 (it is {size})"
        )


def check_ttl(ttl_seconds: int | None) -> None:
    """Refuse (422) a time to live outside 1 to :data:`MAX_TTL_SECONDS` seconds."""
    if ttl_seconds is not None and not 1 <= ttl_seconds <= MAX_TTL_SECONDS:
        raise InvalidInputError(f"ttl_seconds must be between 1 and {MAX_TTL_SECONDS}")


class TenantCache:
    """Get, set and delete JSON values in one tenant's cache, as that tenant's Redis user."""

    __slots__ = ("_redis", "_tenant")

    def __init__(self, redis: TenantRedis, tenant: RedisTenant) -> None:
        self._redis = redis
        self._tenant = tenant

    @classmethod
    def of(cls, redis: TenantRedis, tenant: TenantIdentity) -> TenantCache:
        """The cache of the authenticated ``tenant``."""
        return cls(redis, RedisTenant.of(tenant))

    async def get(self, key: str, default: Any = None) -> Any:
        """The value stored under ``key``, or ``default`` when there is none."""
        check_key(key)
        (raw,) = await self._run(("GET", self._tenant.names.cache_key(key)))
        if raw is None:
            return default
        if not isinstance(raw, bytes):
            raise TypeError(f"GET answered {type(raw).__name__}")
        return msgspec.json.decode(raw)

    async def set(self, key: str, value: Any, ttl_seconds: int | None = None) -> None:
        """Store ``value`` (anything JSON can hold) under ``key``, for ``ttl_seconds`` if
        given, else until deleted."""
        check_key(key)
        check_ttl(ttl_seconds)
        command: Command = ("SET", self._tenant.names.cache_key(key), msgspec.json.encode(value))
        if ttl_seconds is not None:
            command = (*command, "EX", ttl_seconds)
        await self._run(command)

    async def delete(self, key: str) -> bool:
        """Remove ``key``; whether there was a value."""
        check_key(key)
        (removed,) = await self._run(("UNLINK", self._tenant.names.cache_key(key)))
        return removed == 1

    async def _run(self, *commands: Command) -> list[Reply]:
        replies = await self._redis.run(self._tenant, commands)
        for reply in replies:
            if isinstance(reply, Exception):
                # Our own commands on our own keys: only a misconfigured server refuses them.
                _logger.error(
                    "Redis refused a cache command of tenant %s: %s",
                    self._tenant.names.tenant_id,
                    reply,
                )
                raise ServiceUnavailableError("redis")
        return replies
