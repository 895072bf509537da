"""The PostgreSQL steps of provisioning a tenant, each with its undo.

A tenant in PostgreSQL is a schema ``t_<id hex>`` owned by a role ``tg_<id hex>`` (no login,
privileges on its own schema only), the tenant tables in it (the tenant migrations), and its
API keys. :mod:`tenantgate.tenancy.provisioning` runs the steps in order, on the connection
that holds the tenant's provisioning lease, each in a transaction of its own:

1. :class:`RoleAndSchema` — the role and the schema it owns;
2. :class:`TenantMigrations` — the tenant tables, at the latest version;
3. :class:`FirstKey` — the tenant's first API key.

Every ``apply`` can run again after a partial run and every ``undo`` can run whatever happened
before (nothing, part, all): that is what lets a crashed provisioning be cleaned up.

The service's login role needs ``CREATEROLE`` and ``CREATE`` on the database. PostgreSQL ≥ 16
gives a ``CREATEROLE`` role ``ADMIN OPTION`` on each role it creates (and only on those), and
``createrole_self_grant = 'set'`` makes it a member with ``SET`` but without ``INHERIT``: it can
act as a tenant inside a transaction and holds none of a tenant's privileges outside one. A
role of the same name that someone else created is never adopted nor dropped: creating it
fails (``DuplicateObjectError``) and the undo leaves it alone.

Tenant ids are ``uuid4()``: 122 bits from the operating system's CSPRNG, so an id can be
neither guessed nor enumerated.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from tenantgate.db.errors import translating
from tenantgate.db.keys import insert_key
from tenantgate.db.migrator import Migration, load_migrations, migrate_tenant_schema
from tenantgate.naming import quote_ident

if TYPE_CHECKING:
    from tenantgate.db.types import Connection
    from tenantgate.naming import TenantNames
    from tenantgate.tenancy.provisioning import ProvisioningStep, TenantUnderway

__all__ = ["FirstKey", "RoleAndSchema", "TenantMigrations", "postgres_steps"]

_ROLE_IS_OURS: Final = """
SELECT EXISTS (
    SELECT 1 FROM pg_auth_members m
      JOIN pg_roles r ON r.oid = m.roleid
     WHERE r.rolname = $1 AND m.member = (SELECT oid FROM pg_roles WHERE rolname = current_user)
       AND m.admin_option)
"""


async def _role_is_ours(connection: Connection, names: TenantNames) -> bool:
    ours: bool = await connection.fetchval(_ROLE_IS_OURS, names.role)
    return ours


async def _be_able_to_act_as(connection: Connection, role: str) -> None:
    """Membership with SET but without INHERIT in a role we administer (idempotent), seen by
    this backend: a backend may hold a stale list of the roles it may become (see
    `tenantgate.db.database`), and rewriting the role's catalog row (`ALTER ROLE`, changing
    nothing) makes it read the list again before the `SET LOCAL ROLE` that follows."""
    await connection.execute(
        f"GRANT {role} TO CURRENT_USER WITH INHERIT FALSE, SET TRUE; "
        f"ALTER ROLE {role} NOLOGIN NOINHERIT"
    )


class RoleAndSchema:
    """The tenant's role and the schema it owns."""

    name: Final = "postgres role and schema"

    async def apply(self, tenant: TenantUnderway) -> None:
        names = tenant.names
        role, schema = quote_ident(names.role), quote_ident(names.schema)
        connection = tenant.connection
        with translating():
            async with connection.transaction():
                if await _role_is_ours(connection, names):
                    await _be_able_to_act_as(connection, role)  # a run cut short, resumed
                else:
                    await connection.execute(
                        f"SET LOCAL createrole_self_grant = 'set'; "
                        f"CREATE ROLE {role} NOLOGIN NOINHERIT"
                    )
                await connection.execute(
                    f"CREATE SCHEMA IF NOT EXISTS {schema} AUTHORIZATION {role}"
                )

    async def undo(self, tenant: TenantUnderway) -> None:
        names = tenant.names
        role, schema = quote_ident(names.role), quote_ident(names.schema)
        connection = tenant.connection
        with translating():
            async with connection.transaction():
                if not await _role_is_ours(connection, names):
                    return  # never made, or someone else's: nothing of ours to drop
                await _be_able_to_act_as(connection, role)
                # Only the owner may drop the schema, and the service role does not inherit
                # the tenant's privileges: act as the tenant to drop the schema and whatever
                # else it owns or was granted in this database, then drop the role itself.
                await connection.execute(
                    f"SET LOCAL ROLE {role}; "
                    f"DROP SCHEMA IF EXISTS {schema} CASCADE; "
                    f"DROP OWNED BY {role} CASCADE; "
                    f"RESET ROLE; "
                    f"DROP ROLE {role}"
                )


class TenantMigrations:
    """The tenant's tables: every tenant migration, applied as the tenant."""

    name: Final = "postgres tenant migrations"

    def __init__(self, migrations: Sequence[Migration] | None = None) -> None:
        self._migrations = load_migrations("tenant") if migrations is None else tuple(migrations)

    async def apply(self, tenant: TenantUnderway) -> None:
        connection = tenant.connection
        with translating():
            async with connection.transaction():
                await connection.execute(tenant.names.scope_sql)
                await migrate_tenant_schema(connection, tenant.names, self._migrations)

    async def undo(self, tenant: TenantUnderway) -> None:
        """Nothing of its own: the tables live in the schema, which `RoleAndSchema.undo` drops."""


class FirstKey:
    """The tenant's first API key (its secret is in the creation's answer only)."""

    name: Final = "first api key"

    async def apply(self, tenant: TenantUnderway) -> None:
        key = tenant.first_key
        if key is None:
            return
        with translating():
            exists = await tenant.connection.fetchval(
                "SELECT true FROM api_keys WHERE id = $1 AND tenant_id = $2", key.id, tenant.id
            )
            if not exists:
                await insert_key(tenant.connection, tenant.id, key)

    async def undo(self, tenant: TenantUnderway) -> None:
        with translating():
            await tenant.connection.execute("DELETE FROM api_keys WHERE tenant_id = $1", tenant.id)


def postgres_steps(migrations: Sequence[Migration] | None = None) -> list[ProvisioningStep]:
    """The PostgreSQL steps, in order (``migrations``: the tenant migrations to apply)."""
    return [RoleAndSchema(), TenantMigrations(migrations), FirstKey()]
