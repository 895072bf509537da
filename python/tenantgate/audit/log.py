"""Appending to the audit chains, and reading records back.

:func:`append` runs inside the caller's transaction, as the service's role: per chain it takes
a transaction-scoped advisory lock (so concurrent writers to one chain queue up and the chain
never forks; writers to different chains do not wait for each other), reads the chain's head,
and inserts the records, each hashed over the previous one. The records commit — or roll back
— with the caller's transaction: a tenant's data change and its record are one.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any, Final
from uuid import uuid4

import msgspec

from tenantgate.audit.records import AUDITED_STATE_KEY, canonical_fields, event_of
from tenantgate.core import implementation as _core

if TYPE_CHECKING:
    from collections.abc import Sequence

    from litestar.types import Scope

    from tenantgate.audit.records import AuditEvent
    from tenantgate.db.types import Connection
    from tenantgate.naming import TenantNames

__all__ = ["GENESIS", "RECORD_COLUMNS", "append", "append_as_tenant", "record_change"]

GENESIS: Final = bytes(32)
"""The previous hash of a chain's first record."""

RECORD_COLUMNS: Final = (
    "id, chain, seq, at, tenant_id, key_id, actor, source_ip, method, path, status, "
    "request_id, operation::text AS operation, prev_hash, hash"
)

_LOCK_CLASS: Final = 0x7467_6175  # "tgau": the advisory lock space of the audit chains

_LOCK: Final = "SELECT pg_advisory_xact_lock($1, hashtext($2))"

_HEAD: Final = "SELECT seq, hash FROM public.audit_log WHERE chain = $1 ORDER BY seq DESC LIMIT 1"

_INSERT: Final = """
INSERT INTO public.audit_log (id, chain, seq, at, tenant_id, key_id, actor, source_ip, method, path,
                       status, request_id, operation, prev_hash, hash)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::jsonb, $14, $15)
"""

_encode_json = msgspec.json.Encoder(order="sorted").encode


async def append(connection: Connection, events: Sequence[AuditEvent]) -> None:
    """Add ``events`` to their chains, in order, inside the caller's transaction (which must
    be the service role's: see :func:`append_as_tenant` inside a tenant's)."""
    by_chain: dict[str, list[AuditEvent]] = defaultdict(list)
    for event in events:
        by_chain[event.chain].append(event)
    for chain in sorted(by_chain):  # one order for every writer: no deadlock between chains
        await connection.execute(_LOCK, _LOCK_CLASS, chain)
        head = await connection.fetchrow(_HEAD, chain)
        seq, previous = (head["seq"], bytes(head["hash"])) if head is not None else (0, GENESIS)
        rows: list[tuple[Any, ...]] = []
        for event in by_chain[chain]:
            seq += 1
            record_id = uuid4()
            current = _core.audit_record_hash(
                previous,
                canonical_fields(
                    record_id, chain, seq, event.at, event.tenant_id, event.key_id, event.actor,
                    event.source_ip, event.method, event.path, event.status, event.request_id,
                    event.operation,
                ),
            )  # fmt: skip
            rows.append(
                (
                    record_id, chain, seq, event.at, event.tenant_id, event.key_id, event.actor,
                    event.source_ip, event.method, event.path, event.status, event.request_id,
                    _encode_json(event.operation).decode(), previous, current,
                )
            )  # fmt: skip
            previous = current
        await connection.executemany(_INSERT, rows)


async def append_as_tenant(
    connection: Connection, names: TenantNames, events: Sequence[AuditEvent]
) -> None:
    """:func:`append` inside a tenant's transaction: the tenant's role may only read the log,
    so the records are written as the service's own role (``SET LOCAL ROLE NONE``), and the
    transaction is put back in the tenant's role after."""
    await connection.execute("SET LOCAL ROLE NONE")
    await append(connection, events)
    await connection.execute(names.scope_sql)


async def record_change(
    connection: Connection,
    names: TenantNames,
    scope: Scope,
    status: int,
    operation: dict[str, Any],
) -> None:
    """Record the tenant's change in its own transaction (so the change and its record commit
    together), and note it in the request so it is not recorded again after the answer."""
    await append_as_tenant(
        connection, names, [event_of(scope, status, actor="tenant", operation=operation)]
    )
    scope["state"][AUDITED_STATE_KEY] = True
