"""What identification needs from the source of truth, and nothing more.

Identification never talks to a database itself: it is given an :class:`IdentitySource`
(PostgreSQL's is :class:`tenantgate.db.identity_source.PostgresIdentitySource`), whose errors
are already tenantgate's own (an outage is a
:class:`~tenantgate.errors.ServiceUnavailableError`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol
from uuid import UUID

__all__ = ["HsmCandidate", "IdentitySource", "KeyRecord", "PlanRecord"]


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A stored key as identification sees it: the key, its tenant, its tenant's plan."""

    key_id: UUID
    key_status: str
    expires_at: datetime | None
    tenant_id: UUID
    tenant_name: str
    tenant_status: str
    plan: str
    tier: str
    rate_per_second: float
    burst: int
    redis_database: int | None = None
    """The tenant's own Redis database (the ``database`` placement), else None."""
    scopes: tuple[str, ...] | None = None
    """What the key may do; None: everything."""
    allowed_cidrs: tuple[str, ...] = ()
    """The networks the key may be used from; empty: anywhere."""

    @property
    def usable(self) -> bool:
        """Whether requests made with this key may be served (key and tenant active)."""
        return self.key_status == "active" and self.tenant_status == "active"


@dataclass(frozen=True, slots=True)
class HsmCandidate:
    """An HSM key whose display prefix a presented key shares: its stored (HSM) digest, to
    compare with the HSM's digest of the presented key, and its record."""

    stored_digest: bytes
    record: KeyRecord


@dataclass(frozen=True, slots=True)
class PlanRecord:
    """A plan's limits."""

    name: str
    rate_per_second: float
    burst: int


class IdentitySource(Protocol):
    """The source of truth for keys, plans and custom domains."""

    async def find_key(self, digest: bytes) -> KeyRecord | None:
        """The key stored under the keyed hash ``digest``, or None when there is none."""
        ...

    async def find_hsm_candidates(self, display_prefix: str) -> Sequence[HsmCandidate]:
        """The HSM keys stored under ``display_prefix`` (usually none, else one)."""
        ...

    async def mark_used(self, key_ids: Sequence[UUID]) -> None:
        """Record that these keys were used (``last_used_at``); called in batches."""
        ...

    async def load_plans(self) -> Sequence[PlanRecord]:
        """Every plan."""
        ...

    async def load_custom_domains(self) -> Mapping[str, UUID]:
        """Every bound custom domain (normalised: lower case, no port) and its tenant."""
        ...
