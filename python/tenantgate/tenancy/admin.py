"""The operator's use cases: tenants, their keys, and plans.

Each method is one use case: it validates what msgspec could not, runs the SQL (errors arrive
translated by :mod:`tenantgate.db`: a taken domain is a conflict, an unknown plan invalid
input, PostgreSQL down a 503), and tells the running instance's identity cache what changed so
the change applies at once here (other instances see it within a second: their cache entries
live one second, plans and domains are reloaded every second). Tenants are created and
deleted by the :class:`~tenantgate.tenancy.provisioning.Provisioner`, across every layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from ipaddress import ip_network
from typing import TYPE_CHECKING, Any
from uuid import UUID

import msgspec

from tenantgate.db import keys as key_sql
from tenantgate.db import tenants as tenant_sql
from tenantgate.db.tenants import NewTenant
from tenantgate.errors import InvalidInputError, NotFoundError
from tenantgate.scopes import ALL_SCOPES
from tenantgate.tenancy.cursor import KEYSET_PAGE_SQL, page_parameters, split_page
from tenantgate.tenancy.keyring import HASH_SCHEME
from tenantgate.tenancy.schemas import (
    CreateKey,
    CreateTenant,
    Key,
    NewKey,
    PatchTenant,
    Plan,
    PutPlan,
    RotateKey,
    Tenant,
    TenantCreated,
    TenantPage,
    normalise_domain,
)

if TYPE_CHECKING:
    import asyncpg

    from tenantgate.db.database import Database
    from tenantgate.identity import IdentityCache
    from tenantgate.tenancy.keyring import IssuedKey, KeyIssuer
    from tenantgate.tenancy.provisioning import Provisioner

__all__ = ["AdminService"]


def _check_text(field: str, value: str | None) -> None:
    """PostgreSQL text cannot hold NUL: refuse it here as invalid input, not at the driver."""
    if value is not None and "\x00" in value:
        raise InvalidInputError(f"{field} may not contain NUL characters")


def _tenant(row: asyncpg.Record) -> Tenant:
    return Tenant(
        id=row["id"],
        name=row["name"],
        plan=row["plan"],
        tier=row["tier"],
        status=row["status"],
        custom_domain=row["custom_domain"],
        created_at=row["created_at"],
    )


def _scopes(requested: Sequence[str] | None) -> tuple[str, ...]:
    """The scopes asked for, in the documented order (all when none were named)."""
    if requested is None:
        return ALL_SCOPES
    if len(set(requested)) != len(requested):
        raise InvalidInputError("scopes may not repeat")
    return tuple(scope for scope in ALL_SCOPES if scope in requested)


def _networks(cidrs: list[str]) -> tuple[str, ...]:
    """The CIDRs asked for, normalised (``10.1.2.3/8`` is ``10.0.0.0/8``), else 422."""
    networks = []
    for cidr in cidrs:
        try:
            networks.append(str(ip_network(cidr, strict=False)))
        except ValueError:
            raise InvalidInputError(f"allowed_cidrs: {cidr!r} is not a CIDR") from None
    return tuple(networks)


def _key(row: asyncpg.Record) -> Key:
    return Key(
        id=row["id"],
        tenant_id=row["tenant_id"],
        name=row["name"],
        prefix=row["prefix"],
        hsm=row["hash_scheme"] != HASH_SCHEME,
        scopes=list(row["scopes"]),
        allowed_cidrs=list(row["allowed_cidrs"]),
        status=row["status"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        last_used_at=row["last_used_at"],
    )


def _new_key(row: asyncpg.Record, issued: IssuedKey) -> NewKey:
    return NewKey(**msgspec.structs.asdict(_key(row)), key=issued.secret)


def _plan(row: asyncpg.Record) -> Plan:
    return Plan(row["name"], row["rate_per_second"], row["burst"], row["max_key_age_days"])


_PLAN_COLUMNS = "name, rate_per_second, burst, max_key_age_days"
_PLAN_KEY_AGE = "SELECT max_key_age_days FROM plans WHERE name = $1"
_TENANT_KEY_AGE = """
SELECT p.name, p.max_key_age_days FROM tenants t JOIN plans p ON p.name = t.plan
 WHERE t.id = $1
