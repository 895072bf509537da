"""The one place that builds tenant-scoped names.

Every name that walls a tenant off — its PostgreSQL schema and role, its Redis namespace and
ACL user, its S3 prefix — is derived here from the tenant id, so no other module formats one
by hand.

S3 names: a tenant's prefix in the shared bucket is ``<tenant id>/``; an enterprise tenant's
own bucket is ``<bucket prefix>-<id hex>`` and the shared bucket ``<bucket prefix>-shared``
(:class:`BucketNames`), the bucket prefix being the deployment's ``TENANTGATE_S3_BUCKET_PREFIX``:
bucket names are global on AWS, so a deployment chooses a prefix of its own. Every name is
lowercase letters, digits and hyphens, 3 to 63 characters, as AWS requires (SeaweedFS refuses
names that are not DNS-like, too). The tenant's S3 (IAM) user is ``tg-<id hex>``.

Redis keys and channels of a tenant all start with ``t:{<tenant id>}:``: the braces are a hash
tag (a tenant's keys share one Redis Cluster slot) and are not special in Redis's glob
patterns, so ``t:{<tenant id>}:*`` matches exactly the tenant's keys (a UUID holds no glob
character). Every tenant's keys match :data:`REDIS_TENANTS_PATTERN`. Below the namespace,
``c:`` holds the keys of the cache API (:meth:`TenantNames.cache_key`: whatever bytes the
client chose follow it, so no client key can reach outside ``t:{<id>}:c:``) and ``i:`` the
cached items (:meth:`TenantNames.item_key`, :meth:`TenantNames.item_version_key`).

The cluster rate-limit tier keeps each tenant's bucket at ``tg:rl:{<tenant id>}``
(:func:`ratelimit_key`): outside the tenant's own pattern, so a tenant's ACL user can neither
read nor reset its budget, yet in the same Cluster slot (the same hash tag). Every such key
matches :data:`RATELIMIT_KEYS_PATTERN`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final
from uuid import UUID

__all__ = [
    "ANNOUNCEMENTS_CHANNEL",
    "BUCKET_PREFIX_PATTERN",
    "RATELIMIT_KEYS_PATTERN",
    "REDIS_TENANTS_PATTERN",
    "BucketNames",
    "TenantNames",
    "quote_ident",
    "ratelimit_key",
]

ANNOUNCEMENTS_CHANNEL: Final = "tenantgate:identity"
"""The Redis channel on which instances announce changes to keys and tenants (no tenant's
pattern ``t:{<id>}:*`` matches it)."""

REDIS_TENANTS_PATTERN: Final = "t:*"
"""The Redis glob pattern that matches every tenant's keys (and no key of the service's)."""

RATELIMIT_KEYS_PATTERN: Final = "tg:rl:*"
"""The Redis glob pattern of the cluster tier's buckets (no tenant's pattern matches it)."""


def ratelimit_key(bucket: str) -> str:
    """The Redis key of the cluster tier's bucket ``bucket`` (a tenant id)."""
    return f"tg:rl:{{{bucket}}}"


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
    """``t:{<tenant id>}:``, the start of every Redis key and channel of the tenant."""
    redis_pattern: str
    """``t:{<tenant id>}:*``: the glob pattern of the tenant's keys and channels (its ACL
    user's ``~`` and ``&`` patterns, and the ``SCAN MATCH`` that finds its keys)."""
    redis_user: str
    """``tg_<id hex>``, the tenant's Redis ACL user."""
    s3_prefix: str
    """``<tenant id>/``: where a standard tenant's objects live in the shared bucket."""
    s3_user: str
    """``tg-<id hex>``: the tenant's S3 identity (an IAM user), its inline policy's name too."""
    scope_sql: str
    """`SET LOCAL` statements that put a transaction into this tenant's role and schema."""
    begin_sql: str
    """`BEGIN` and `scope_sql` as one simple query: a tenant transaction's first round trip
    (built here once per tenant, not per request)."""
    lock_key: int
    """The PostgreSQL advisory lock that is this tenant's provisioning lease."""

    @classmethod
    def of(cls, tenant_id: UUID) -> TenantNames:
        schema = f"t_{tenant_id.hex}"
        role = f"tg_{tenant_id.hex}"
        scope_sql = (
            f"SET LOCAL ROLE {quote_ident(role)}; SET LOCAL search_path TO {quote_ident(schema)}"
        )
        redis_namespace = f"t:{{{tenant_id}}}:"
        return cls(
            tenant_id=tenant_id,
            schema=schema,
            role=role,
            redis_namespace=redis_namespace,
            redis_pattern=redis_namespace + "*",
            redis_user=f"tg_{tenant_id.hex}",
            s3_prefix=f"{tenant_id}/",
            s3_user=f"tg-{tenant_id.hex}",
            scope_sql=scope_sql,
            begin_sql="BEGIN; " + scope_sql,
            lock_key=int.from_bytes(tenant_id.bytes[:8], "big", signed=True),
        )

    def cache_key(self, key: str) -> bytes:
        """The Redis key of the tenant's cache entry ``key`` (any text: it only ever follows
        the tenant's own prefix, and Redis keys are binary-safe)."""
        return (self.redis_namespace + "c:" + key).encode()

    def item_key(self, item_id: UUID) -> bytes:
        """The Redis key of the cached copy of the tenant's item ``item_id``."""
        return f"{self.redis_namespace}i:{item_id}".encode()

    def item_version_key(self, item_id: UUID) -> bytes:
        """The Redis key of the item's cache version: a random token replaced by every write,
        and a cached copy is served only while it carries the current one."""
        return f"{self.redis_namespace}i:{item_id}:v".encode()


BUCKET_PREFIX_PATTERN: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,27}[a-z0-9])?")
"""A deployment's bucket prefix: at most 29 characters, so ``<prefix>-<32 hex digits>`` stays
within AWS's 63; lowercase letters, digits and inner hyphens (no dots: path-style and
virtual-hosted TLS both work)."""


@dataclass(frozen=True, slots=True)
class BucketNames:
    """The S3 bucket names of one deployment, all starting with its ``prefix``."""

    prefix: str

    def __post_init__(self) -> None:
        if not BUCKET_PREFIX_PATTERN.fullmatch(self.prefix) or "--" in self.prefix:
            raise ValueError(f"invalid S3 bucket prefix {self.prefix!r}")

    @property
    def shared(self) -> str:
        """The bucket every standard tenant shares, each under its own prefix."""
        return f"{self.prefix}-shared"

    @property
    def audit(self) -> str:
        """The bucket of sealed audit digests, under S3 Object Lock (never a tenant's: a
        tenant's bucket ends in 32 hex digits)."""
        return f"{self.prefix}-audit"

    def tenant(self, tenant_id: UUID) -> str:
        """An enterprise tenant's own bucket. Never reused: tenant ids are never reused."""
        return f"{self.prefix}-{tenant_id.hex}"
