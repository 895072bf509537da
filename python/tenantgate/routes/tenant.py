"""The tenant API, `/v1`: every handler acts as the caller's tenant and nothing else.

Handlers receive `tenant` (the caller's identity) and `db` (a connection inside a transaction
that is the tenant's role and schema) by dependency injection.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from litestar import Controller, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from tenantgate.db.types import Connection
from tenantgate.identity import TenantIdentity
from tenantgate.tenancy import items
from tenantgate.tenancy.schemas import Item, ItemBody, ItemPage, Me

__all__ = ["TenantController"]

Db = NamedDependency[Connection]
Caller = NamedDependency[TenantIdentity]
Id = FromPath[UUID]
Cursor = FromQuery[str | None]
PageLimit = Annotated[int, QueryParameter(ge=1, le=100, description="page size, 1..100")]


class TenantController(Controller):
    path = "/v1"
    tags = ["tenant"]  # noqa: RUF012 — Litestar reads it as a plain class attribute
    security = [{"tenantKey": []}]  # noqa: RUF012

    @get("/me", sync_to_thread=False)
    def me(self, tenant: Caller) -> Me:
        """Who the key belongs to."""
        return Me(
            tenant_id=tenant.tenant_id,
            name=tenant.name,
            plan=tenant.plan,
            tier=tenant.tier,
            key_id=tenant.key_id,
        )

    @post("/items", status_code=201)
    async def create_item(self, data: JSONBody[ItemBody], db: Db) -> Item:
        return await items.create_item(db, data.data)

    @get("/items")
    async def list_items(
        self,
        db: Db,
        limit: PageLimit = 50,
        cursor: Cursor = None,
    ) -> ItemPage:
        return await items.list_items(db, limit, cursor)

    @get("/items/{item_id:uuid}")
    async def get_item(self, item_id: Id, db: Db) -> Item:
        return await items.get_item(db, item_id)

    @put("/items/{item_id:uuid}")
    async def replace_item(self, item_id: Id, data: JSONBody[ItemBody], db: Db) -> Item:
        return await items.replace_item(db, item_id, data.data)

    @delete("/items/{item_id:uuid}", status_code=204)
    async def delete_item(self, item_id: Id, db: Db) -> None:
        await items.delete_item(db, item_id)
