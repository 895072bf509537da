"""All of tenantgate's configuration, read from ``TENANTGATE_*`` environment variables.

One frozen dataclass per concern, gathered in :class:`Settings`. :meth:`Settings.from_env`
is the only reader of the environment; a missing or malformed variable raises
:class:`~tenantgate.errors.SettingsError` whose message names it. Secrets (passwords inside
URLs, the admin token, the key pepper, the HSM PIN) never appear in a ``repr``.

=================================== ========= ==============================================
variable                            required  meaning
=================================== ========= ==============================================
``TENANTGATE_DATABASE_URL``         yes       ``postgresql://user:password@host:port/db``
``TENANTGATE_DATABASE_POOL_SIZE``   no (10)   most PostgreSQL connections per process
``TENANTGATE_REDIS_URL``            yes       ``redis://``, ``rediss://`` or ``unix://`` URL
``TENANTGATE_REDIS_ISOLATION``      no (auto) ``namespace``, ``database`` or ``auto``
``TENANTGATE_S3_ENDPOINT_URL``      no        ``http(s)://host:port``; unset means AWS
``TENANTGATE_S3_ACCESS_KEY_ID``     no        with the secret below: both or neither
``TENANTGATE_S3_SECRET_ACCESS_KEY`` no        unset: boto3's default credential chain
``TENANTGATE_S3_REGION``            no        default ``us-east-1``
``TENANTGATE_S3_BUCKET_PREFIX``     no        default ``tenantgate``; bucket names start so
``TENANTGATE_ADMIN_TOKEN``          yes       at least 16 printable ASCII characters
``TENANTGATE_KEY_PEPPER``           yes       hex, at least 16 bytes (``openssl rand -hex 32``)
``TENANTGATE_PKCS11_LIB``           no        path of the PKCS#11 library; the three
``TENANTGATE_PKCS11_TOKEN_LABEL``   no        PKCS#11 variables are set together
``TENANTGATE_PKCS11_PIN``           no        or not at all
``TENANTGATE_MAX_BODY_BYTES``       no        default 1 MiB
``TENANTGATE_MAX_FILE_BYTES``       no        default 100 MiB
``TENANTGATE_AUDIT_SEAL_INTERVAL_SECONDS`` no (900) seconds between audit seals; 0: none
``TENANTGATE_AUDIT_RETENTION_DAYS`` no (365)  days each seal is kept in compliance mode
=================================== ========= ==============================================

Also ``TENANTGATE_DATABASE_ACQUIRE_TIMEOUT`` (default 2) and
``TENANTGATE_DATABASE_STATEMENT_TIMEOUT`` (default 10): seconds a request waits for a pooled
connection, and one statement may run, before the answer is a 503;
``TENANTGATE_REDIS_TIMEOUT`` (default 0.5): seconds one Redis call (connecting, waiting for a
pooled connection, or a command's answer) may take before the cache is treated as down; and
``TENANTGATE_REDIS_POOL_SIZE`` (default 32): the most Redis connections one process opens;
``TENANTGATE_REDIS_CLUSTER`` (default false): the Redis URL names a node of a Redis Cluster;
``TENANTGATE_TRUSTED_PROXIES`` (default none): CIDRs whose ``X-Forwarded-For`` is believed;
``TENANTGATE_RATELIMIT_SCOPE`` (default ``host``): ``cluster`` for one budget per tenant across
the instances sharing the Redis (:mod:`tenantgate.cluster_limits`),
``TENANTGATE_KEY_CACHE_TRUSTED_SECONDS`` (default 60): how long a key's record is trusted while
the instance provably hears every announced change (one second otherwise), and
``TENANTGATE_RATELIMIT_REDIS_TIMEOUT`` (default 0.1): seconds one lease round trip may take
there before the host tier decides alone;
``TENANTGATE_DATABASE_PGBOUNCER`` (default false): the database URL goes through PgBouncer in
transaction pooling mode, and then ``TENANTGATE_DATABASE_DIRECT_URL`` (required with it): the
same login bypassing PgBouncer, for provisioning leases and migrations.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Literal, TypeVar, get_args
from urllib.parse import SplitResult, urlsplit, urlunsplit

from tenantgate.errors import SettingsError
from tenantgate.naming import BUCKET_PREFIX_PATTERN

__all__ = [
    "AuditSettings",
    "DatabaseSettings",
    "HsmSettings",
    "KeyCacheSettings",
    "LimitsSettings",
    "RateLimitScope",
    "RedisIsolation",
    "RedisSettings",
    "S3Settings",
    "SecuritySettings",
    "Settings",
    "redact_url",
]

RedisIsolation = Literal["namespace", "database", "auto"]
RateLimitScope = Literal["host", "cluster"]
_Choice = TypeVar("_Choice", bound=str)

_ENV_PREFIX = "TENANTGATE_"
_MIN_PEPPER_BYTES = 16
_MIN_ADMIN_TOKEN_CHARS = 16
_ADMIN_TOKEN_PATTERN = re.compile(r"[\x21-\x7e]+")
_HEX_PATTERN = re.compile(r"(?:[0-9a-fA-F]{2})+")
_MIB = 1024 * 1024
_MAX_TIMEOUT_SECONDS = 3600.0
_MAX_SEAL_INTERVAL = 7 * 24 * 3600
_MAX_RETENTION_DAYS = 36_500


def redact_url(url: str) -> str:
    """Return ``url`` with its password, if any, replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username or ''}:***@{host}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


