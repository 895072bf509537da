"""``tenantgate dev``: one ready line on stdout, and a stop that leaves nothing behind."""

from __future__ import annotations

import asyncio
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from tenantgate.cli import ExitCode

READY_TIMEOUT_SECONDS = 180.0
EXIT_TIMEOUT_SECONDS = 90.0
READY_FIELDS = {
    "event",
    "url",
    "admin_token",
    "database_url",
    "database_admin_url",
    "redis_url",
    "s3_endpoint_url",
    "service_env",
    "hsm",
}


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _read_line(process: subprocess.Popen[bytes], timeout: float) -> bytes:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    line = b""
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                raise AssertionError(f"no ready line within {timeout:.0f} s")
            chunk = os.read(process.stdout.fileno(), 1)
            if not chunk:
                raise AssertionError(f"stdout closed; exit status {process.wait()}")
            line += chunk
    return line


def _process_table() -> dict[int, tuple[int, str, str]]:
    """pid -> (parent pid, state, command line) of every process on the machine."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        table[int(entry.name)] = (int(fields[1]), fields[0], command)
    return table


def _belonging_to(root_pid: int, data_dir: Path) -> set[int]:
    """The dev command's descendants and any process naming its data folder."""
    table = _process_table()
    found = {root_pid}
    changed = True
    while changed:
        changed = False
        for pid, (parent, _, _) in table.items():
            if parent in found and pid not in found:
                found.add(pid)
                changed = True
    found |= {pid for pid, (_, _, command) in table.items() if str(data_dir) in command}
    return found


def _alive(pids: set[int]) -> dict[int, str]:
    table = _process_table()
    return {pid: table[pid][2] for pid in pids if pid in table and table[pid][1] != "Z"}


def _run_dev_until(stop_signal: signal.Signals, data_dir: Path, *, pgbouncer: bool = False) -> None:
    port = _unused_port()
    environment = {**os.environ, "TENANTGATE_ADMIN_TOKEN": "dev-admin-token-0123456789"}
    command = ["dev", "--port", str(port), "--data-dir", str(data_dir)]
    if pgbouncer:
        command.append("--pgbouncer")
    process = subprocess.Popen(
        [sys.executable, "-m", "tenantgate", *command],
        stdout=subprocess.PIPE,
        env=environment,
    )
    try:
        ready: dict[str, Any] = json.loads(_read_line(process, READY_TIMEOUT_SECONDS))
        assert set(ready) == READY_FIELDS
        assert ready["event"] == "ready"
        assert ready["url"] == f"http://127.0.0.1:{port}"
        assert ready["admin_token"] == "dev-admin-token-0123456789"
        assert "tenantgate" in ready["database_url"]
        assert ready["database_url"] != ready["database_admin_url"]

        response = httpx.get(f"{ready['url']}/readyz", timeout=10)
        assert response.status_code == 200, response.text
        assert response.headers["x-request-id"]

        started = _belonging_to(process.pid, data_dir)
        commands = " ".join(_alive(started).values())
        servers = ["weed", "redis-server", "postgres"] + (["pgbouncer"] if pgbouncer else [])
        for server in servers:
            assert server in commands, f"{server} not found among {commands!r}"
        service_env = ready["service_env"]
        if pgbouncer:
            assert service_env["TENANTGATE_DATABASE_PGBOUNCER"] == "true"
            assert service_env["TENANTGATE_DATABASE_URL"] == ready["database_url"]
            direct = service_env["TENANTGATE_DATABASE_DIRECT_URL"]
            assert urlsplit(direct).port == urlsplit(ready["database_admin_url"]).port
            assert urlsplit(ready["database_url"]).port != urlsplit(direct).port
        else:
            assert "TENANTGATE_DATABASE_PGBOUNCER" not in service_env

        process.send_signal(stop_signal)
        assert process.wait(timeout=EXIT_TIMEOUT_SECONDS) == ExitCode.OK
        assert process.stdout is not None
        assert process.stdout.read() == b"", "stdout must hold the ready line alone"

        deadline = time.monotonic() + 5
        while _alive(started) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _alive(started) == {}
        assert _alive(_belonging_to(process.pid, data_dir) - {process.pid}) == {}
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


