"""The audit log's routes: the operator's `/admin/v1/audit` (every record, verifying the
chains, sealing their heads) and the tenant's `/v1/audit` (its own records only, by row-level
security)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from litestar import get, post
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from tenantgate.audit import verify
from tenantgate.audit.queries import operator_page, tenant_page
from tenantgate.audit.seal import AuditSealer
from tenantgate.http.openapi import ADMIN_SCHEME, TENANT_SCHEME, problems
from tenantgate.identity import TenantIdentity
from tenantgate.resources import Resources
from tenantgate.routes.controller import ApiController
from tenantgate.routes.params import Cursor, PageLimit
from tenantgate.scopes import SCOPE_OPT
from tenantgate.tenancy.schemas import AuditPage, AuditSeal, AuditVerification

__all__ = ["AdminAuditController", "TenantAuditController"]

Services = NamedDependency[Resources]
Sealer = NamedDependency[AuditSealer]
Caller = NamedDependency[TenantIdentity]
_UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
TenantFilter = Annotated[
    str | None,
    QueryParameter(
        description="only this tenant's records (a tenant id)",
        pattern=_UUID_PATTERN,
        min_length=36,
        max_length=36,
        required=False,
    ),
]


class AdminAuditController(ApiController):
    path = "/admin/v1/audit"
    tags = ["admin"]  # noqa: RUF012 — Litestar reads it as a plain class attribute
    security = [{ADMIN_SCHEME: []}]  # noqa: RUF012

    @get("/")
    async def list_records(
        self,
        resources: Services,
        tenant_id: TenantFilter = None,
        limit: PageLimit = 50,
        cursor: Cursor = None,
    ) -> AuditPage:
        """Audit records, newest first (one tenant's with `tenant_id`)."""
        tenant = UUID(tenant_id) if tenant_id is not None else None
        return await operator_page(resources.database, tenant, limit, cursor)

    @post("/verify", status_code=200)
    async def verify_chains(self, resources: Services, sealer: Sealer) -> AuditVerification:
        """Recompute every chain, then check it against the sealed digests; `first_bad` names
        the first record that does not hold."""
        report = await verify(resources.database, sealer)
        return AuditVerification(
            ok=report.ok,
            checked=report.checked,
            first_bad=report.first_bad,
            problem=report.problem,
            seals_checked=report.seals_checked,
        )

    @post(
        "/seal",
        status_code=201,
        responses=problems(notes={409: "Another instance is sealing right now: try again."}),
    )
    async def seal_now(self, sealer: Sealer) -> AuditSeal:
        """Seal every chain's head now into the locked audit bucket (S3 Object Lock,
        compliance mode), linked to the previous seal."""
        sealed = await sealer.seal_now()
        return AuditSeal(
            seq=sealed.seq,
            key=sealed.key,
            version_id=sealed.version_id,
            sealed_at=sealed.sealed_at,
            retain_until=sealed.retain_until,
            chains=sealed.chains,
            digest_sha256=sealed.digest_sha256,
        )


class TenantAuditController(ApiController):
    path = "/v1/audit"
    tags = ["tenant"]  # noqa: RUF012
    security = [{TENANT_SCHEME: []}]  # noqa: RUF012

    @get("/", opt={SCOPE_OPT: "audit:read"})
    async def list_own_records(
        self, tenant: Caller, resources: Services, limit: PageLimit = 50, cursor: Cursor = None
    ) -> AuditPage:
        """The tenant's own audit records, newest first."""
        return await tenant_page(resources.database, tenant.names, limit, cursor)