@dataclass(frozen=True, slots=True, repr=False)
class DatabaseSettings:
    """Where the service's PostgreSQL database is and how many connections it may hold."""

    url: str
    """``TENANTGATE_DATABASE_URL``: the service's own least-privileged login, as a
    ``postgresql://`` URL (``postgres://`` is accepted too)."""

    pool_max_size: int = 10
    """``TENANTGATE_DATABASE_POOL_SIZE``: the most connections one process opens. The pool
    opens them lazily, so the service starts even while PostgreSQL is down."""

    acquire_timeout_seconds: float = 2.0
    """``TENANTGATE_DATABASE_ACQUIRE_TIMEOUT``: how long a request waits for a free pooled
    connection; past it the answer is 503 with ``Retry-After``, so work never queues without
    bound."""

    statement_timeout_seconds: float = 10.0
    """``TENANTGATE_DATABASE_STATEMENT_TIMEOUT``: how long one statement may run; past it the
    statement is cancelled and the answer is 503."""

    pgbouncer: bool = False
    """``TENANTGATE_DATABASE_PGBOUNCER``: ``true`` when ``url`` goes through PgBouncer in
    transaction (or statement) pooling mode: asyncpg then keeps no prepared statements across
    transactions (``statement_cache_size=0``), and what needs a session of its own — a
    tenant's provisioning lease (a session advisory lock), migrations — uses ``direct_url``."""

    direct_url: str | None = None
    """``TENANTGATE_DATABASE_DIRECT_URL``: the same login and database without PgBouncer (or
    through a session-mode pool); required with ``pgbouncer``, unused without it."""

    @property
    def session_url(self) -> str:
        """The URL for work that needs one server session throughout: leases, migrations."""
        return self.direct_url if self.pgbouncer and self.direct_url else self.url

    def __repr__(self) -> str:
        direct = redact_url(self.direct_url) if self.direct_url else None
        return (
            f"DatabaseSettings(url={redact_url(self.url)!r}, pool_max_size={self.pool_max_size}, "
            f"acquire_timeout_seconds={self.acquire_timeout_seconds}, "
            f"statement_timeout_seconds={self.statement_timeout_seconds}, "
            f"pgbouncer={self.pgbouncer}, direct_url={direct!r})"
        )


