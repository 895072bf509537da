"""Who is calling: tenant identification for every request of the tenant API.

One module per job:

- :mod:`~tenantgate.identity.middleware` — the ASGI middleware: one native call identifies the
  key and charges the tenant's bucket; it sets ``scope["state"]["tenant"]`` and
  :data:`current_tenant`;
- :mod:`~tenantgate.identity.key_cache` — the native verifier and cache-miss resolution (one
  lookup per key at a time);
- :mod:`~tenantgate.identity.hsm_keys` — on a miss, HSM keys found by display prefix and
  checked through the HSM;
- :mod:`~tenantgate.identity.plans` — the plans' shared quotas;
- :mod:`~tenantgate.identity.domains` — custom-domain bindings, reloaded from the source of
  truth by their one writer;
- :mod:`~tenantgate.identity.cache` — :class:`IdentityCache`, the three above over one
  source, kept fresh, and told by the operator's use cases what they changed;
- :mod:`~tenantgate.identity.source` — :class:`IdentitySource`, what identification needs
  from the source of truth (PostgreSQL's is in :mod:`tenantgate.db.identity_source`);
- :mod:`~tenantgate.identity.responses` — the one 403, the 429, the rate-limit headers;
- :mod:`~tenantgate.identity.context` — :class:`TenantIdentity`, :data:`current_tenant`,
  :func:`require_tenant`.

Internal: the public API is :mod:`tenantgate` (its ``__all__``); names here may change.
"""

from __future__ import annotations

from tenantgate.identity.cache import IdentityCache
from tenantgate.identity.context import TenantIdentity, current_tenant, require_tenant
from tenantgate.identity.middleware import TenantIdentificationMiddleware
from tenantgate.identity.responses import FORBIDDEN_BODY, forbidden_response, send_forbidden
from tenantgate.identity.source import IdentitySource, KeyRecord, PlanRecord

__all__ = [
    "FORBIDDEN_BODY",
    "IdentityCache",
    "IdentitySource",
    "KeyRecord",
    "PlanRecord",
    "TenantIdentificationMiddleware",
    "TenantIdentity",
    "current_tenant",
    "forbidden_response",
    "require_tenant",
    "send_forbidden",
]
