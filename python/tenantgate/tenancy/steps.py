"""The service's provisioning steps, in order: one list for the plugin and the CLI alike.

PostgreSQL first (role and schema, tenant tables, first key:
:func:`tenantgate.db.provisioning.postgres_steps`), then the tenant's Redis database when its
placement is ``database`` (:class:`tenantgate.cache.placement.RedisDatabase`), its Redis ACL
user (:class:`tenantgate.cache.provisioning.RedisUser`), then its S3 placement and identity
(:class:`tenantgate.storage.provisioning.S3Identity`, last: it stores the tenant's S3 key in
PostgreSQL). Undo runs in reverse, so a deletion removes the S3 identity and objects and the
Redis user and keys before the PostgreSQL schema.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tenantgate.cache.placement import RedisDatabase
from tenantgate.cache.provisioning import RedisUser
from tenantgate.db.provisioning import postgres_steps
from tenantgate.storage.provisioning import S3Identity

if TYPE_CHECKING:
    from tenantgate.cache import RedisClient
    from tenantgate.settings import Settings
    from tenantgate.storage.service import StorageService
    from tenantgate.tenancy.provisioning import ProvisioningStep

__all__ = ["service_steps"]


def service_steps(
    redis: RedisClient, settings: Settings, storage: StorageService | None = None
) -> list[ProvisioningStep]:
    """Every layer's steps for a service whose Redis client (its management user) is ``redis``
    and whose S3 side is ``storage`` (``None``: no S3 step, for tests of the other layers)."""
    steps: list[ProvisioningStep] = [
        *postgres_steps(),
        RedisDatabase(redis, settings.redis.isolation),
        RedisUser(redis, settings.security.key_pepper),
    ]
    if storage is not None:
        steps.append(S3Identity(storage, settings.security.key_pepper))
    return steps
