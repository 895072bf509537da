"""The service really reaches PostgreSQL by the session's route: through PgBouncer, its
transactions run on PgBouncer's server connections while a provisioning lease (a session
advisory lock) holds a direct connection of its own; directly, both are ours.

Which process opened a backend's connection is told by the backend's client port
(``inet_client_port()``), found among the local ports of that process's TCP connections.
"""

from __future__ import annotations

import os
from typing import Any

import psutil
import pytest

from tenantgate.db.pool import open_database

pytestmark = [pytest.mark.servers, pytest.mark.anyio, pytest.mark.pgbouncer]

_PROBE_LOCK = 0x7467_7072_6F62_6500  # any key no tenant uses ("tgprobe")


def _local_ports(pid: int) -> set[int]:
    return {c.laddr.port for c in psutil.Process(pid).net_connections(kind="tcp") if c.laddr}


async def test_transactions_and_leases_take_the_route_they_must(
    service_settings: Any, database_route: str, request: pytest.FixtureRequest
) -> None:
    settings = service_settings.database
    assert settings.pgbouncer is (database_route == "pgbouncer")
    async with open_database(settings) as database:
        async with database.transaction() as connection:
            transaction_port = await connection.fetchval("SELECT inet_client_port()")
        async with database.lease(_PROBE_LOCK, wait=False) as connection:
            assert connection is not None
            lease_port = await connection.fetchval("SELECT inet_client_port()")
            ours = _local_ports(os.getpid())

    assert lease_port in ours
    if database_route == "pgbouncer":
        bouncer = request.getfixturevalue("pgbouncer")
        assert transaction_port not in ours
        assert transaction_port in _local_ports(bouncer.pid)
    else:
        assert transaction_port in ours