@dataclass(frozen=True, slots=True, repr=False)
class RedisSettings:
    """Where Redis is and how tenants are kept apart in it."""

    url: str
    """``TENANTGATE_REDIS_URL``: the service's own management user (it creates and deletes
    tenants' ACL users and their keys, and reads no tenant data; see the README for its ACL
    rules) as a ``redis://``, ``rediss://`` or ``unix://`` URL."""

    isolation: RedisIsolation = "auto"
    """``TENANTGATE_REDIS_ISOLATION``: ``namespace`` puts every tenant in database 0 under its
    own key prefix (works on Redis Cluster), ``database`` gives each tenant its own logical
    database as well, ``auto`` (the default) uses ``database`` for enterprise tenants and
    ``namespace`` for the others. Tenants are always walled off by their own ACL user."""

    timeout_seconds: float = 0.5
    """``TENANTGATE_REDIS_TIMEOUT``: how long one Redis call may take — connecting, waiting
    for a pooled connection, or waiting for an answer. A cache that answers late is treated as
    down (cache routes answer 503, items are read from PostgreSQL), so keep it short."""

    cluster: bool = False
    """``TENANTGATE_REDIS_CLUSTER``: ``true`` when the URL names one node of a Redis Cluster
    (the others are discovered). Only the ``namespace`` placement exists there (a cluster has
    database 0 only), so ``auto`` means ``namespace`` and ``database`` is refused at start-up."""

    pool_max_size: int = 32
    """``TENANTGATE_REDIS_POOL_SIZE``: the most connections one process opens to Redis (per
    node on a Cluster). Tenants share them: see :mod:`tenantgate.cache.tenant_redis`."""

    def __repr__(self) -> str:
        return (
            f"RedisSettings(url={redact_url(self.url)!r}, isolation={self.isolation!r}, "
            f"timeout_seconds={self.timeout_seconds}, cluster={self.cluster}, "
            f"pool_max_size={self.pool_max_size})"
        )


@dataclass(frozen=True, slots=True)
class S3Settings:
    """Where the S3-compatible object store is and the service's credentials for it."""

    endpoint_url: str | None = None
    """``TENANTGATE_S3_ENDPOINT_URL``: e.g. ``http://127.0.0.1:8333`` for SeaweedFS or MinIO
    (path-style addressing is used then); unset means AWS S3 itself."""

    access_key_id: str | None = None
    """``TENANTGATE_S3_ACCESS_KEY_ID``: set together with the secret, or leave both unset to
    use boto3's default credential chain (instance roles, ``AWS_*`` variables, ...)."""

    secret_access_key: str | None = field(default=None, repr=False)
    """``TENANTGATE_S3_SECRET_ACCESS_KEY``: the secret belonging to ``access_key_id``."""

    region: str = "us-east-1"
    """``TENANTGATE_S3_REGION``: the region requests are signed for."""

    bucket_prefix: str = "tenantgate"
    """``TENANTGATE_S3_BUCKET_PREFIX``: every bucket the service makes is named
    ``<prefix>-shared`` (standard tenants) or ``<prefix>-<tenant id hex>`` (enterprise
    tenants). Bucket names are global on AWS: choose a prefix your organisation owns. At most
    29 lowercase letters, digits and inner hyphens."""


@dataclass(frozen=True, slots=True)
class SecuritySettings:
    """The operator's credential and the secret all stored key hashes are keyed with."""

    admin_token: str = field(repr=False)
    """``TENANTGATE_ADMIN_TOKEN``: the bearer token of the admin API, at least 16 printable
    ASCII characters without spaces (``openssl rand -base64 32`` makes a good one)."""

    key_pepper: bytes = field(repr=False)
    """``TENANTGATE_KEY_PEPPER``: the HMAC key of API-key hashes, given **hex-encoded** (hex
    only, so a value can never be read two ways), at least 16 bytes (32 hex digits); make
    one with ``openssl rand -hex 32``. Changing it invalidates every stored key."""

    trusted_proxies: tuple[IPv4Network | IPv6Network, ...] = ()
    """``TENANTGATE_TRUSTED_PROXIES``: comma-separated addresses or CIDRs of the reverse
    proxies in front of the service. A request from one of them is attributed to the address
    its ``X-Forwarded-For`` names (the nearest one not itself a trusted proxy); from anywhere
    else, to its socket peer, whatever it claims. Used by the brake on key guessing."""

    def __post_init__(self) -> None:
        # Checked here too, not only when read from the environment: a Settings built in code
        # with an empty or short token would otherwise open the admin API.
        _check_admin_token(self.admin_token, "TENANTGATE_ADMIN_TOKEN")
        if len(self.key_pepper) < _MIN_PEPPER_BYTES:
            raise SettingsError(f"TENANTGATE_KEY_PEPPER must be at least {_MIN_PEPPER_BYTES} bytes")


