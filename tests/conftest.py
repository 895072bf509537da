"""Session-wide fixtures: one embedded stack (PostgreSQL, Redis, S3, SoftHSM2) for the run.

The stack starts lazily, the first time a test asks for one of these fixtures, and stops at the
end of the session. When a server is not installed the test is skipped, except with ``CI=true``
in the environment, where it fails: a missing server must never silently pass in CI.
Tests using the servers should carry ``@pytest.mark.servers`` (and ``@pytest.mark.hsm`` for the
HSM) so ``-m "not servers"`` selects the fast unit tests.

**Through PgBouncer.** A test module marked ``pytest.mark.pgbouncer`` runs twice: once with the
service connected straight to PostgreSQL, once through an embedded PgBouncer in transaction
pooling mode (``[pgbouncer]`` in the test id), with the settings that mode needs
(``TENANTGATE_DATABASE_PGBOUNCER``, ``TENANTGATE_DATABASE_DIRECT_URL``). The route is the
session fixture ``database_route``; ``service_environment`` and everything built on it follow
it, so the test code is the same for both. PgBouncer missing skips, and fails with ``CI=true``.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from tenantgate.dev import EmbeddedS3, EmbeddedStack, HsmInfo, StackInfo, missing_components

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def skip_or_fail(reason: str) -> None:
    """``pytest.skip`` locally, ``pytest.fail`` in CI."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: missing servers fail instead of skipping)")
    pytest.skip(reason)


@functools.cache
def _missing(hsm: bool) -> tuple[str, ...]:
    return tuple(missing_components(hsm=hsm))


DATABASE_ROUTES = ("direct", "pgbouncer")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``pgbouncer``-marked tests that reach the service's database run on both routes."""
    if (
        "database_route" in metafunc.fixturenames
        and metafunc.definition.get_closest_marker("pgbouncer") is not None
    ):
        metafunc.parametrize("database_route", DATABASE_ROUTES, indirect=True, scope="session")


def pytest_runtest_setup(item: pytest.Item) -> None:
    """``servers`` / ``hsm`` marked tests: skip (fail in CI) when their servers are missing."""
    if item.get_closest_marker("servers") is not None and _missing(False):
        skip_or_fail(f"embedded servers not installed: {', '.join(_missing(False))}")
    if item.get_closest_marker("hsm") is not None and _missing(True):
        skip_or_fail(f"HSM not available: {', '.join(_missing(True))}")


