"""Redis: the service's client and the translation of its errors.

The only room that imports ``redis``. Tenants' ACL users, placement and ``TenantCache`` arrive
with the cache-isolation issue; today the service holds one client, used by ``/readyz``.

Internal: the public API is :mod:`tenantgate` (its ``__all__``); names here may change.
"""

from tenantgate.cache.client import open_redis, ping
from tenantgate.cache.errors import translate, translating

__all__ = ["open_redis", "ping", "translate", "translating"]