@dataclass(frozen=True, slots=True)
class HsmSettings:
    """A PKCS#11 token holding the HMAC key of enterprise keys marked ``hsm``."""

    library_path: Path
    """``TENANTGATE_PKCS11_LIB``: the PKCS#11 module, e.g. ``/usr/lib/softhsm/libsofthsm2.so``."""

    token_label: str
    """``TENANTGATE_PKCS11_TOKEN_LABEL``: the label of the token to open."""

    pin: str = field(repr=False)
    """``TENANTGATE_PKCS11_PIN``: the user PIN of that token."""


@dataclass(frozen=True, slots=True)
class LimitsSettings:
    """Upper bounds on what one request may send, and the rate limiter's buckets."""

    max_body_bytes: int = _MIB
    """``TENANTGATE_MAX_BODY_BYTES``: the largest request body in bytes (default 1 MiB);
    larger bodies are answered with ``413``."""

    max_file_bytes: int = 100 * _MIB
    """``TENANTGATE_MAX_FILE_BYTES``: the largest file upload in bytes (default 100 MiB)."""

    ratelimit_slots: int = 65_536
    """``TENANTGATE_RATELIMIT_SLOTS``: how many tenants' rate-limit buckets are kept (16 bytes
    each; default 65,536, about 1 MiB). When full, idle buckets make room first; see
    :mod:`tenantgate.host_limits`."""

    shared_memory: str | None = None
    """``TENANTGATE_RATELIMIT_SHM``: the host's bucket table, shared by the worker processes.
    Set by ``tenantgate serve`` for its workers, not by hand; unset, a process keeps its
    buckets to itself."""

    ratelimit_scope: RateLimitScope = "host"
    """``TENANTGATE_RATELIMIT_SCOPE``: ``host`` (one budget per tenant per host, in shared
    memory, no I/O per request) or ``cluster`` (one budget per tenant across every instance
    sharing the Redis: tokens leased from Redis in batches, the host tier as the fallback when
    Redis is unavailable; see :mod:`tenantgate.cluster_limits`)."""

    ratelimit_redis_timeout_seconds: float = 0.1
    """``TENANTGATE_RATELIMIT_REDIS_TIMEOUT``: in the ``cluster`` scope, how long one lease
    round trip to Redis may take (connecting, waiting for a pooled connection, the answer)
    before Redis counts as down and the host tier decides alone. Short, because a request
    with no leased token waits for it."""


@dataclass(frozen=True, slots=True)
class KeyCacheSettings:
    """How long a key's record is trusted without asking PostgreSQL again."""

    trusted_seconds: float = 60.0
    """``TENANTGATE_KEY_CACHE_TRUSTED_SECONDS``: how long a key's record is trusted while this
    instance provably hears every change announced over Redis pub/sub (its subscription
    answered a ping within the last second; default 60). Otherwise records are trusted one
    second, and the moment that proof lapses every longer-trusted record is cut back to within
    a second. ``1`` keeps one second always (every instance then reads each key's record from
    PostgreSQL about once a second). See :mod:`tenantgate.identity.liveness`."""


@dataclass(frozen=True, slots=True)
class AuditSettings:
    """Sealing the audit chains' heads into the locked audit bucket."""

    seal_interval_seconds: int = 900
    """``TENANTGATE_AUDIT_SEAL_INTERVAL_SECONDS``: how often one instance (whichever takes
    PostgreSQL's advisory lock) seals the chain heads (default 900: every 15 minutes); 0
    turns periodic sealing off (``tenantgate audit seal`` and ``POST /admin/v1/audit/seal``
    still seal on demand). A record written after the last seal can be rewritten unnoticed
    by someone holding the database's superuser: this is how long that window stays open."""

    retention_days: int = 365
    """``TENANTGATE_AUDIT_RETENTION_DAYS``: how long each seal is kept under S3 Object Lock
    in compliance mode (default 365; 1 to 36,500). Nobody — the bucket's owner included —
    can delete or shorten it before then: choose it with care."""


