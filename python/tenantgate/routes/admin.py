"""The operator's API, `/admin/v1`: tenants, their keys, plans.

Every route here sits behind `AdminAuthMiddleware` (the admin token, compared in constant
time) and calls one `AdminService` use case. Bodies are converted strictly (`strict_body`):
what the OpenAPI document forbids is refused. `data` stays in each signature all the same:
Litestar documents the body from it, and refuses a malformed one before the handler runs. The
statuses each route can answer are documented by `tenantgate.http.openapi`; a route declares
only what no rule gives it (`problems(409)`, notes on a state-dependent 422).
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from litestar import Request, delete, get, patch, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, PathParameter, QueryParameter

from tenantgate.http.openapi import ADMIN_SCHEME, problems
from tenantgate.routes.controller import ApiController
from tenantgate.routes.params import Cursor, PageLimit, strict_body
from tenantgate.tenancy.admin import AdminService
from tenantgate.tenancy.schemas import (
    PLAN_NAME_PATTERN,
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
PlanNameParam = Annotated[str, PathParameter(pattern=PLAN_NAME_PATTERN)]
AnyRequest = Request[Any, Any, Any]
WithinDays = Annotated[
    int, QueryParameter(ge=0, le=3650, description="days ahead, 0..3650 (default 7)")
]


class AdminController(ApiController):
    path = "/admin/v1"
    tags = ["admin"]  # noqa: RUF012 — Litestar reads it as a plain class attribute
    security = [{ADMIN_SCHEME: []}]  # noqa: RUF012

    @post(
        "/tenants",
        status_code=201,
        responses=problems(409, notes={422: "Also for a plan that does not exist."}),
    )
    async def create_tenant(
        self, data: JSONBody[CreateTenant], request: AnyRequest, admin: Admin
    ) -> TenantCreated:
        """Create a tenant: its schema, role and first API key (shown this once)."""
        return await admin.create_tenant(await strict_body(request, CreateTenant))

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

    @patch(
        "/tenants/{tenant_id:uuid}",
        responses=problems(
            409,
            notes={
                422: "Also for a plan that does not exist, or a custom_domain for a tenant that"
                " is not an enterprise tenant."
            },
        ),
    )
    async def patch_tenant(
        self, tenant_id: Id, data: JSONBody[PatchTenant], request: AnyRequest, admin: Admin
    ) -> Tenant:
        """Rename, change plan, suspend or reactivate, or change the custom domain."""
        return await admin.patch_tenant(tenant_id, await strict_body(request, PatchTenant))

    @delete("/tenants/{tenant_id:uuid}", status_code=204)
    async def delete_tenant(self, tenant_id: Id, admin: Admin) -> None:
        """Delete a tenant's schema, role, keys and row; its audit records stay."""
        await admin.delete_tenant(tenant_id)

    @post(
        "/tenants/{tenant_id:uuid}/keys",
        status_code=201,
        responses=problems(
            notes={
                422: "Also for `hsm: true` unless the tenant is an enterprise tenant and an HSM"
                " is configured.",
                503: "Also when the HSM fails to hash an `hsm: true` key.",
            }
        ),
    )
    async def create_key(
        self,
        tenant_id: Id,
        request: AnyRequest,
        admin: Admin,
        data: JSONBody[CreateKey | None] = None,
    ) -> NewKey:
        """Issue another key; its secret is in this answer only. The body may be left out."""
        return await admin.create_key(tenant_id, await strict_body(request, CreateKey, CreateKey()))

    @get("/keys/due")
    async def keys_due(self, admin: Admin, within_days: WithinDays = 7) -> KeyList:
        """Active keys expiring within `within_days` days, soonest first: the ones to rotate."""
        return KeyList(keys=await admin.keys_due(within_days))

    @get("/tenants/{tenant_id:uuid}/keys")
    async def list_keys(self, tenant_id: Id, admin: Admin) -> KeyList:
        """The tenant's keys, without secrets or hashes."""
        return KeyList(keys=await admin.list_keys(tenant_id))

    @post(
        "/tenants/{tenant_id:uuid}/keys/{key_id:uuid}/rotate",
        status_code=201,
        responses=problems(
            notes={
                422: "Also for an HSM key when no HSM is configured.",
                503: "Also when the HSM fails to hash an HSM key's successor.",
            }
        ),
    )
    async def rotate_key(
        self,
        tenant_id: Id,
        key_id: Id,
        request: AnyRequest,
        admin: Admin,
        data: JSONBody[RotateKey | None] = None,
    ) -> NewKey:
        """Issue a successor; the old key expires after the grace period. The body may be left
        out."""
        body = await strict_body(request, RotateKey, RotateKey())
        return await admin.rotate_key(tenant_id, key_id, body)

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

    @put(
        "/plans/{name:str}",
        responses=problems(
            notes={
                422: "Also when ceil(1e9 / rate_per_second) * burst exceeds 2**56 ns (a bucket"
                " must refill within about 833 days: the limiter's exact range)."
            }
        ),
    )
    async def put_plan(
        self, name: PlanNameParam, data: JSONBody[PutPlan], request: AnyRequest, admin: Admin
    ) -> Plan:
        """Create or change a plan; its tenants get the new limits within a second."""
        return await admin.put_plan(name, await strict_body(request, PutPlan))
