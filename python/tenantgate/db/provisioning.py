"""Creating and deleting tenants in PostgreSQL.

A tenant is a row in `public.tenants`, a schema `t_<id hex>` owned by a role `tg_<id hex>`
(no login, privileges on its own schema only), and its API keys. Creation runs in one
transaction — row, role, schema, migrations, first key — so a failure anywhere leaves nothing
behind; PostgreSQL's DDL, `CREATE ROLE` included, is transactional.

The service's login role needs `CREATEROLE` and `CREATE` on the database. It is made a member
of each tenant role with `SET` but without `INHERIT` (`createrole_self_grant = 'set'`): it can
act as a tenant inside a transaction, and holds none of a tenant's privileges outside one.

Tenant ids are `uuid4()`: 122 bits from the operating system's CSPRNG (`os.urandom`), so an
id can be neither guessed nor enumerated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID, uuid4

import asyncpg

from tenantgate.db.keys import NewKeyRow, insert_key
from tenantgate.db.migrator import Migration, load_migrations, migrate_tenant_schema
from tenantgate.db.types import Connection
from tenantgate.errors import ConflictError, InvalidInputError
from tenantgate.naming import TenantNames, quote_ident

__all__ = ["NewTenant", "create_tenant", "delete_tenant"]

_DOMAIN_CONSTRAINT = "tenants_custom_domain_key"


@dataclass(frozen=True, slots=True)
class NewTenant:
    name: str
    plan: str
    tier: str
    custom_domain: str | None


async def create_tenant(
    connection: Connection,
    tenant: NewTenant,
    first_key: NewKeyRow,
    *,
    migrations: Sequence[Migration] | None = None,
) -> tuple[asyncpg.Record, asyncpg.Record]:
    """Provision a tenant and its first key in one transaction; returns both rows."""
    tenant_id = uuid4()
    names = TenantNames.of(tenant_id)
    pending = load_migrations("tenant") if migrations is None else migrations
    async with connection.transaction():
        try:
            row = await connection.fetchrow(
                """
                INSERT INTO tenants (id, name, plan, tier, custom_domain, schema_name, role_name)
                VALUES ($1, $2, $3, $4, $5, $6, $7)
                RETURNING *
                """,
                tenant_id,
                tenant.name,
                tenant.plan,
                tenant.tier,
                tenant.custom_domain,
                names.schema,
                names.role,
            )
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name != _DOMAIN_CONSTRAINT:
                raise  # an id clash: 122 random bits make it a bug, not a client's error
            raise ConflictError("custom_domain is already taken") from exc
        except asyncpg.ForeignKeyViolationError as exc:
            raise InvalidInputError(f"unknown plan {tenant.plan!r}") from exc
        role, schema = quote_ident(names.role), quote_ident(names.schema)
        await connection.execute(
            f"SET LOCAL createrole_self_grant = 'set'; "
            f"CREATE ROLE {role} NOLOGIN NOINHERIT; "
            f"CREATE SCHEMA {schema} AUTHORIZATION {role}"
        )
        await connection.execute(names.scope_sql)
        await migrate_tenant_schema(connection, names, pending)
        await connection.execute("RESET ROLE; RESET search_path")
        key_row = await insert_key(connection, tenant_id, first_key)
    assert row is not None
    return row, key_row


async def delete_tenant(connection: Connection, tenant_id: UUID) -> bool:
    """Drop the tenant's schema, role, keys and row; returns False if there was no such tenant."""
    names = TenantNames.of(tenant_id)
    role, schema = quote_ident(names.role), quote_ident(names.schema)
    async with connection.transaction():
        found = await connection.fetchval(
            "SELECT true FROM tenants WHERE id = $1 FOR UPDATE", tenant_id
        )
        if not found:
            return False
        role_exists = await connection.fetchval(
            "SELECT true FROM pg_roles WHERE rolname = $1", names.role
        )
        if role_exists:
            # Only the owner may drop the schema, and the service role does not inherit the
            # tenant's privileges: act as the tenant to drop the schema and whatever else it
            # owns or was granted in this database, then drop the role itself.
            await connection.execute(
                f"SET LOCAL ROLE {role}; "
                f"DROP SCHEMA IF EXISTS {schema} CASCADE; "
                f"DROP OWNED BY {role} CASCADE; "
                f"RESET ROLE; "
                f"DROP ROLE {role}"
            )
        # Its keys go with the row (ON DELETE CASCADE); said here as well, for the reader.
        await connection.execute("DELETE FROM api_keys WHERE tenant_id = $1", tenant_id)
        await connection.execute("DELETE FROM tenants WHERE id = $1", tenant_id)
    return True
