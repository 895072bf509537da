"""``tenantgate dev``: the service on embedded PostgreSQL, Redis and S3 servers.

In order: start the embedded stack (:class:`tenantgate.dev.EmbeddedStack`) in the data
folder; give the service its own least-privileged PostgreSQL login and database there;
load or make the admin token and the key pepper (kept in the data folder, so a restart keeps
them); start ``tenantgate serve`` as a child process in a session of its own; wait until it
answers ``/healthz``; print one JSON line on stdout. Everything else, the child processes'
output included, goes to stderr.

SIGINT or SIGTERM, at any point, stops the server (its whole process group), then the
stack, and the command exits 0. If the server dies on its own, the stack is stopped too and
the command exits 1.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Final, TextIO
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import httpx

from tenantgate.errors import SettingsError, TenantgateError
from tenantgate.settings import Settings

if TYPE_CHECKING:
    from tenantgate.dev import StackInfo

__all__ = ["APP_DATABASE", "APP_ROLE", "DevServerError", "ensure_app_database", "run_dev"]

APP_ROLE: Final = "tenantgate"
"""The service's own PostgreSQL login: no superuser, may create (tenant) roles, not databases."""

APP_DATABASE: Final = "tenantgate"
"""The service's database on the embedded server, owned by :data:`APP_ROLE`."""

STARTUP_TIMEOUT_SECONDS: Final = 60.0
STOP_TIMEOUT_SECONDS: Final = 10.0

_SECRETS_FOLDER: Final = "service"
_logger = logging.getLogger("tenantgate.dev")


class _StopRequested(BaseException):
    """SIGINT or SIGTERM arrived. A BaseException, so no ``except Exception`` swallows it."""


class DevServerError(TenantgateError):
    """The development server could not be brought up."""


def run_dev(*, host: str, port: int, data_dir: Path, demo: bool = False) -> int:
    """Run ``tenantgate dev`` until SIGINT or SIGTERM; return the exit status."""
    _log_to_stderr()
    try:
        from tenantgate.dev import EmbeddedStack
    except ImportError as exc:
        _logger.error(
            "the embedded servers are missing (%s): pip install 'tenantgate[embedded]'", exc
        )
        return 1
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    with _stdout_kept_for_ready_line() as ready_stream, _stop_on_signals():
        stack = EmbeddedStack(data_dir)
        server: subprocess.Popen[bytes] | None = None
        try:
            _logger.info("starting the embedded servers in %s", data_dir)
            info = stack.start()
            service_secrets = _ServiceSecrets.load_or_create(data_dir / _SECRETS_FOLDER)
            database_url = asyncio.run(
                ensure_app_database(info.postgres_admin_url, service_secrets.postgres_password)
            )
            environment = _service_environment(info, database_url, service_secrets)
            Settings.from_env(environment)  # one clear message here rather than from the child
            _migrate(database_url)
            server = _start_server(host, port, environment)
            url = f"http://{_host_for_url(host)}:{port}"
            _wait_until_healthy(url, server)
            demo_key = (
                _demo_key(url, service_secrets.admin_token, data_dir / _SECRETS_FOLDER)
                if demo
                else None
            )
            _announce_ready(
                ready_stream, url, service_secrets.admin_token, database_url, info, demo_key
            )
            if demo_key is not None:
                _explain_demo(url, service_secrets.admin_token, demo_key)
            _logger.info("serving on %s; stop with Ctrl-C", url)
            status = server.wait()
            _logger.error("the server exited by itself (status %s)", status)
            return 1
        except _StopRequested:
            _logger.info("stopping")
            return 0
        except SettingsError as exc:
            _logger.error("%s", exc)
            return 2
        except (TenantgateError, OSError) as exc:  # EmbeddedServerError among them
            _logger.error("%s", exc)
            return 1
        finally:
            with _signals_ignored():
                if server is not None:
                    _stop_server(server)
                try:
                    stack.stop()
                except Exception:
                    _logger.exception("stopping the embedded servers failed")
                else:
                    _logger.info("stopped")


def _log_to_stderr() -> None:
    """Our progress messages on stderr; other libraries' logging stays as configured."""
    if not _logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("tenantgate dev: %(message)s"))
        _logger.addHandler(handler)
        _logger.setLevel(logging.INFO)
        _logger.propagate = False


