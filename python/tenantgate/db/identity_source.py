"""Identification's view of PostgreSQL: keys, plans and custom domains.

:class:`PostgresIdentitySource` is the :class:`~tenantgate.identity.source.IdentitySource` the
service runs with: identification asks it, and never asyncpg, for what it needs. Its
statements run through :class:`~tenantgate.db.database.Database`, so they are retried once on a
pooled connection found dead, and an outage is a
:class:`~tenantgate.errors.ServiceUnavailableError`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from tenantgate.identity.source import HsmCandidate, KeyRecord, PlanRecord

if TYPE_CHECKING:
    from collections.abc import Sequence
    from uuid import UUID

    import asyncpg

    from tenantgate.db.database import Database

__all__ = ["PostgresIdentitySource"]

# A read only, whatever the key's state: a refused key (revoked, expired, suspended) costs
# what an unknown one costs, so timing does not tell whether a key was ever issued. Use is
# recorded later, in batches (`mark_used`).
_FIND_KEY: Final = """
SELECT k.id AS key_id, k.status AS key_status, k.expires_at, k.tenant_id,
       t.name AS tenant_name, t.status AS tenant_status, t.plan, t.tier, t.redis_database,
       p.rate_per_second, p.burst, k.scopes, k.allowed_cidrs::text[] AS allowed_cidrs
  FROM api_keys k
  JOIN tenants t ON t.id = k.tenant_id
  JOIN plans p ON p.name = t.plan
 WHERE k.key_hash = $1
"""

# HSM keys by display prefix (index api_keys_hsm_prefix), for a miss the pepper digest did not
# find: the HSM then hashes the presented key and its digest is compared with these.
# The predicate is the index's, literally (a parameter would not let the planner use it).
_FIND_HSM_CANDIDATES: Final = """
SELECT k.key_hash, k.id AS key_id, k.status AS key_status, k.expires_at, k.tenant_id,
       t.name AS tenant_name, t.status AS tenant_status, t.plan, t.tier, t.redis_database,
       p.rate_per_second, p.burst, k.scopes, k.allowed_cidrs::text[] AS allowed_cidrs
  FROM api_keys k
  JOIN tenants t ON t.id = k.tenant_id
  JOIN plans p ON p.name = t.plan
 WHERE k.prefix = $1 AND k.hash_scheme <> 'hmac-sha256'
"""

_MARK_USED: Final = "UPDATE api_keys SET last_used_at = now() WHERE id = ANY($1::uuid[])"

_PLANS: Final = "SELECT name, rate_per_second, burst FROM plans"

_CUSTOM_DOMAINS: Final = "SELECT custom_domain, id FROM tenants WHERE custom_domain IS NOT NULL"


class PostgresIdentitySource:
    """Keys, plans and custom domains as the service's own login role reads them."""

    __slots__ = ("_database",)

    def __init__(self, database: Database) -> None:
        self._database = database

    async def find_key(self, digest: bytes) -> KeyRecord | None:
        """The key stored under ``digest``, its tenant and its plan (a read, nothing more)."""
        row = await self._database.fetchrow(_FIND_KEY, digest)
        if row is None:
            return None
        return _key_record(row)

    async def find_hsm_candidates(self, display_prefix: str) -> list[HsmCandidate]:
        """The HSM keys stored under ``display_prefix`` and their stored digests."""
        rows = await self._database.fetch(_FIND_HSM_CANDIDATES, display_prefix)
        return [HsmCandidate(bytes(row["key_hash"]), _key_record(row)) for row in rows]

    async def mark_used(self, key_ids: Sequence[UUID]) -> None:
        """Stamp ``last_used_at`` on these keys (one statement; repeating it is harmless)."""
        await self._database.fetch(_MARK_USED, list(key_ids))

    async def load_plans(self) -> list[PlanRecord]:
        rows = await self._database.fetch(_PLANS)
        return [PlanRecord(row["name"], row["rate_per_second"], row["burst"]) for row in rows]

    async def load_custom_domains(self) -> dict[str, UUID]:
        rows = await self._database.fetch(_CUSTOM_DOMAINS)
        return {row["custom_domain"]: row["id"] for row in rows}


def _key_record(row: asyncpg.Record) -> KeyRecord:
    return KeyRecord(
        key_id=row["key_id"],
        key_status=row["key_status"],
        expires_at=row["expires_at"],
        tenant_id=row["tenant_id"],
        tenant_name=row["tenant_name"],
        tenant_status=row["tenant_status"],
        plan=row["plan"],
        tier=row["tier"],
        redis_database=row["redis_database"],
        scopes=tuple(row["scopes"]),
        allowed_cidrs=tuple(row["allowed_cidrs"]),
        rate_per_second=row["rate_per_second"],
        burst=row["burst"],
    )
