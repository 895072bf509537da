"""The tenant's items: JSON documents in the tenant's own schema.

Every query here is unqualified and runs on a connection inside the tenant's transaction
(`Database.transaction(tenant)`), so PostgreSQL resolves `items` to the caller's schema and
refuses anything else — except :func:`read_item`, the hot read, whose one statement enters
the tenant's role and schema itself. Driver errors are translated where they surface (the
transaction, or the web layer's exception handlers).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

import msgspec

from tenantgate.errors import NotFoundError
from tenantgate.tenancy.cursor import KEYSET_PAGE_SQL, page_parameters, split_page
from tenantgate.tenancy.schemas import Item, ItemPage, validate_item_data

if TYPE_CHECKING:
    import asyncpg

    from tenantgate.db.database import Database
    from tenantgate.db.types import Connection
    from tenantgate.naming import TenantNames

__all__ = ["create_item", "delete_item", "list_items", "read_item", "replace_item"]

_COLUMNS = "id, data::text AS data, created_at, updated_at"


def _item(row: asyncpg.Record) -> Item:
    data: dict[str, Any] = msgspec.json.decode(row["data"])
    return Item(id=row["id"], data=data, created_at=row["created_at"], updated_at=row["updated_at"])


def _encode(data: dict[str, Any]) -> str:
    validate_item_data(data)
    return msgspec.json.encode(data).decode()


async def create_item(connection: Connection, data: dict[str, Any]) -> Item:
    row = await connection.fetchrow(
        f"INSERT INTO items (id, data) VALUES ($1, $2::jsonb) RETURNING {_COLUMNS}",
        uuid4(),
        _encode(data),
    )
    assert row is not None
    return _item(row)


_READ_ITEM_SQL = (
    "SELECT id, data, created_at, updated_at FROM public.tenantgate_read_item($1, $2, $3)"
)


async def read_item(database: Database, tenant: TenantNames, item_id: UUID) -> Item:
    """The item, read as the tenant in one round trip (no transaction: the function enters
    the tenant's role and schema itself; see public migration 0008)."""
    row = await database.fetchrow_entering(tenant, _READ_ITEM_SQL, item_id)
    if row is None:
        raise NotFoundError("item")
    return _item(row)


async def replace_item(connection: Connection, item_id: UUID, data: dict[str, Any]) -> Item:
    row = await connection.fetchrow(
        f"""
    UPDATE items SET data = $2::jsonb, updated_at = clock_timestamp()
     WHERE id = $1 RETURNING {_COLUMNS}
    """,
        item_id,
        _encode(data),
    )
    if row is None:
        raise NotFoundError("item")
    return _item(row)


async def delete_item(connection: Connection, item_id: UUID) -> None:
    result = await connection.execute("DELETE FROM items WHERE id = $1", item_id)
    if result == "DELETE 0":
        raise NotFoundError("item")


async def list_items(connection: Connection, limit: int, cursor: str | None) -> ItemPage:
    parameters = page_parameters(cursor, limit)
    rows = await connection.fetch(f"SELECT {_COLUMNS} FROM items {KEYSET_PAGE_SQL}", *parameters)
    page, next_cursor = split_page(rows, limit, _item)
    return ItemPage(items=page, next_cursor=next_cursor)
