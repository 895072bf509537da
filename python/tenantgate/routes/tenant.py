"""The tenant API, `/v1`: every handler acts as the caller's tenant and nothing else.

Handlers receive `tenant` (the caller's identity) and `db` (a connection inside a transaction
that is the tenant's role and schema) by dependency injection; the two hottest reads take the
caller from the request's context (`require_tenant()`) instead, which costs less. One item is
read and written through the tenant's cache (`tenancy.cached_items`): those handlers open
their transaction themselves, so a cache hit touches no connection and an invalidation follows
the commit. An item body has no field that Litestar's lenient conversion could change (`data`
is any JSON object), so it is not decoded again strictly. The statuses each route can answer
are documented by `tenantgate.http.openapi`.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from litestar import Request, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from tenantgate.audit import record_change
from tenantgate.db.types import Connection
from tenantgate.http.openapi import TENANT_SCHEME
from tenantgate.identity import TenantIdentity, require_tenant
from tenantgate.resources import Resources
from tenantgate.routes.controller import ApiController
from tenantgate.routes.params import Cursor, PageLimit
from tenantgate.scopes import SCOPE_OPT
from tenantgate.tenancy import cached_items, items
from tenantgate.tenancy.schemas import Item, ItemBody, ItemPage, Me

__all__ = ["TenantController"]

Db = NamedDependency[Connection]
Caller = NamedDependency[TenantIdentity]
Services = NamedDependency[Resources]
Id = FromPath[UUID]
AnyRequest = Request[Any, Any, Any]


class TenantController(ApiController):
    path = "/v1"
    tags = ["tenant"]  # noqa: RUF012 — Litestar reads it as a plain class attribute
    security = [{TENANT_SCHEME: []}]  # noqa: RUF012

    @get("/me", sync_to_thread=False)
    def me(self) -> Me:
        """Who the key belongs to."""
        # From the request's context, not injected: resolving a dependency cost this route
        # more than the rest of its handler (profiled).
        tenant = require_tenant()
        return Me(
            tenant_id=tenant.tenant_id,
            name=tenant.name,
            plan=tenant.plan,
            tier=tenant.tier,
            key_id=tenant.key_id,
        )

    @post("/items", status_code=201, opt={SCOPE_OPT: "items:write"})
    async def create_item(
        self, data: JSONBody[ItemBody], db: Db, tenant: Caller, request: AnyRequest
    ) -> Item:
        item = await items.create_item(db, data.data)
        # In the same transaction as the item: both commit, or neither.
        await record_change(db, tenant.names, request.scope, 201, {"item_id": str(item.id)})
        return item

    @get("/items", opt={SCOPE_OPT: "items:read"})
    async def list_items(
        self,
        db: Db,
        limit: PageLimit = 50,
        cursor: Cursor = None,
    ) -> ItemPage:
        return await items.list_items(db, limit, cursor)

    @get("/items/{item_id:uuid}", opt={SCOPE_OPT: "items:read"})
    async def get_item(self, item_id: Id, resources: Services) -> Item:
        """The item, served through the tenant's cache."""
        return await cached_items.get_item(resources, require_tenant(), item_id)

    @put("/items/{item_id:uuid}", opt={SCOPE_OPT: "items:write"})
    async def replace_item(
        self,
        item_id: Id,
        data: JSONBody[ItemBody],
        tenant: Caller,
        resources: Services,
        request: AnyRequest,
    ) -> Item:
        return await cached_items.replace_item(resources, tenant, item_id, data.data, request.scope)

    @delete("/items/{item_id:uuid}", status_code=204, opt={SCOPE_OPT: "items:write"})
    async def delete_item(
        self, item_id: Id, tenant: Caller, resources: Services, request: AnyRequest
    ) -> None:
        await cached_items.delete_item(resources, tenant, item_id, request.scope)
