"""Reading audit records back, newest first, a page at a time.

The operator reads every record (optionally one tenant's); a tenant reads its own in its own
transaction, where row-level security — not the ``WHERE`` clause, which only helps the index —
decides which rows it may see.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import msgspec

from tenantgate.audit.log import RECORD_COLUMNS
from tenantgate.tenancy.cursor import decode_cursor, encode_cursor
from tenantgate.tenancy.schemas import AuditPage, AuditRecord

if TYPE_CHECKING:
    from uuid import UUID

    from tenantgate.db.database import Database
    from tenantgate.db.types import Connection
    from tenantgate.naming import TenantNames

__all__ = ["operator_page", "tenant_page"]

_PAGE: Final = f"""
SELECT {RECORD_COLUMNS} FROM public.audit_log
 WHERE ($1::uuid IS NULL OR tenant_id = $1)
   AND ($2::timestamptz IS NULL OR (at, id) < ($2, $3))
 ORDER BY at DESC, id DESC
 LIMIT $4
"""


async def operator_page(
    database: Database, tenant_id: UUID | None, limit: int, cursor: str | None
) -> AuditPage:
    """A page of every record (or of one tenant's), newest first."""
    async with database.transaction() as connection:
        return await _page(connection, tenant_id, limit, cursor)


async def tenant_page(
    database: Database, names: TenantNames, limit: int, cursor: str | None
) -> AuditPage:
    """A page of the tenant's own records, read as the tenant's role."""
    async with database.transaction(names) as connection:
        return await _page(connection, names.tenant_id, limit, cursor)


async def _page(
    connection: Connection, tenant_id: UUID | None, limit: int, cursor: str | None
) -> AuditPage:
    at, record_id = decode_cursor(cursor) if cursor is not None else (None, None)
    rows = await connection.fetch(_PAGE, tenant_id, at, record_id, limit + 1)
    records = [_record(row) for row in rows[:limit]]
    next_cursor = (
        encode_cursor(records[-1].at, records[-1].id) if len(rows) > limit and records else None
    )
    return AuditPage(records=records, next_cursor=next_cursor)


def _record(row: Any) -> AuditRecord:
    return AuditRecord(
        id=row["id"],
        at=row["at"],
        tenant_id=row["tenant_id"],
        key_id=row["key_id"],
        actor=row["actor"],
        source_ip=row["source_ip"],
        method=row["method"],
        path=row["path"],
        status=row["status"],
        request_id=row["request_id"],
        operation=msgspec.json.decode(row["operation"]),
        hash=bytes(row["hash"]).hex(),
        prev_hash=bytes(row["prev_hash"]).hex(),
    )
