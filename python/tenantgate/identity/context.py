"""The caller of the current request: `TenantIdentity`, `current_tenant`, `require_tenant`."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from uuid import UUID

from tenantgate.naming import TenantNames

__all__ = ["TenantIdentity", "current_tenant", "require_tenant"]


@dataclass(frozen=True, slots=True)
class TenantIdentity:
    """The authenticated caller: a tenant and the key it used."""

    tenant_id: UUID
    key_id: UUID
    name: str
    """The tenant's name."""
    plan: str
    tier: str
    names: TenantNames
    """The tenant's schema, role, Redis namespace and S3 prefix (a read-only convenience)."""
    redis_database: int | None = None
    """The tenant's own Redis logical database (the ``database`` placement), or None when it
    lives in the service's database under its namespace alone."""


current_tenant: ContextVar[TenantIdentity | None] = ContextVar("tenantgate_tenant", default=None)
"""The tenant of the request being served, in its task and the tasks it starts; None outside
a tenant request."""


def require_tenant() -> TenantIdentity:
    """The current request's tenant; fails closed (LookupError) outside a tenant request."""
    tenant = current_tenant.get()
    if tenant is None:
        raise LookupError("no tenant in this context")
    return tenant