def _announce_ready(
    stream: TextIO,
    url: str,
    admin_token: str,
    database_url: str,
    info: StackInfo,
    demo_key: str | None,
) -> None:
    """The one line on stdout, flushed at once: scripts wait for it."""
    ready = {
        "event": "ready",
        "url": url,
        "admin_token": admin_token,
        "database_url": database_url,
        "database_admin_url": info.postgres_admin_url,
        "redis_url": info.redis_admin_url,
        "s3_endpoint_url": info.s3_endpoint_url,
    }
    if demo_key is not None:
        ready["demo_api_key"] = demo_key
    stream.write(json.dumps(ready) + "\n")
    stream.flush()


@contextmanager
def _stdout_kept_for_ready_line() -> Iterator[TextIO]:
    """Point file descriptor 1 at stderr and yield the real stdout for the ready line alone.

    Whatever else writes to stdout (our own prints, the servers and every child process,
    which inherit descriptor 1) then lands on stderr.
    """
    sys.stdout.flush()
    real_stdout = os.dup(1)
    os.dup2(2, 1)
    try:
        with os.fdopen(os.dup(real_stdout), "w", encoding="utf-8") as stream:
            yield stream
    finally:
        sys.stdout.flush()
        os.dup2(real_stdout, 1)
        os.close(real_stdout)


@contextmanager
def _stop_on_signals() -> Iterator[None]:
    def request_stop(signum: int, frame: FrameType | None) -> None:
        raise _StopRequested

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def _signals_ignored() -> Iterator[None]:
    """Let the clean-up finish even when the user presses Ctrl-C again."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@dataclass(frozen=True, slots=True)
class _ServiceSecrets:
    admin_token: str
    key_pepper_hex: str
    postgres_password: str

    @classmethod
    def load_or_create(cls, folder: Path) -> _ServiceSecrets:
        """The service's secrets from ``folder``, each made on first use (files mode 0600).

        ``TENANTGATE_ADMIN_TOKEN``, when set, is the admin token instead of the stored one.
        """
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        admin_token = os.environ.get("TENANTGATE_ADMIN_TOKEN", "").strip() or _persisted_secret(
            folder / "admin_token", lambda: secrets.token_urlsafe(32)
        )
        return cls(
            admin_token=admin_token,
            key_pepper_hex=_persisted_secret(folder / "key_pepper", lambda: secrets.token_hex(32)),
            postgres_password=_persisted_secret(
                folder / "postgres_password", lambda: secrets.token_hex(24)
            ),
        )


def _persisted_secret(path: Path, make: Callable[[], str]) -> str:
    try:
        return path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        pass
    value = make()
    _write_secret(path, value)
    return value


def _write_secret(path: Path, value: str) -> None:
    """Write ``value`` to a new file readable by its owner only (mode 0600 from creation)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as file:
        file.write(value + "\n")


async def ensure_app_database(admin_url: str, password: str) -> str:
    """Create the service's login role and database on the server at ``admin_url``.

    Idempotent: an existing role gets ``password`` and the intended attributes again.
    Returns the service's own connection URL.
    """
    connection = await asyncpg.connect(admin_url, timeout=10)
    try:
        # DDL takes no parameters; format() quotes the name and the password server-side.
        role_exists = await connection.fetchval(
            "SELECT true FROM pg_roles WHERE rolname = $1", APP_ROLE
        )
        verb = "ALTER" if role_exists else "CREATE"
        statement = await connection.fetchval(
            f"SELECT format('{verb} ROLE %I WITH LOGIN NOSUPERUSER CREATEROLE NOCREATEDB "
            "NOREPLICATION NOBYPASSRLS PASSWORD %L', $1::text, $2::text)",
            APP_ROLE,
            password,
        )
        await connection.execute(statement)
        database_exists = await connection.fetchval(
            "SELECT true FROM pg_database WHERE datname = $1", APP_DATABASE
        )
        if not database_exists:
            statement = await connection.fetchval(
                "SELECT format('CREATE DATABASE %I OWNER %I', $1::text, $2::text)",
                APP_DATABASE,
                APP_ROLE,
            )
            await connection.execute(statement)
            _logger.info("created database %s owned by role %s", APP_DATABASE, APP_ROLE)
    finally:
        await connection.close()
    return _url_for_login(admin_url, APP_ROLE, password, APP_DATABASE)