@pytest.fixture(scope="session")
def run_tenantgate() -> Any:
    """Run the `tenantgate` command line as a user would, with only the given TENANTGATE_*
    variables: `run_tenantgate("migrate", environ={...})`."""
    import subprocess
    import sys

    def run(*args: str, environ: dict[str, str] | None = None) -> Any:
        clean = {
            name: value for name, value in os.environ.items() if not name.startswith("TENANTGATE_")
        }
        return subprocess.run(
            [sys.executable, "-m", "tenantgate", *args],
            env=clean | (environ or {}),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    return run


@pytest.fixture(scope="session")
def serve_tenantgate() -> Any:
    """Start `tenantgate serve` as a user would, with only the given TENANTGATE_* variables,
    and stop it (its whole process group) afterwards::

        with serve_tenantgate(environ, workers=2) as url: ...
    """
    import signal
    import subprocess
    import sys
    import time
    from contextlib import contextmanager

    import httpx

    from tenantgate.dev.ports import free_port

    @contextmanager
    def serve(environ: dict[str, str], *, workers: int = 1, timeout: float = 60.0) -> Any:
        port = free_port()
        clean = {
            name: value for name, value in os.environ.items() if not name.startswith("TENANTGATE_")
        }
        command = ["serve", "--port", str(port), "--workers", str(workers)]
        server = subprocess.Popen(
            [sys.executable, "-m", "tenantgate", *command],
            env=clean | environ,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout
            while True:
                assert server.poll() is None, f"the server exited with {server.returncode}"
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the server never answered /healthz"
                time.sleep(0.1)
            yield url
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()

    return serve


@dataclass(frozen=True)
class S3Settings:
    """Where the S3 gateway is and the admin identity's keys."""

    endpoint_url: str
    access_key_id: str
    secret_access_key: str
    region: str
    config_path: Path
    server: EmbeddedS3

    def client(self, access_key_id: str | None = None, secret_access_key: str | None = None) -> Any:
        """A boto3 S3 client (path-style, no retries) as the admin or as the given keys."""
        return self.server.client(access_key_id, secret_access_key)


@pytest.fixture(scope="session")
def embedded_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    """The one running stack of this session (fast mode: fsync off); stopped at the end."""
    if _missing(False):
        skip_or_fail(f"embedded servers not installed: {', '.join(_missing(False))}")
    stack = EmbeddedStack(tmp_path_factory.mktemp("stack"), hsm=not _missing(True), fast=True)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def stack_info(embedded_stack: EmbeddedStack) -> StackInfo:
    return embedded_stack.info


@pytest.fixture(scope="session")
def postgres_admin_url(stack_info: StackInfo) -> str:
    return stack_info.postgres_admin_url


@pytest.fixture(scope="session")
def redis_admin_url(stack_info: StackInfo) -> str:
    return stack_info.redis_admin_url


@pytest.fixture(scope="session")
def s3_settings(stack_info: StackInfo, embedded_stack: EmbeddedStack) -> S3Settings:
    return S3Settings(
        endpoint_url=stack_info.s3_endpoint_url,
        access_key_id=stack_info.s3_access_key_id,
        secret_access_key=stack_info.s3_secret_access_key,
        region=stack_info.s3_region,
        config_path=stack_info.s3_config_path,
        server=embedded_stack.s3,
    )


@pytest.fixture(scope="session")
def hsm_info(embedded_stack: EmbeddedStack) -> Iterator[HsmInfo]:
    """The SoftHSM2 token; ``SOFTHSM2_CONF`` is set for the session (read once per process
    when a PKCS#11 library initialises, so set it before the first ``pkcs11.lib``)."""
    info = embedded_stack.info.hsm
    if info is None:
        skip_or_fail(f"HSM not available: {', '.join(_missing(True)) or 'softhsm2'}")
        raise AssertionError("unreachable")
    previous = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(info.conf_path)
    try:
        yield info
    finally:
        if previous is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = previous


# -- the tenantgate service on the embedded stack -------------------------------------------

ADMIN_TOKEN = "test-admin-token-" + "0123456789abcdef"


@pytest.fixture(scope="session")
def database_route(request: pytest.FixtureRequest) -> str:
    """How the service reaches PostgreSQL: ``direct``, or ``pgbouncer`` (see the docstring)."""
    route: str = getattr(request, "param", "direct")
    return route


@pytest.fixture(scope="session")
def pgbouncer_installed() -> None:
    """Skip the test (fail it with ``CI=true``) unless Debian's ``pgbouncer`` is installed."""
    from tenantgate.dev.pgbouncer import pgbouncer_binary

    if pgbouncer_binary() is None:
        skip_or_fail("PgBouncer not installed (Debian: pgbouncer; `make system-packages`)")


@pytest.fixture(scope="session")
def pgbouncer(
    pgbouncer_installed: None,
    embedded_stack: EmbeddedStack,
    direct_service_environment: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Any]:
    """An embedded PgBouncer (transaction pooling) in front of the session's PostgreSQL, for
    the service's login; stopped at the end of the session."""
    from tenantgate.dev.pgbouncer import EmbeddedPgBouncer

    bouncer = EmbeddedPgBouncer(
        tmp_path_factory.mktemp("pgbouncer"),
        admin_url=embedded_stack.info.postgres_admin_url,
        logins=[direct_service_environment["TENANTGATE_DATABASE_URL"]],
    )
    try:
        bouncer.start()
        yield bouncer
    finally:
        bouncer.stop()


@pytest.fixture(scope="session")
def service_environment(
    direct_service_environment: dict[str, str],
    database_route: str,
    request: pytest.FixtureRequest,
) -> dict[str, str]:
    """TENANTGATE_* settings for a service on the session's stack, its database migrated,
    reaching PostgreSQL by the session's ``database_route``."""
    if database_route == "direct":
        return direct_service_environment
    bouncer = request.getfixturevalue("pgbouncer")
    direct_url = direct_service_environment["TENANTGATE_DATABASE_URL"]
    return {
        **direct_service_environment,
        "TENANTGATE_DATABASE_URL": bouncer.url_for(direct_url),
        "TENANTGATE_DATABASE_PGBOUNCER": "true",
        "TENANTGATE_DATABASE_DIRECT_URL": direct_url,
    }


@pytest.fixture(scope="session")
def direct_service_environment(stack_info: StackInfo) -> dict[str, str]:
    """TENANTGATE_* settings for a service on the session's stack, its database migrated.

    The service connects as its own least-privileged role, as in production.
    """
    import asyncio
    import secrets

    import asyncpg

    from tenantgate.db.migrator import migrate_public
    from tenantgate.dev import ensure_app_database

    database_url = asyncio.run(
        ensure_app_database(stack_info.postgres_admin_url, secrets.token_urlsafe(18))
    )

    async def migrate() -> None:
        connection = await asyncpg.connect(database_url)
        try:
            await migrate_public(connection)
        finally:
            await connection.close()

    asyncio.run(migrate())
    return {
        **stack_info.service_environment(database_url),
        "TENANTGATE_ADMIN_TOKEN": ADMIN_TOKEN,
        "TENANTGATE_KEY_PEPPER": secrets.token_hex(32),
    }


@pytest.fixture(scope="session")
def service_settings(service_environment: dict[str, str]) -> Any:
    from tenantgate.settings import Settings

    # The in-process service signs audit seals in the HSM (when the stack has one): the
    # PKCS#11 library reads SOFTHSM2_CONF from this process's environment, as a served
    # instance reads it from the environment it is given.
    if "SOFTHSM2_CONF" in service_environment:
        os.environ["SOFTHSM2_CONF"] = service_environment["SOFTHSM2_CONF"]
    return Settings.from_env(service_environment)


@pytest.fixture(scope="session")
def service(service_settings: Any) -> Iterator[Any]:
    """A TestClient of `create_app()` on the session's stack, lifespan running."""
    from litestar.testing import TestClient

    from tenantgate.app import create_app

    with TestClient(create_app(service_settings)) as client:
        yield client


@pytest.fixture
def served(serve_tenantgate: Any, service_environment: dict[str, str]) -> Iterator[str]:
    """`tenantgate serve` (granian, one worker) on the session's stack; its URL."""
    with serve_tenantgate(service_environment) as url:
        yield url


@pytest.fixture(scope="session")
def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@dataclass(frozen=True)
class NewTenant:
    """A tenant made for one test, and the headers that act as it."""

    id: str
    key: str
    key_id: str
    body: dict[str, Any]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture
def make_tenant(service: Any, admin_headers: dict[str, str]) -> Iterator[Any]:
    """Create a fresh tenant through the admin API: `make_tenant(name=..., tier=...)`.

    The test's tenants are deleted after it, as far as the servers allow (a test may have
    deleted one, or left a server stopped): tenants left behind would pile up S3 identities,
    and SeaweedFS's IAM writes slow down with their number (~1 s each at 250 identities)."""
    import contextlib
    import uuid

    made: list[str] = []

    def make(**fields: Any) -> NewTenant:
        body = {"name": f"tenant-{uuid.uuid4().hex[:8]}", **fields}
        answer = service.post("/admin/v1/tenants", json=body, headers=admin_headers)
        assert answer.status_code == 201, answer.text
        created = answer.json()
        made.append(created["tenant"]["id"])
        return NewTenant(
            id=created["tenant"]["id"],
            key=created["api_key"]["key"],
            key_id=created["api_key"]["id"],
            body=created,
        )

    yield make
    for tenant_id in made:
        with contextlib.suppress(Exception):
            service.delete(f"/admin/v1/tenants/{tenant_id}", headers=admin_headers)


@pytest.fixture
def own_redis(tmp_path: Any) -> Iterator[Any]:
    """``own_redis(databases=10_000)``: a Redis server of this test's own (the same ACL set-up as
    the session's: ``default`` and the service's user), stopped after the test. For tests
    that stop, pause or restart Redis, or need a server with few databases."""
    servers: list[Any] = []

    def start(databases: int = 10_000) -> Any:
        from tenantgate.dev.redis import EmbeddedRedis

        server = EmbeddedRedis(tmp_path / f"redis-{len(servers)}", databases=databases)
        server.start()
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()
