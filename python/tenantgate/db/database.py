"""The service's PostgreSQL database: its pool, and the only ways code uses it.

:class:`Database` wraps the pool of the service's own login role:

- :meth:`Database.transaction` yields a connection inside a transaction, as the service or —
  given a tenant's names — as that tenant: ``BEGIN; SET LOCAL ROLE <tenant role>; SET LOCAL
  search_path TO <tenant schema>`` go out as one simple query, so a tenant transaction costs
  no extra round trip. ``SET LOCAL`` dies with the transaction, so a pooled connection never
  carries a tenant into its next use.
- :meth:`Database.fetch`, :meth:`~Database.fetchrow`, :meth:`~Database.fetchval`
  run one statement on its own (autocommit), for reads and
  idempotent single-statement writes.
- :meth:`Database.fetchrow_entering` runs one call of a function that enters the tenant
  itself (public migration 0008): a tenant's read in one round trip instead of three.

**A dead connection costs clients nothing.** When PostgreSQL drops pooled connections
(``pg_terminate_backend``, a restart, a proxy's idle timeout), asyncpg notices only on the
connection's next use. If that first round trip finds the connection gone, nothing sent on it
was committed: the pool's idle connections are all marked stale (they likely died together),
and the work is retried once on a fresh connection. A transaction retries its ``BEGIN``; a
single statement is retried whole, which is why only reads and idempotent writes use them.
A second failure, or a failure after ``COMMIT`` was sent, is a
:class:`~tenantgate.errors.ServiceUnavailableError` (503): whether it committed is unknown.
A tenant transaction whose ``SET LOCAL ROLE`` is refused is retried the same way: a backend
can hold a stale list of the roles its login may become (see ``_stale_role_memberships``).

Every driver error leaving this class is translated by :mod:`tenantgate.db.errors` (those of
the caller's own queries inside :meth:`transaction` too, unless it asks otherwise).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Final, TypeAlias, TypeVar

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from tenantgate.db.errors import is_closed, is_connection_lost, translating
from tenantgate.errors import TenantGoneError

if TYPE_CHECKING:
    from tenantgate.db.types import Connection
    from tenantgate.naming import TenantNames

__all__ = ["Database"]

T = TypeVar("T")
if TYPE_CHECKING:
    PooledConnection: TypeAlias = PoolConnectionProxy[asyncpg.Record]

_logger = logging.getLogger("tenantgate.db")

# Errors a statement can end with: PostgreSQL's answer, or the connection's end.
_DRIVER_ERRORS: Final = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
)

_TENANT_OBJECT_MISSING: Final = (
    asyncpg.UndefinedTableError,
    asyncpg.InvalidSchemaNameError,
    asyncpg.UndefinedObjectError,
)
"""What a tenant's query raises when its schema or role was dropped under it."""