"""


def _key_expiry(
    now: datetime, requested_seconds: int | None, max_age_days: int | None, plan: str
) -> datetime | None:
    """When a new key expires: as asked, within its plan's maximum key age (the maximum when
    nothing was asked; never when neither bounds it); a longer request is invalid input."""
    if max_age_days is None:
        if requested_seconds is None:
            return None
        return now + timedelta(seconds=requested_seconds)
    max_age = timedelta(days=max_age_days)
    if requested_seconds is None:
        return now + max_age
    if timedelta(seconds=requested_seconds) > max_age:
        raise InvalidInputError(
            f"expires_in_seconds: at most {int(max_age.total_seconds())} on plan {plan!r}"
            f" (its keys live {max_age_days} days at most)"
        )
    return now + timedelta(seconds=requested_seconds)


class AdminService:
    def __init__(
        self,
        database: Database,
        issuer: KeyIssuer,
        identity: IdentityCache,
        provisioner: Provisioner,
    ) -> None:
        self._database = database
        self._issuer = issuer
        self._identity = identity
        self._provisioner = provisioner

    # -- tenants -------------------------------------------------------------------------

    async def create_tenant(self, body: CreateTenant) -> TenantCreated:
        _check_text("name", body.name)
        domain = None
        if body.custom_domain is not None:
            if body.tier != "enterprise":
                raise InvalidInputError("custom_domain is only for enterprise tenants")
            domain = normalise_domain(body.custom_domain)
        max_age_days = await self._database.fetchval(_PLAN_KEY_AGE, body.plan)
        issued = self._issuer.issue(
            name="default", expires_at=_key_expiry(datetime.now(UTC), None, max_age_days, body.plan)
        )
        row = await self._provisioner.create(
            NewTenant(body.name, body.plan, body.tier, domain), issued.row
        )
        tenant = _tenant(row)
        key_row = await self._database.fetchrow(
            f"SELECT {key_sql.KEY_COLUMNS} FROM api_keys WHERE id = $1", issued.row.id
        )
        if key_row is None:  # deleted in the instant since
            raise NotFoundError("tenant")
        if domain is not None:
            await self._identity.reload_domains()
        return TenantCreated(tenant=tenant, api_key=_new_key(key_row, issued))

    async def list_tenants(self, limit: int, cursor: str | None) -> TenantPage:
        rows = await tenant_sql.page(
            self._database, KEYSET_PAGE_SQL, page_parameters(cursor, limit)
        )
        tenants, next_cursor = split_page(rows, limit, _tenant)
        return TenantPage(tenants=tenants, next_cursor=next_cursor)

    async def get_tenant(self, tenant_id: UUID) -> Tenant:
        row = await tenant_sql.find(self._database, tenant_id)
        if row is None:
            raise NotFoundError("tenant")
        return _tenant(row)

    async def patch_tenant(self, tenant_id: UUID, patch: PatchTenant) -> Tenant:
        changes: dict[str, Any] = {
            field: value
            for field, value in msgspec.structs.asdict(patch).items()
            if value is not msgspec.UNSET
        }
        _check_text("name", changes.get("name"))
        current = await self.get_tenant(tenant_id)
        if changes.get("custom_domain") is not None:
            if current.tier != "enterprise":
                raise InvalidInputError("custom_domain is only for enterprise tenants")
            changes["custom_domain"] = normalise_domain(changes["custom_domain"])
        if not changes:
            return current
        row = await tenant_sql.change(self._database, tenant_id, changes)
        if row is None:
            raise NotFoundError("tenant")
        tenant = _tenant(row)
        if current.custom_domain != tenant.custom_domain:
            await self._identity.reload_domains()
        await self._identity.tenant_changed(tenant_id)
        return tenant

    async def delete_tenant(self, tenant_id: UUID) -> None:
        current = await self.get_tenant(tenant_id)
        if not await self._provisioner.delete(tenant_id):
            raise NotFoundError("tenant")
        if current.custom_domain:
            await self._identity.reload_domains()
        await self._identity.tenant_changed(tenant_id)

    # -- keys ----------------------------------------------------------------------------

    async def create_key(self, tenant_id: UUID, body: CreateKey) -> NewKey:
        _check_text("name", body.name)
        tenant = await self.get_tenant(tenant_id)
        if body.hsm:
            if tenant.tier != "enterprise":
                raise InvalidInputError("hsm keys are only for enterprise tenants")
            if not self._issuer.has_hsm:
                raise InvalidInputError("hsm keys need an HSM, and none is configured")
        max_age_days = await self._database.fetchval(_PLAN_KEY_AGE, tenant.plan)
        expires_at = _key_expiry(
            datetime.now(UTC), body.expires_in_seconds, max_age_days, tenant.plan
        )
        issued = await self._issuer.issue_key(
            hsm=body.hsm,
            name=body.name,
            expires_at=expires_at,
            scopes=_scopes(body.scopes),
            allowed_cidrs=_networks(body.allowed_cidrs),
        )
        # A tenant deleted meanwhile: the foreign key refuses, translated to "tenant not found".
        async with self._database.transaction() as connection:
            row = await key_sql.insert_key(connection, tenant_id, issued.row)
        return _new_key(row, issued)

    async def list_keys(self, tenant_id: UUID) -> list[Key]:
        await self.get_tenant(tenant_id)
        async with self._database.transaction() as connection:
            rows = await key_sql.list_keys(connection, tenant_id)
        return [_key(row) for row in rows]

    async def keys_due(self, within_days: int) -> list[Key]:
        """Active keys that expire within ``within_days`` days, soonest first."""
        async with self._database.transaction() as connection:
            rows = await key_sql.due_keys(connection, timedelta(days=within_days))
        return [_key(row) for row in rows]

    async def rotate_key(self, tenant_id: UUID, key_id: UUID, body: RotateKey) -> NewKey:
        now = datetime.now(UTC)
        grace_ends_at = now + timedelta(seconds=body.grace_seconds)
        async with self._database.transaction() as connection:
            plan = await connection.fetchrow(_TENANT_KEY_AGE, tenant_id)
            if plan is None:
                raise NotFoundError("key")
            old = await connection.fetchrow(
                "SELECT name, hash_scheme, scopes, allowed_cidrs::text[] AS allowed_cidrs"
                " FROM api_keys WHERE tenant_id = $1 AND id = $2",
                tenant_id,
                key_id,
            )
            if old is None:
                raise NotFoundError("key")
            # The successor may do what the old key could, from where it could, and an HSM
            # key's successor is an HSM key.
            successor = await self._issuer.issue_key(
                hsm=old["hash_scheme"] != HASH_SCHEME,
                name=old["name"],
                expires_at=_key_expiry(now, None, plan["max_key_age_days"], plan["name"]),
                scopes=old["scopes"],
                allowed_cidrs=old["allowed_cidrs"],
            )
            row = await key_sql.rotate_key(
                connection, tenant_id, key_id, successor.row, grace_ends_at
            )
        if row is None:
            raise NotFoundError("key")
        await self._identity.key_changed(key_id)
        return _new_key(row, successor)

    async def revoke_key(self, tenant_id: UUID, key_id: UUID) -> None:
        async with self._database.transaction() as connection:
            revoked = await key_sql.revoke_key(connection, tenant_id, key_id)
        if not revoked:
            raise NotFoundError("key")
        await self._identity.key_changed(key_id)

    # -- plans ---------------------------------------------------------------------------

    async def list_plans(self) -> list[Plan]:
        rows = await self._database.fetch(
            f"SELECT {_PLAN_COLUMNS} FROM plans ORDER BY rate_per_second, name"
        )
        return [_plan(row) for row in rows]

    async def put_plan(self, name: str, body: PutPlan) -> Plan:
        row = await self._database.fetchrow(
            f"""
            INSERT INTO plans (name, rate_per_second, burst, max_key_age_days)
            VALUES ($1, $2, $3, $4)
            ON CONFLICT (name) DO UPDATE
               SET rate_per_second = excluded.rate_per_second,
                   burst = excluded.burst,
                   max_key_age_days = excluded.max_key_age_days,
                   updated_at = now()
            RETURNING {_PLAN_COLUMNS}
            """,
            name,
            body.rate_per_second,
            body.burst,
            body.max_key_age_days,
        )
        assert row is not None
        plan = _plan(row)
        await self._identity.reload_plans()
        return plan
