"""Creating and deleting tenants across every layer, in steps, each with its undo.

A tenant exists in several backing services at once: today a PostgreSQL role, schema, tables
and first key (:func:`tenantgate.db.provisioning.postgres_steps`); with the cache and storage
issues, a Redis ACL user and an S3 identity and bucket. :class:`Provisioner` runs an ordered
list of :class:`ProvisioningStep` and records progress in the tenant's status:

- **create**: register the row as ``provisioning`` (a taken custom domain or an unknown plan
  fails here, before anything is made), apply each step in order, then mark it ``active``. If
  a step fails, the steps begun so far are undone in reverse order (the failed one included:
  it may have done part of its work) and the row removed; the caller sees the step's error.
  An undo that fails (its backing service down) does not stop the others: every other layer
  is still cleaned up, and the row stays, ``provisioning`` or ``deleting``, for repair.
- **delete**: mark the tenant ``deleting`` (it is refused from then on), undo every step in
  reverse order, remove the row.
- **repair**: a process killed between steps leaves a tenant ``provisioning`` or ``deleting``.
  Its first key was never shown to anyone, so completing a creation would serve no one: both
  are removed by undoing every step. Runs at start-up and as ``tenantgate tenants repair``.

Each tenant's creation, deletion and repair hold its *lease*, a PostgreSQL advisory lock on
the connection the steps use, so two of them never run on one tenant at once, and repair
skips what a live process is still working on; a killed process's lease dies with its
connection. Undo runs to the end even when the request is cancelled.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID, uuid4

from tenantgate.db import tenants as tenant_sql
from tenantgate.naming import TenantNames

if TYPE_CHECKING:
    import asyncpg

    from tenantgate.db.database import Database
    from tenantgate.db.keys import NewKeyRow
    from tenantgate.db.tenants import NewTenant
    from tenantgate.db.types import Connection

__all__ = ["Provisioner", "ProvisioningStep", "RepairReport", "TenantUnderway"]

_logger = logging.getLogger("tenantgate.provisioning")


@dataclass(frozen=True, slots=True)
class TenantUnderway:
    """What a step needs to know of the tenant it works on."""

    id: UUID
    names: TenantNames
    tier: str
    connection: Connection
    """The connection holding the tenant's lease; PostgreSQL steps run their work on it."""
    first_key: NewKeyRow | None = None
    """The first key to store (creation only)."""


class ProvisioningStep(Protocol):
    """One layer's part of a tenant. ``apply`` may be re-run after a partial run; ``undo``
    must succeed whatever ran before it: nothing, part of ``apply``, or all of it."""

    @property
    def name(self) -> str: ...

    async def apply(self, tenant: TenantUnderway) -> None: ...

    async def undo(self, tenant: TenantUnderway) -> None: ...


@dataclass(slots=True)
class RepairReport:
    """What a repair did."""

    removed: list[UUID] = field(default_factory=list)
    """Tenants left part-way by a crash, now gone from every layer."""
    busy: list[UUID] = field(default_factory=list)
    """Tenants a live process is still provisioning or deleting: left alone."""


class Provisioner:
    """Runs the provisioning steps for tenants; see the module docstring."""

    def __init__(self, database: Database, steps: Sequence[ProvisioningStep]) -> None:
        self._database = database
        self._steps = tuple(steps)

    async def create(self, tenant: NewTenant, first_key: NewKeyRow) -> asyncpg.Record:
        """Provision a tenant and its first key; its row (``active``)."""
        tenant_id = uuid4()
        names = TenantNames.of(tenant_id)
        async with self._database.lease(names.lock_key, wait=True) as connection:
            assert connection is not None
            await tenant_sql.register(connection, tenant_id, names, tenant)
            underway = TenantUnderway(tenant_id, names, tenant.tier, connection, first_key)
            begun: list[ProvisioningStep] = []
            try:
                for step in self._steps:
                    begun.append(step)
                    await step.apply(underway)
                row = await tenant_sql.set_status(
                    connection, tenant_id, "active", only_from=("provisioning",)
                )
            except BaseException as failure:
                try:
                    await _shielded(self._tear_down(underway, begun))
                except Exception:
                    _logger.exception(
                        "undoing the provisioning of tenant %s failed (after %r); "
                        "`tenantgate tenants repair` finishes it",
                        tenant_id,
                        failure,
                    )
                raise
            assert row is not None
            return row

    async def delete(self, tenant_id: UUID) -> bool:
        """Remove a tenant from every layer; False if there is no such tenant."""
        names = TenantNames.of(tenant_id)
        async with self._database.lease(names.lock_key, wait=True) as connection:
            assert connection is not None
            row = await tenant_sql.set_status(
                connection, tenant_id, "deleting", only_from=("active", "suspended", "deleting")
            )
            if row is None:
                return False
            underway = TenantUnderway(tenant_id, names, row["tier"], connection)
            await _shielded(self._tear_down(underway, self._steps))
            return True

    async def repair(self) -> RepairReport:
        """Remove every tenant a crash left ``provisioning`` or ``deleting``."""
        report = RepairReport()
        for tenant_id, _status in await tenant_sql.unfinished(self._database):
            names = TenantNames.of(tenant_id)
            async with self._database.lease(names.lock_key, wait=False) as connection:
                if connection is None:
                    report.busy.append(tenant_id)
                    continue
                row = await tenant_sql.set_status(
                    connection, tenant_id, "deleting", only_from=("provisioning", "deleting")
                )
                if row is None:  # finished meanwhile, by the process that held the lease
                    continue
                underway = TenantUnderway(tenant_id, names, row["tier"], connection)
                await _shielded(self._tear_down(underway, self._steps))
                report.removed.append(tenant_id)
                _logger.info("repair: removed tenant %s, left part-way by a crash", tenant_id)
        return report

    async def _tear_down(self, tenant: TenantUnderway, steps: Sequence[ProvisioningStep]) -> None:
        failure: Exception | None = None
        for step in reversed(steps):
            try:
                await step.undo(tenant)
            except Exception as exc:  # the others' undo still runs; repair retries this one
                _logger.warning("undoing %r of tenant %s failed: %r", step.name, tenant.id, exc)
                failure = failure or exc
        if failure is not None:
            raise failure
        await tenant_sql.remove(tenant.connection, tenant.id)


async def _shielded(work: Coroutine[Any, Any, None]) -> None:
    """Run ``work`` to its end even if the caller is cancelled meanwhile."""
    task = asyncio.ensure_future(work)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise
