"""Redis: the service's client, tenants' ACL users and placement, and the tenant cache.

The only room that imports ``redis``. Each tenant has its own ACL user
(:mod:`~tenantgate.cache.provisioning`) and placement (:mod:`~tenantgate.cache.placement`); its
commands run as that user on the service's shared connections
(:mod:`~tenantgate.cache.tenant_redis`); :class:`TenantCache` is its key-value cache and
:class:`ItemCache` reads items through it.

Internal: the public API is :mod:`tenantgate` (its ``__all__``); names here may change.
"""

from tenantgate.cache.client import open_redis, ping
from tenantgate.cache.connections import RedisClient
from tenantgate.cache.errors import translate, translating
from tenantgate.cache.items import ItemCache
from tenantgate.cache.placement import RedisDatabase, placement_for
from tenantgate.cache.provisioning import RedisUser
from tenantgate.cache.tenant_cache import TenantCache
from tenantgate.cache.tenant_redis import RedisTenant, TenantRedis

__all__ = [
    "ItemCache",
    "RedisClient",
    "RedisDatabase",
    "RedisTenant",
    "RedisUser",
    "TenantCache",
    "TenantRedis",
    "open_redis",
    "ping",
    "placement_for",
    "translate",
    "translating",
]