@pytest.mark.servers
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_dev_serves_then_stops_everything(stop_signal: signal.Signals, tmp_path: Path) -> None:
    _run_dev_until(stop_signal, tmp_path / "stack")


@pytest.mark.servers
def test_dev_through_pgbouncer_serves_then_stops_everything(
    pgbouncer_installed: None, tmp_path: Path
) -> None:
    _run_dev_until(signal.SIGTERM, tmp_path / "stack", pgbouncer=True)


@pytest.mark.servers
def test_dev_keeps_its_secrets_across_restarts(tmp_path: Path) -> None:
    data_dir = tmp_path / "stack"
    _run_dev_until(signal.SIGTERM, data_dir)
    credentials = data_dir / "credentials.json"
    pepper = json.loads(credentials.read_text())["service_key_pepper"]
    assert credentials.stat().st_mode & 0o077 == 0
    _run_dev_until(signal.SIGTERM, data_dir)
    assert json.loads(credentials.read_text())["service_key_pepper"] == pepper


@pytest.mark.servers
def test_dev_with_a_bad_admin_token_exits_2_and_stops_the_stack(tmp_path: Path) -> None:
    data_dir = tmp_path / "stack"
    port = str(_unused_port())
    process = subprocess.Popen(
        [sys.executable, "-m", "tenantgate", "dev", "--port", port, "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "TENANTGATE_ADMIN_TOKEN": "short"},
    )
    stdout, stderr = process.communicate(timeout=READY_TIMEOUT_SECONDS)
    assert process.returncode == ExitCode.USAGE
    assert stdout == b""
    assert b"TENANTGATE_ADMIN_TOKEN" in stderr
    assert _alive(_belonging_to(process.pid, data_dir) - {process.pid}) == {}


# -- a stack with a demo tenant, two workers, and a second server joining it ----------------

SERVICE_SETTINGS = {  # what a second `tenantgate serve` needs to join the stack
    "TENANTGATE_DATABASE_URL",
    "TENANTGATE_REDIS_URL",
    "TENANTGATE_S3_ENDPOINT_URL",
    "TENANTGATE_S3_ACCESS_KEY_ID",
    "TENANTGATE_S3_SECRET_ACCESS_KEY",
    "TENANTGATE_S3_REGION",
    "TENANTGATE_ADMIN_TOKEN",
    "TENANTGATE_KEY_PEPPER",
}


@dataclass(frozen=True)
class DevRun:
    process: subprocess.Popen[bytes]
    ready: dict[str, Any]
    data_dir: Path


@pytest.fixture(scope="module")
def demo_dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevRun]:
    """`tenantgate dev --demo --workers 2`, stopped (and checked to stop cleanly) at the end."""
    data_dir = tmp_path_factory.mktemp("demo") / "stack"
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("TENANTGATE_")
    }
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "tenantgate", "dev", "--demo", "--workers", "2"),
            *("--port", str(_unused_port()), "--data-dir", str(data_dir)),
        ],
        stdout=subprocess.PIPE,
        env=environment,
    )
    try:
        ready = json.loads(_read_line(process, READY_TIMEOUT_SECONDS))
        yield DevRun(process, ready, data_dir)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=EXIT_TIMEOUT_SECONDS) == ExitCode.OK
        assert process.stdout is not None
        assert process.stdout.read() == b""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def _me(url: str, key: str) -> httpx.Response:
    return httpx.get(f"{url}/v1/me", headers={"Authorization": f"Bearer {key}"}, timeout=10)


