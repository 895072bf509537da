"""Reading and writing one item through the tenant's cache (:class:`~tenantgate.cache.ItemCache`).

A read asks the cache first and opens a PostgreSQL transaction only on a miss, then keeps the
copy under the version it saw before reading. A write commits, then invalidates — also when the
transaction failed in a way that may have committed it (the connection lost at ``COMMIT``), not
when the item was not there — and only then answers, so once an update or deletion is
acknowledged no reader is served the old item. Redis down: reads come from PostgreSQL, and the
invalidation is kept until Redis is back (see :mod:`tenantgate.cache.items`).
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import msgspec

from tenantgate.audit import record_change
from tenantgate.cache import RedisTenant
from tenantgate.errors import NotFoundError
from tenantgate.tenancy import items
from tenantgate.tenancy.schemas import Item

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from uuid import UUID

    from litestar.types import Scope

    from tenantgate.db.types import Connection
    from tenantgate.identity import TenantIdentity
    from tenantgate.resources import Resources

__all__ = ["delete_item", "get_item", "replace_item"]

_decode_item = msgspec.json.Decoder(Item).decode
_encode = msgspec.json.Encoder().encode


async def get_item(resources: Resources, tenant: TenantIdentity, item_id: UUID) -> Item:
    """The item, from the cache when it holds the current version, else from PostgreSQL."""
    where = RedisTenant.of(tenant)
    cached, version = await resources.item_cache.lookup(where, item_id)
    if cached is not None:
        return _decode_item(cached)
    item = await items.read_item(resources.database, tenant.names, item_id)
    if version is not None:
        await resources.item_cache.store(where, item_id, version, _encode(item))
    return item


async def replace_item(
    resources: Resources,
    tenant: TenantIdentity,
    item_id: UUID,
    data: dict[str, Any],
    scope: Scope,
) -> Item:
    """Replace the item's data (and record it in the audit log, in the same transaction);
    cached copies are stale before this returns."""
    async with _changing(resources, tenant, item_id) as connection:
        item = await items.replace_item(connection, item_id, data)
        await record_change(connection, tenant.names, scope, 200, {"item_id": str(item_id)})
    return item


async def delete_item(
    resources: Resources, tenant: TenantIdentity, item_id: UUID, scope: Scope
) -> None:
    """Delete the item (and record it in the audit log, in the same transaction); cached copies
    are gone before this returns."""
    async with _changing(resources, tenant, item_id) as connection:
        await items.delete_item(connection, item_id)
        await record_change(connection, tenant.names, scope, 204, {"item_id": str(item_id)})


@asynccontextmanager
async def _changing(
    resources: Resources, tenant: TenantIdentity, item_id: UUID
) -> AsyncIterator[Connection]:
    """A tenant transaction that changes the item, then invalidates its cached copies — also
    when it failed in a way that may have committed it, not when the item was not there."""
    may_have_changed = True
    try:
        async with resources.database.transaction(tenant.names) as connection:
            yield connection
    except NotFoundError:
        may_have_changed = False
        raise
    finally:
        if may_have_changed:
            await resources.item_cache.invalidate(RedisTenant.of(tenant), item_id)
