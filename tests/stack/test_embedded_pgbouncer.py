"""The embedded PgBouncer pools by transaction, exactly what makes session state dangerous.

With one server connection for the login, two clients share one backend: what one client
leaves in the session (a plain ``SET``, a session advisory lock) the other inherits, while
``SET LOCAL`` dies with its transaction. That is why tenantgate keeps all tenant state in
``SET LOCAL`` and takes its provisioning leases on a direct connection. Also: the auth file
holds SCRAM verifiers (never passwords), a wrong password is refused, and stopping it leaves
no process.
"""

from __future__ import annotations

import asyncio
import os
import stat
from typing import TYPE_CHECKING, Any

import asyncpg
import psutil
import pytest

from tenantgate.dev.pgbouncer import EmbeddedPgBouncer, through

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

pytestmark = pytest.mark.servers


@pytest.fixture
def one_backend_bouncer(
    pgbouncer_installed: None,
    tmp_path: Path,
    stack_info: Any,
    direct_service_environment: dict[str, str],
) -> Iterator[tuple[EmbeddedPgBouncer, str]]:
    """A PgBouncer of this test's own with a single server connection; the service login's
    URL through it."""
    direct_url = direct_service_environment["TENANTGATE_DATABASE_URL"]
    bouncer = EmbeddedPgBouncer(
        tmp_path, admin_url=stack_info.postgres_admin_url, logins=[direct_url], pool_size=1
    )
    bouncer.start()
    try:
        yield bouncer, bouncer.url_for(direct_url)
    finally:
        bouncer.stop()


async def _two_clients(url: str) -> tuple[Any, Any]:
    first = await asyncpg.connect(url, statement_cache_size=0)
    second = await asyncpg.connect(url, statement_cache_size=0)
    return first, second


def test_clients_share_one_backend_and_inherit_its_session_state(
    one_backend_bouncer: tuple[EmbeddedPgBouncer, str],
) -> None:
    _, url = one_backend_bouncer

    async def scenario() -> None:
        first, second = await _two_clients(url)
        try:
            pid = await first.fetchval("SELECT pg_backend_pid()")
            assert await second.fetchval("SELECT pg_backend_pid()") == pid

            # SET LOCAL dies with its transaction: the other client sees the default.
            async with first.transaction():
                await first.execute("SET LOCAL search_path TO pg_catalog")
            assert await second.fetchval("SELECT current_setting('search_path')") != "pg_catalog"

            # A plain SET outlives the transaction and reaches the other client.
            await first.execute("SET search_path TO pg_catalog")
            assert await second.fetchval("SELECT current_setting('search_path')") == "pg_catalog"
            await second.execute("RESET search_path")

            # So does a session advisory lock: "its" client cannot tell whose it is.
            assert await first.fetchval("SELECT pg_try_advisory_lock(4242)") is True
            assert await second.fetchval("SELECT pg_advisory_unlock(4242)") is True
        finally:
            await first.close()
            await second.close()

    asyncio.run(scenario())


def test_the_auth_file_holds_verifiers_and_a_wrong_password_is_refused(
    one_backend_bouncer: tuple[EmbeddedPgBouncer, str],
) -> None:
    bouncer, url = one_backend_bouncer
    auth_file = bouncer.auth_path.read_text()
    password = url.partition("@")[0].rpartition(":")[2]
    assert "SCRAM-SHA-256$" in auth_file
    assert password not in auth_file
    assert stat.S_IMODE(os.stat(bouncer.auth_path).st_mode) == 0o600
    assert "pool_mode = transaction" in bouncer.config_path.read_text()

    wrong = url.replace(f":{password}@", ":not-the-password@")

    async def connect_wrongly() -> None:
        connection = await asyncpg.connect(wrong, statement_cache_size=0)
        await connection.close()

    # PgBouncer 1.18 answers a failed SCRAM exchange with SQLSTATE 08P01 (asyncpg's
    # ProtocolViolationError), where PostgreSQL answers 28P01 (InvalidPasswordError).
    with pytest.raises(asyncpg.PostgresError, match="authentication failed"):
        asyncio.run(connect_wrongly())


def test_stop_leaves_no_process(one_backend_bouncer: tuple[EmbeddedPgBouncer, str]) -> None:
    bouncer, _ = one_backend_bouncer
    pid = bouncer.pid
    assert pid is not None
    assert psutil.pid_exists(pid)
    bouncer.stop()
    assert not bouncer.running
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_through_rewrites_only_host_and_port() -> None:
    assert (
        through("postgresql://u:p%40ss@db.internal:5432/app?sslmode=disable", "127.0.0.1", 6432)
        == "postgresql://u:p%40ss@127.0.0.1:6432/app?sslmode=disable"
    )