@pytest.mark.servers
def test_the_ready_line_has_the_documented_keys_and_the_demo_key(demo_dev: DevRun) -> None:
    ready = demo_dev.ready
    assert set(ready) == READY_FIELDS | {"demo_api_key"}
    service_env = ready["service_env"]
    assert set(service_env) >= SERVICE_SETTINGS
    assert all(name.startswith("TENANTGATE_") or name == "SOFTHSM2_CONF" for name in service_env)
    assert ("SOFTHSM2_CONF" in service_env) == ("TENANTGATE_PKCS11_LIB" in service_env)
    assert service_env["TENANTGATE_DATABASE_URL"] == ready["database_url"]
    # The service runs as its own Redis user, on the server the ready line's admin URL names.
    service_redis, admin_redis = (
        urlsplit(service_env["TENANTGATE_REDIS_URL"]),
        urlsplit(ready["redis_url"]),
    )
    assert (service_redis.username, admin_redis.username) == ("tenantgate", "default")
    assert service_redis.netloc.split("@")[1] == admin_redis.netloc.split("@")[1]
    assert service_env["TENANTGATE_S3_ENDPOINT_URL"] == ready["s3_endpoint_url"]
    assert service_env["TENANTGATE_ADMIN_TOKEN"] == ready["admin_token"]
    answer = _me(ready["url"], ready["demo_api_key"])
    assert answer.status_code == 200, answer.text
    assert answer.json()["name"] == "demo"


@pytest.mark.servers
@pytest.mark.hsm
def test_dev_configures_its_softhsm_token_for_hsm_keys(demo_dev: DevRun) -> None:
    ready = demo_dev.ready
    service_env = ready["service_env"]
    assert ready["hsm"] == {
        "library": service_env["TENANTGATE_PKCS11_LIB"],
        "token_label": service_env["TENANTGATE_PKCS11_TOKEN_LABEL"],
    }
    admin = {"Authorization": f"Bearer {ready['admin_token']}"}
    with httpx.Client(base_url=ready["url"], headers=admin, timeout=10) as client:
        created = client.post("/admin/v1/tenants", json={"name": "hsm", "tier": "enterprise"})
        assert created.status_code == 201, created.text
        tenant_id = created.json()["tenant"]["id"]
        issued = client.post(f"/admin/v1/tenants/{tenant_id}/keys", json={"hsm": True})
        assert issued.status_code == 201, issued.text
        assert issued.json()["hsm"] is True
        # Both workers (each with its own session on the token) verify it.
        for _ in range(20):
            assert _me(ready["url"], issued.json()["key"]).status_code == 200
        client.delete(f"/admin/v1/tenants/{tenant_id}")


@pytest.mark.servers
def test_database_admin_url_is_the_superuser_on_the_service_database(demo_dev: DevRun) -> None:
    ready = demo_dev.ready

    async def inspect() -> tuple[str, bool, str | None]:
        connection = await asyncpg.connect(ready["database_admin_url"])
        try:
            row = await connection.fetchrow(
                "SELECT current_database() AS db, "
                "(SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS superuser, "
                "to_regclass('public.tenants')::text AS tenants"
            )
            assert row is not None
            return row["db"], row["superuser"], row["tenants"]
        finally:
            await connection.close()

    database, superuser, tenants = asyncio.run(inspect())
    assert database == urlsplit(ready["database_url"]).path.lstrip("/")
    assert superuser is True
    assert tenants == "tenants"


@pytest.mark.servers
def test_two_workers_serve(demo_dev: DevRun) -> None:
    table = _process_table()
    servers = [
        pid
        for pid in _belonging_to(demo_dev.process.pid, demo_dev.data_dir)
        if pid in table and "tenantgate serve" in table[pid][2] and "--workers 2" in table[pid][2]
    ]
    leaders = [pid for pid in servers if table[pid][0] not in servers]
    assert len(leaders) == 1
    workers = [pid for pid in servers if table[pid][0] == leaders[0]]
    assert len(workers) == 2
    for _ in range(20):
        assert _me(demo_dev.ready["url"], demo_dev.ready["demo_api_key"]).status_code == 200


@pytest.mark.servers
def test_a_second_serve_started_with_service_env_joins_the_stack(
    demo_dev: DevRun, serve_tenantgate: Any
) -> None:
    ready = demo_dev.ready
    with serve_tenantgate(ready["service_env"]) as url:
        answer = _me(url, ready["demo_api_key"])
        assert answer.status_code == 200, answer.text
        assert answer.json() == _me(ready["url"], ready["demo_api_key"]).json()
        tenants = httpx.get(
            f"{url}/admin/v1/tenants",
            headers={"Authorization": f"Bearer {ready['admin_token']}"},
            timeout=10,
        )
        assert tenants.status_code == 200, tenants.text
