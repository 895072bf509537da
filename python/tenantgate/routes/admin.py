"""The operator's API, `/admin/v1`: tenants, their keys, plans.

Every route here sits behind `AdminAuthMiddleware` (the admin token, compared in constant
time) and calls one `AdminService` use case.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from litestar import Controller, delete, get, patch, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, PathParameter, QueryParameter

from tenantgate.tenancy.admin import AdminService
from tenantgate.tenancy.schemas import (
    CreateKey,
    CreateTenant,
    KeyList,
    NewKey,
    PatchTenant,
    Plan,
    PlanList,
    PutPlan,
    RotateKey,
    Tenant,
    TenantCreated,
    TenantPage,
)

__all__ = ["AdminController"]

Admin = NamedDependency[AdminService]
Id = FromPath[UUID]
Cursor = FromQuery[str | None]
PageLimit = Annotated[int, QueryParameter(ge=1, le=100, description="page size, 1..100")]
PlanNameParam = Annotated[str, PathParameter(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]


class AdminController(Controller):
    path = "/admin/v1"
    tags = ["admin"]  # noqa: RUF012 — Litestar reads it as a plain class attribute
    security = [{"adminToken": []}]  # noqa: RUF012

    @post("/tenants", status_code=201)
    async def create_tenant(self, data: JSONBody[CreateTenant], admin: Admin) -> TenantCreated:
        """Create a tenant: its schema, role and first API key (shown this once)."""
        return await admin.create_tenant(data)

    @get("/tenants")
    async def list_tenants(
        self,
        admin: Admin,
        limit: PageLimit = 50,
        cursor: Cursor = None,
    ) -> TenantPage:
        """Tenants, oldest first, a page at a time."""
        return await admin.list_tenants(limit, cursor)

    @get("/tenants/{tenant_id:uuid}")
    async def get_tenant(self, tenant_id: Id, admin: Admin) -> Tenant:
        return await admin.get_tenant(tenant_id)

    @patch("/tenants/{tenant_id:uuid}")
    async def patch_tenant(
        self, tenant_id: Id, data: JSONBody[PatchTenant], admin: Admin
    ) -> Tenant:
        """Rename, change plan, suspend or reactivate, or change the custom domain."""
        return await admin.patch_tenant(tenant_id, data)

    @delete("/tenants/{tenant_id:uuid}", status_code=204)
    async def delete_tenant(self, tenant_id: Id, admin: Admin) -> None:
        """Delete a tenant's schema, role, keys and row; its audit records stay."""
        await admin.delete_tenant(tenant_id)

    @post("/tenants/{tenant_id:uuid}/keys", status_code=201)
    async def create_key(
        self,
        tenant_id: Id,
        admin: Admin,
        data: JSONBody[CreateKey | None] = None,
    ) -> NewKey:
        """Issue another key; its secret is in this answer only."""
        return await admin.create_key(tenant_id, data or CreateKey())

    @get("/tenants/{tenant_id:uuid}/keys")
    async def list_keys(self, tenant_id: Id, admin: Admin) -> KeyList:
        """The tenant's keys, without secrets or hashes."""
        return KeyList(keys=await admin.list_keys(tenant_id))

    @post("/tenants/{tenant_id:uuid}/keys/{key_id:uuid}/rotate", status_code=201)
    async def rotate_key(
        self,
        tenant_id: Id,
        key_id: Id,
        admin: Admin,
        data: JSONBody[RotateKey | None] = None,
    ) -> NewKey:
        """Issue a successor; the old key expires after the grace period."""
        return await admin.rotate_key(tenant_id, key_id, data or RotateKey())

    @delete("/tenants/{tenant_id:uuid}/keys/{key_id:uuid}", status_code=204)
    async def revoke_key(
        self,
        tenant_id: Id,
        key_id: Id,
        admin: Admin,
    ) -> None:
        """Revoke a key: every instance refuses it within a second."""
        await admin.revoke_key(tenant_id, key_id)

    @get("/plans")
    async def list_plans(self, admin: Admin) -> PlanList:
        return PlanList(plans=await admin.list_plans())

    @put("/plans/{name:str}")
    async def put_plan(self, name: PlanNameParam, data: JSONBody[PutPlan], admin: Admin) -> Plan:
        """Create or change a plan; its tenants get the new limits within a second."""
        return await admin.put_plan(name, data)
