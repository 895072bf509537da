"""What an audit record says, and the canonical fields its hash covers.

A record belongs to a chain: its tenant's (the tenant id), or :data:`OPERATOR_CHAIN` for
operator actions and for callers no tenant was found for. Within a chain records are numbered
from 1 (``seq``) and each holds the previous one's hash, so an edit, a gap or a swap breaks
every hash after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Literal
from uuid import UUID

import msgspec

from tenantgate.http.request_id import request_id_of

if TYPE_CHECKING:
    from litestar.types import Scope

__all__ = [
    "AUDITED_STATE_KEY",
    "OPERATOR_CHAIN",
    "Actor",
    "AuditEvent",
    "canonical_fields",
    "event_of",
]

AUDITED_STATE_KEY: Final = "tenantgate_audited"
"""Set in ``scope["state"]`` once a request's record is written in its own transaction."""

OPERATOR_CHAIN: Final = "-"
"""The chain of operator actions and of requests no tenant was found for."""

Actor = Literal["admin", "tenant", "system"]

_TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%S.%fZ"
_encode_canonical_json = msgspec.json.Encoder(order="sorted").encode


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One thing that happened, before it has a place in a chain."""

    actor: Actor
    method: str
    path: str
    status: int
    tenant_id: UUID | None = None
    key_id: UUID | None = None
    source_ip: str | None = None
    request_id: str | None = None
    operation: dict[str, Any] = field(default_factory=dict)
    """What was touched: ids, never secrets or bodies."""
    at: datetime = field(default_factory=_now)

    @property
    def chain(self) -> str:
        return str(self.tenant_id) if self.tenant_id is not None else OPERATOR_CHAIN


def canonical_fields(
    record_id: UUID,
    chain: str,
    seq: int,
    at: datetime,
    tenant_id: UUID | None,
    key_id: UUID | None,
    actor: str,
    source_ip: str | None,
    method: str,
    path: str,
    status: int,
    request_id: str | None,
    operation: Any,
) -> list[str | None]:
    """The fields a record's hash covers, as text, in their fixed order (the same whether the
    record is being written or read back from PostgreSQL)."""
    return [
        str(record_id),
        chain,
        str(seq),
        at.astimezone(UTC).strftime(_TIME_FORMAT),
        str(tenant_id) if tenant_id is not None else None,
        str(key_id) if key_id is not None else None,
        actor,
        source_ip,
        method,
        path,
        str(status),
        request_id,
        _encode_canonical_json(operation).decode(),
    ]


def event_of(
    scope: Scope, status: int, *, actor: Actor, operation: dict[str, Any] | None = None
) -> AuditEvent:
    """The event of the request in ``scope``: who (its tenant and key, if identified), from
    where, what (method, path, the route's path parameters), and how it ended."""
    state = scope.get("state") or {}
    tenant = state.get("tenant")
    client = scope.get("client")
    path_params = scope.get("path_params") or {}
    return AuditEvent(
        actor=actor,
        method=str(scope.get("method", "")),
        path=str(scope.get("path", "")),
        status=status,
        tenant_id=getattr(tenant, "tenant_id", None),
        key_id=getattr(tenant, "key_id", None),
        source_ip=client[0] if client else None,
        request_id=request_id_of(scope),
        operation=operation
        if operation is not None
        else {name: str(value) for name, value in path_params.items()},
    )