def _migrate(database_url: str) -> None:
    from tenantgate.migrate_command import migrate_everything

    report = asyncio.run(migrate_everything(database_url))
    if report.failed:
        raise DevServerError(f"migrating {len(report.failed)} tenant schemas failed")
    _logger.info(
        "migrated: %d tenant schemas up to date, %d migrated now",
        report.up_to_date,
        report.migrated,
    )


def _demo_key(url: str, admin_token: str, folder: Path) -> str:
    """The demo tenant's key: the one kept from an earlier run if it still works, else a new
    tenant `demo` and its first key (kept in ``folder``, mode 0600)."""
    stored = folder / "demo_api_key"
    with httpx.Client(base_url=url, timeout=10.0) as client:
        if stored.exists():
            key = stored.read_text(encoding="ascii").strip()
            if client.get("/v1/me", headers={"Authorization": f"Bearer {key}"}).is_success:
                return key
        answer = client.post(
            "/admin/v1/tenants",
            json={"name": "demo", "plan": "pro"},
            headers={"Authorization": f"Bearer {admin_token}"},
        )
        if answer.status_code != httpx.codes.CREATED:
            raise DevServerError(f"creating the demo tenant failed: {answer.text}")
        key = str(answer.json()["api_key"]["key"])
    stored.unlink(missing_ok=True)
    _write_secret(stored, key)
    return key


def _explain_demo(url: str, admin_token: str, demo_key: str) -> None:
    sys.stderr.write(
        f"""
tenantgate is up at {url}, with a demo tenant. Try:

  curl -s {url}/v1/me -H 'Authorization: Bearer {demo_key}'
  curl -s {url}/v1/items -H 'Authorization: Bearer {demo_key}' \\
       -H 'Content-Type: application/json' -d '{{"data": {{"hello": "world"}}}}'
  curl -s {url}/v1/items -H 'Authorization: Bearer {demo_key}'

As the operator (admin token from the ready line above):

  curl -s {url}/admin/v1/tenants -H 'Authorization: Bearer {admin_token}'

API reference: {url}/schema (OpenAPI: {url}/schema/openapi.json). Stop with Ctrl-C.

"""
    )
    sys.stderr.flush()


def _url_for_login(admin_url: str, user: str, password: str, database: str) -> str:
    parts = urlsplit(admin_url)
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    return urlunsplit(parts._replace(netloc=netloc, path="/" + database))


def _service_environment(
    info: StackInfo, database_url: str, service_secrets: _ServiceSecrets
) -> dict[str, str]:
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("TENANTGATE_")
    }
    environment.update(info.service_environment(database_url))
    environment.update(
        TENANTGATE_ADMIN_TOKEN=service_secrets.admin_token,
        TENANTGATE_KEY_PEPPER=service_secrets.key_pepper_hex,
    )
    for name in ("TENANTGATE_MAX_BODY_BYTES", "TENANTGATE_MAX_FILE_BYTES"):
        if name in os.environ:
            environment[name] = os.environ[name]
    return environment


def _start_server(host: str, port: int, environment: Mapping[str, str]) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "tenantgate", "serve", "--host", host, "--port", str(port)]
    _logger.info("starting the server: %s", " ".join(command[1:]))
    # A session of its own: a terminal's Ctrl-C reaches only us, and we stop the server
    # first, then the stack it depends on.
    return subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
        command, env=dict(environment), start_new_session=True
    )


def _wait_until_healthy(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    with httpx.Client(timeout=1.0) as client:
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise DevServerError(
                    f"the server exited during start-up (status {server.returncode})"
                )
            try:
                if client.get(f"{url}/healthz").status_code == httpx.codes.OK:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    raise DevServerError(
        f"the server did not answer {url}/healthz in {STARTUP_TIMEOUT_SECONDS:.0f} s"
    )


def _stop_server(server: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's process group (granian and its workers), then SIGKILL."""
    if server.poll() is None:
        _signal_group(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            _logger.warning("the server did not stop in %.0f s; killing it", STOP_TIMEOUT_SECONDS)
    # Workers may outlive a killed parent: the group goes, whatever happened above.
    _signal_group(server.pid, signal.SIGKILL)
    server.wait()


def _signal_group(group_id: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError):
        os.killpg(group_id, sig)


def _host_for_url(host: str) -> str:
    if host in ("0.0.0.0", ""):  # noqa: S104 - a wildcard address is not one to connect to
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host
