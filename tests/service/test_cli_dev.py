"""``tenantgate dev``: one ready line on stdout, and a stop that leaves nothing behind."""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

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


def _run_dev_until(stop_signal: signal.Signals, data_dir: Path) -> None:
    port = _unused_port()
    environment = {**os.environ, "TENANTGATE_ADMIN_TOKEN": "dev-admin-token-0123456789"}
    process = subprocess.Popen(
        [sys.executable, "-m", "tenantgate", "dev", "--port", str(port), "--data-dir", data_dir],
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
        for server in ("weed", "redis-server", "postgres"):
            assert server in commands, f"{server} not found among {commands!r}"

        process.send_signal(stop_signal)
        assert process.wait(timeout=EXIT_TIMEOUT_SECONDS) == 0
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
def test_dev_keeps_its_secrets_across_restarts(tmp_path: Path) -> None:
    data_dir = tmp_path / "stack"
    _run_dev_until(signal.SIGTERM, data_dir)
    secrets_folder = data_dir / "service"
    pepper = (secrets_folder / "key_pepper").read_text()
    assert (secrets_folder / "key_pepper").stat().st_mode & 0o077 == 0
    _run_dev_until(signal.SIGTERM, data_dir)
    assert (secrets_folder / "key_pepper").read_text() == pepper


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
    assert process.returncode == 2
    assert stdout == b""
    assert b"TENANTGATE_ADMIN_TOKEN" in stderr
    assert _alive(_belonging_to(process.pid, data_dir) - {process.pid}) == {}