@dataclass(frozen=True, slots=True)
class Settings:
    """The whole configuration of one tenantgate service."""

    database: DatabaseSettings
    """PostgreSQL."""

    redis: RedisSettings
    """Redis."""

    s3: S3Settings
    """The S3-compatible object store."""

    security: SecuritySettings
    """The admin token and the key pepper."""

    limits: LimitsSettings = field(default_factory=LimitsSettings)
    """Request size limits."""

    hsm: HsmSettings | None = None
    """The PKCS#11 token, or ``None`` when no HSM is configured."""

    audit: AuditSettings = field(default_factory=AuditSettings)
    """Sealing the audit log."""

    key_cache: KeyCacheSettings = field(default_factory=KeyCacheSettings)
    """How long key records are trusted."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        """Read every setting from ``environ``.

        Raises:
            SettingsError: a variable is missing or malformed; the message names it.
        """
        env = _Environment(environ)
        return cls(
            database=_database_settings(env),
            redis=_redis_settings(env),
            s3=_s3_settings(env),
            security=SecuritySettings(
                admin_token=_admin_token(env),
                key_pepper=_key_pepper(env),
                trusted_proxies=_trusted_proxies(env),
            ),
            limits=LimitsSettings(
                max_body_bytes=env.positive_int("MAX_BODY_BYTES", default=_MIB),
                max_file_bytes=env.positive_int("MAX_FILE_BYTES", default=100 * _MIB),
                ratelimit_slots=env.positive_int("RATELIMIT_SLOTS", default=65_536),
                shared_memory=env.optional("RATELIMIT_SHM"),
                ratelimit_scope=env.choice(
                    "RATELIMIT_SCOPE", get_args(RateLimitScope), default="host"
                ),
                ratelimit_redis_timeout_seconds=env.positive_seconds(
                    "RATELIMIT_REDIS_TIMEOUT", default=0.1
                ),
            ),
            hsm=_hsm_settings(env),
            audit=AuditSettings(
                seal_interval_seconds=env.bounded_int(
                    "AUDIT_SEAL_INTERVAL_SECONDS", default=900, low=0, high=_MAX_SEAL_INTERVAL
                ),
                retention_days=env.bounded_int(
                    "AUDIT_RETENTION_DAYS", default=365, low=1, high=_MAX_RETENTION_DAYS
                ),
            ),
            key_cache=KeyCacheSettings(
                trusted_seconds=env.positive_seconds("KEY_CACHE_TRUSTED_SECONDS", default=60.0)
            ),
        )


class _Environment:
    """Typed reads of ``TENANTGATE_*`` variables; every error names the variable."""

    __slots__ = ("_environ",)

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def optional(self, name: str) -> str | None:
        """The stripped value, or ``None`` when unset or blank."""
        value = self._environ.get(_ENV_PREFIX + name, "").strip()
        return value or None

    def required(self, name: str) -> str:
        value = self.optional(name)
        if value is None:
            raise SettingsError(f"{_ENV_PREFIX}{name} is not set")
        return value

    def url(self, name: str, *, schemes: tuple[str, ...]) -> str:
        value = self.required(name)
        self._check_url(name, value, schemes=schemes)
        return value

    def optional_url(self, name: str, *, schemes: tuple[str, ...]) -> str | None:
        value = self.optional(name)
        if value is not None:
            self._check_url(name, value, schemes=schemes)
        return value

    def _whole_number(self, name: str, default: int) -> int:
        value = self.optional(name)
        if value is None:
            return default
        try:
            return int(value)
        except ValueError:
            raise self.malformed(name, "must be a whole number") from None

    def positive_int(self, name: str, *, default: int) -> int:
        number = self._whole_number(name, default)
        if number < 1:
            raise self.malformed(name, "must be at least 1")
        return number

    def bounded_int(self, name: str, *, default: int, low: int, high: int) -> int:
        number = self._whole_number(name, default)
        if not low <= number <= high:
            raise self.malformed(name, f"must be from {low} to {high:,}")
        return number

    def positive_seconds(self, name: str, *, default: float) -> float:
        value = self.optional(name)
        if value is None:
            return default
        try:
            seconds = float(value)
        except ValueError:
            raise self.malformed(name, "must be a number of seconds") from None
        if not 0 < seconds <= _MAX_TIMEOUT_SECONDS:
            raise self.malformed(name, f"must be above 0 and at most {_MAX_TIMEOUT_SECONDS:.0f}")
        return seconds

    def choice(self, name: str, choices: tuple[_Choice, ...], *, default: _Choice) -> _Choice:
        value = self.optional(name)
        if value is None:
            return default
        for choice in choices:
            if value.lower() == choice:
                return choice
        raise self.malformed(name, f"must be one of {', '.join(choices)}; got {value!r}")

    def boolean(self, name: str, *, default: bool) -> bool:
        value = self.optional(name)
        if value is None:
            return default
        lowered = value.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise self.malformed(name, f"must be true or false; got {value!r}")

    @staticmethod
    def malformed(name: str, reason: str) -> SettingsError:
        return SettingsError(f"{_ENV_PREFIX}{name} {reason}")

    def _check_url(self, name: str, value: str, *, schemes: tuple[str, ...]) -> None:
        try:
            parts = urlsplit(value)
            _ = parts.port  # raises ValueError for a port that is not a number
        except ValueError:
            raise self.malformed(name, "is not a valid URL") from None
        if parts.scheme not in schemes:
            expected = " or ".join(f"{scheme}://" for scheme in schemes)
            raise self.malformed(name, f"must start with {expected}")
        if parts.scheme != "unix" and not _has_host(parts):
            raise self.malformed(name, "has no host")


def _has_host(parts: SplitResult) -> bool:
    return bool(parts.hostname) or bool(parts.path and parts.scheme.startswith("postgres"))


def _s3_settings(env: _Environment) -> S3Settings:
    access_key_id = env.optional("S3_ACCESS_KEY_ID")
    secret_access_key = env.optional("S3_SECRET_ACCESS_KEY")
    if access_key_id is None and secret_access_key is not None:
        raise SettingsError(
            f"{_ENV_PREFIX}S3_ACCESS_KEY_ID is not set (it is needed with "
            f"{_ENV_PREFIX}S3_SECRET_ACCESS_KEY)"
        )
    if access_key_id is not None and secret_access_key is None:
        raise SettingsError(
            f"{_ENV_PREFIX}S3_SECRET_ACCESS_KEY is not set (it is needed with "
            f"{_ENV_PREFIX}S3_ACCESS_KEY_ID)"
        )
    return S3Settings(
        endpoint_url=env.optional_url("S3_ENDPOINT_URL", schemes=("http", "https")),
        access_key_id=access_key_id,
        secret_access_key=secret_access_key,
        region=env.optional("S3_REGION") or "us-east-1",
        bucket_prefix=_bucket_prefix(env),
    )


def _database_settings(env: _Environment) -> DatabaseSettings:
    schemes = ("postgresql", "postgres")
    url = env.url("DATABASE_URL", schemes=schemes)
    pgbouncer = env.boolean("DATABASE_PGBOUNCER", default=False)
    direct_url = env.optional_url("DATABASE_DIRECT_URL", schemes=schemes)
    if pgbouncer and direct_url is None:
        raise SettingsError(
            f"{_ENV_PREFIX}DATABASE_DIRECT_URL not set: with {_ENV_PREFIX}DATABASE_PGBOUNCER "
            "the provisioning leases and migrations need a connection that bypasses "
            "PgBouncer's transaction pooling"
        )
    return DatabaseSettings(
        url=url,
        pool_max_size=env.positive_int("DATABASE_POOL_SIZE", default=10),
        acquire_timeout_seconds=env.positive_seconds("DATABASE_ACQUIRE_TIMEOUT", default=2.0),
        statement_timeout_seconds=env.positive_seconds("DATABASE_STATEMENT_TIMEOUT", default=10.0),
        pgbouncer=pgbouncer,
        direct_url=direct_url,
    )


def _redis_settings(env: _Environment) -> RedisSettings:
    cluster = env.boolean("REDIS_CLUSTER", default=False)
    isolation = env.choice("REDIS_ISOLATION", get_args(RedisIsolation), default="auto")
    if cluster and isolation == "database":
        raise env.malformed(
            "REDIS_ISOLATION",
            "cannot be `database` on a Redis Cluster (TENANTGATE_REDIS_CLUSTER): a cluster has "
            "database 0 only; use `namespace` or `auto`",
        )
    return RedisSettings(
        url=env.url("REDIS_URL", schemes=("redis", "rediss", "unix")),
        isolation="namespace" if cluster else isolation,
        timeout_seconds=env.positive_seconds("REDIS_TIMEOUT", default=0.5),
        cluster=cluster,
        pool_max_size=env.positive_int("REDIS_POOL_SIZE", default=32),
    )


def _bucket_prefix(env: _Environment) -> str:
    prefix = env.optional("S3_BUCKET_PREFIX") or "tenantgate"
    if not BUCKET_PREFIX_PATTERN.fullmatch(prefix) or "--" in prefix:
        raise env.malformed(
            "S3_BUCKET_PREFIX",
            "must be 1 to 29 lowercase letters, digits and single inner hyphens",
        )
    return prefix


def _admin_token(env: _Environment) -> str:
    token = env.required("ADMIN_TOKEN")
    _check_admin_token(token, f"{_ENV_PREFIX}ADMIN_TOKEN")
    return token


def _check_admin_token(token: str, name: str) -> None:
    if not _ADMIN_TOKEN_PATTERN.fullmatch(token):
        raise SettingsError(f"{name} must be printable ASCII without spaces")
    if len(token) < _MIN_ADMIN_TOKEN_CHARS:
        raise SettingsError(f"{name} must be at least {_MIN_ADMIN_TOKEN_CHARS} characters")


def _trusted_proxies(env: _Environment) -> tuple[IPv4Network | IPv6Network, ...]:
    value = env.optional("TRUSTED_PROXIES")
    if value is None or not value.strip():
        return ()
    networks = []
    for item in value.split(","):
        try:
            networks.append(ip_network(item.strip(), strict=False))
        except ValueError:
            raise env.malformed(
                "TRUSTED_PROXIES", f"must be addresses or CIDRs, comma-separated; got {item!r}"
            ) from None
    return tuple(networks)


def _key_pepper(env: _Environment) -> bytes:
    encoded = env.required("KEY_PEPPER")
    if not _HEX_PATTERN.fullmatch(encoded):
        raise env.malformed("KEY_PEPPER", "must be hex-encoded (e.g. `openssl rand -hex 32`)")
    pepper = bytes.fromhex(encoded)
    if len(pepper) < _MIN_PEPPER_BYTES:
        raise env.malformed(
            "KEY_PEPPER",
            f"must be at least {_MIN_PEPPER_BYTES} bytes ({2 * _MIN_PEPPER_BYTES} hex digits)",
        )
    return pepper


_HSM_VARIABLES = ("PKCS11_LIB", "PKCS11_TOKEN_LABEL", "PKCS11_PIN")


def _hsm_settings(env: _Environment) -> HsmSettings | None:
    values = {name: env.optional(name) for name in _HSM_VARIABLES}
    missing = [name for name, value in values.items() if value is None]
    if len(missing) == len(_HSM_VARIABLES):
        return None
    if missing:
        names = ", ".join(_ENV_PREFIX + name for name in missing)
        raise SettingsError(f"{names} not set: the three PKCS#11 variables go together")
    library_path = Path(env.required("PKCS11_LIB"))
    if not library_path.is_file():
        raise env.malformed("PKCS11_LIB", f"names no file: {str(library_path)!r}")
    return HsmSettings(
        library_path=library_path,
        token_label=env.required("PKCS11_TOKEN_LABEL"),
        pin=env.required("PKCS11_PIN"),
    )
