"""The service's provisioning steps, in order: one list for the plugin and the CLI alike.

PostgreSQL first (role and schema, tenant tables, first key:
:func:`tenantgate.db.provisioning.postgres_steps`), then the tenant's Redis database when its
placement is ``database`` (:class:`tenantgate.cache.placement.RedisDatabase`) and its Redis ACL
user (:class:`tenantgate.cache.provisioning.RedisUser`). Undo runs in reverse, so a deletion removes
the Redis user and keys before the PostgreSQL schema.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tenantgate.cache.placement import RedisDatabase
from tenantgate.cache.provisioning import RedisUser
from tenantgate.db.provisioning import postgres_steps

if TYPE_CHECKING:
    from tenantgate.cache import RedisClient
    from tenantgate.settings import Settings
    from tenantgate.tenancy.provisioning import ProvisioningStep

__all__ = ["service_steps"]


def service_steps(redis: RedisClient, settings: Settings) -> list[ProvisioningStep]:
    """Every layer's steps for a service whose Redis client (its management user) is ``redis``."""
    return [
        *postgres_steps(),
        RedisDatabase(redis, settings.redis.isolation),
        RedisUser(redis, settings.security.key_pepper),
    ]
