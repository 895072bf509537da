"""The one place that builds tenant-scoped names.

Every name that walls a tenant off — its PostgreSQL schema and role, its Redis namespace, its
S3 prefix — is derived here from the tenant id, so no other module formats one by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

__all__ = ["TenantNames", "quote_ident"]


def quote_ident(name: str) -> str:
    """Quote a PostgreSQL identifier (names here are generated, but quoting costs nothing)."""
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True, slots=True)
class TenantNames:
    """Names of everything that belongs to one tenant, computed once per tenant."""

    tenant_id: UUID
    schema: str
    role: str
    redis_namespace: str
    s3_prefix: str
    scope_sql: str
    """`SET LOCAL` statements that put a transaction into this tenant's role and schema."""
    lock_key: int
    """The PostgreSQL advisory lock that is this tenant's provisioning lease."""

    @classmethod
    def of(cls, tenant_id: UUID) -> TenantNames:
        schema = f"t_{tenant_id.hex}"
        role = f"tg_{tenant_id.hex}"
        scope_sql = (
            f"SET LOCAL ROLE {quote_ident(role)}; SET LOCAL search_path TO {quote_ident(schema)}"
        )
        return cls(
            tenant_id=tenant_id,
            schema=schema,
            role=role,
            redis_namespace=f"t:{{{tenant_id}}}:",
            s3_prefix=f"{tenant_id}/",
            scope_sql=scope_sql,
            lock_key=int.from_bytes(tenant_id.bytes[:8], "big", signed=True),
        )