class Database:
    """The service's PostgreSQL pool and the transactions it runs; see the module docstring."""

    __slots__ = ("_acquire_timeout", "lease_pool", "pool")

    def __init__(
        self,
        pool: asyncpg.Pool[asyncpg.Record],
        *,
        acquire_timeout: float | None = None,
        lease_pool: asyncpg.Pool[asyncpg.Record] | None = None,
    ) -> None:
        self.pool: Final = pool
        """The asyncpg pool of the service's own login role (for tests and tools)."""
        self.lease_pool: Final = pool if lease_pool is None else lease_pool
        """Where :meth:`lease` takes its connections: ``pool``, or, behind PgBouncer in
        transaction mode, a pool of direct connections (a session lock needs a session)."""
        self._acquire_timeout = acquire_timeout

    @asynccontextmanager
    async def transaction(
        self, tenant: TenantNames | None = None, *, translate_errors: bool = True
    ) -> AsyncIterator[Connection]:
        """A connection inside a transaction (as ``tenant`` when given); commit on success,
        roll back on any exception.

        Driver errors raised in the block leave it translated, unless ``translate_errors`` is
        false: a Litestar dependency must give back the very exception thrown into it, and
        the web layer translates it instead.
        """
        begin = "BEGIN" if tenant is None else tenant.begin_sql
        connection = await self._begin(begin, tenant)
        try:
            try:
                if translate_errors:
                    with translating():
                        yield connection
                else:
                    yield connection
            except _TENANT_OBJECT_MISSING as exc:
                await self._roll_back(connection)
                if tenant is not None and not await self._schema_exists(connection, tenant):
                    # Deleted (through any instance) while this request was running: the
                    # same answer as a request that came a moment later.
                    raise TenantGoneError(str(tenant.tenant_id)) from exc
                raise
            except BaseException:
                await self._roll_back(connection)
                raise
            with translating():
                await connection.execute("COMMIT")
        finally:
            await self._release(connection)

    @staticmethod
    async def _schema_exists(connection: PooledConnection, tenant: TenantNames) -> bool:
        """Whether the tenant's schema is still there (asked after a failure that would mean
        it is not); an unanswerable question counts as yes, leaving the error as it was."""
        try:
            found = await connection.fetchval("SELECT to_regnamespace($1)", tenant.schema)
        except Exception:
            return True
        return found is not None

    @asynccontextmanager
    async def lease(self, key: int, *, wait: bool) -> AsyncIterator[Connection | None]:
        """A connection holding the session advisory lock ``key`` for the block, or ``None``
        when ``wait`` is false and someone else holds it.

        The lock is PostgreSQL's, so it is held across processes and dies with its holder's
        connection: a process killed mid-way leaves no lock behind. It is released explicitly
        before the connection goes back to the pool (whose reset does not release it).
        Behind PgBouncer in transaction mode the connection comes from :attr:`lease_pool`.
        """
        connection = await self._acquire(self.lease_pool)
        try:
            with translating():
                if wait:
                    await connection.execute("SELECT pg_advisory_lock($1)", key)
                    taken = True
                else:
                    taken = await connection.fetchval("SELECT pg_try_advisory_lock($1)", key)
            if not taken:
                yield None
                return
            try:
                yield connection
            finally:
                await self._roll_back(connection)
                try:
                    await connection.execute("SELECT pg_advisory_unlock($1)", key)
                except Exception:
                    _terminate(connection)  # a lock that cannot be released dies with it
        finally:
            await self._release(connection, self.lease_pool)

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        """All rows of one statement (a read, or an idempotent write)."""
        rows: list[asyncpg.Record] = await self._run_once(lambda c: c.fetch(query, *args))
        return rows

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        """The first row of one statement, or ``None``."""
        row: asyncpg.Record | None = await self._run_once(lambda c: c.fetchrow(query, *args))
        return row

    async def fetchval(self, query: str, *args: Any) -> Any:
        """The first column of the first row of one statement, or ``None``."""
        return await self._run_once(lambda c: c.fetchval(query, *args))

    async def fetchrow_entering(
        self, tenant: TenantNames, query: str, *args: Any
    ) -> asyncpg.Record | None:
        """The first row of one call of a function that enters ``tenant`` itself — its role is
        ``$1`` and its schema ``$2`` of ``query``, ``args`` follow — run on its own, with no
        transaction around it: one round trip. Failures are those of :meth:`transaction`: a
        tenant deleted under the call is :class:`~tenantgate.errors.TenantGoneError`, and a lost
        connection or a backend with stale role memberships is retried once on a fresh one."""
        for attempt in (1, 2):
            connection = await self._acquire()
            try:
                with translating():
                    try:
                        row: asyncpg.Record | None = await connection.fetchrow(
                            query, tenant.role, tenant.schema, *args
                        )
                    except asyncpg.InvalidParameterValueError as exc:
                        # The role is gone: deleted through another instance.
                        raise TenantGoneError(str(tenant.tenant_id)) from exc
                    except _TENANT_OBJECT_MISSING as exc:
                        if not await self._schema_exists(connection, tenant):
                            raise TenantGoneError(str(tenant.tenant_id)) from exc
                        raise
                    except _DRIVER_ERRORS as exc:
                        if attempt == 1 and (
                            is_connection_lost(exc, connection)
                            or _stale_role_memberships(exc, tenant)
                        ):
                            _terminate(connection)
                            await self._forget_idle_connections(exc)
                            continue
                        raise
                    return row
            finally:
                await self._release(connection)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    async def _run_once(self, run: Callable[[PooledConnection], Awaitable[T]]) -> T:
        for attempt in (1, 2):
            connection = await self._acquire()
            try:
                with translating():
                    try:
                        return await run(connection)
                    except _DRIVER_ERRORS as exc:
                        if attempt == 1 and is_connection_lost(exc, connection):
                            _terminate(connection)
                            await self._forget_idle_connections(exc)
                            continue
                        raise
            finally:
                await self._release(connection)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    async def _begin(self, begin: str, tenant: TenantNames | None) -> PooledConnection:
        for attempt in (1, 2):
            connection = await self._acquire()
            try:
                with translating():
                    try:
                        await connection.execute(begin)
                    except asyncpg.InvalidParameterValueError as exc:
                        # `SET LOCAL ROLE` of a role that no longer exists: the tenant was
                        # deleted (through another instance) after its key was cached.
                        if tenant is None:
                            raise
                        raise TenantGoneError(str(tenant.tenant_id)) from exc
                    except _DRIVER_ERRORS as exc:
                        if attempt == 1 and (
                            is_connection_lost(exc, connection)
                            or _stale_role_memberships(exc, tenant)
                        ):
                            _terminate(connection)
                            await self._forget_idle_connections(exc)
                            await self._release(connection)
                            continue
                        raise
            except BaseException:
                # BEGIN may have opened the transaction before a SET LOCAL failed.
                await self._roll_back(connection)
                await self._release(connection)
                raise
            return connection
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    async def _acquire(self, pool: asyncpg.Pool[asyncpg.Record] | None = None) -> PooledConnection:
        # asyncio.timeout, not acquire(timeout=): asyncpg applies that one with a wait_for
        # that makes a Task per acquisition, which showed in profiles of every request.
        with translating():
            async with asyncio.timeout(self._acquire_timeout):
                connection: PooledConnection = await (pool or self.pool).acquire()
        return connection

    async def _release(
        self, connection: PooledConnection, pool: asyncpg.Pool[asyncpg.Record] | None = None
    ) -> None:
        try:
            await (pool or self.pool).release(connection)
        except _DRIVER_ERRORS:
            # Released connections that fail to reset are closed by the pool; nothing a
            # caller could do about it, and the work itself is already done.
            _logger.debug("releasing a PostgreSQL connection failed", exc_info=True)

    @staticmethod
    async def _roll_back(connection: PooledConnection) -> None:
        if is_closed(connection) or not connection.is_in_transaction():
            return
        try:
            await connection.execute("ROLLBACK")
        except Exception:
            # A connection in an unknown state never goes back to the pool, and the error
            # that got us here is the one the caller should see.
            _terminate(connection)

    async def _forget_idle_connections(self, exc: BaseException) -> None:
        _logger.info("a pooled PostgreSQL connection was unusable (%r); reconnecting", exc)
        await self.pool.expire_connections()


def _stale_role_memberships(exc: BaseException, tenant: TenantNames | None) -> bool:
    """Whether ``SET LOCAL ROLE`` was refused by a backend that has not seen the tenant role's
    membership yet.

    A backend caches the roles its login may become. Seen here (PostgreSQL 18, tenants created
    concurrently through another connection): a backend can keep a list computed while a new
    tenant role's grant was committing, and refuse that role even in later transactions,
    while a fresh backend accepts it. The retry after this answer runs on a fresh backend.
    """
    return tenant is not None and isinstance(exc, asyncpg.InsufficientPrivilegeError)


def _terminate(connection: PooledConnection) -> None:
    if not is_closed(connection):
        connection.terminate()
