"""``tenantgate dev``: the service on embedded PostgreSQL, Redis and S3 servers.

This module only orchestrates; :mod:`tenantgate.dev` starts every process and keeps every
secret. In order: start the embedded stack in the data folder; give the service its own
least-privileged PostgreSQL login and database there; migrate; start ``tenantgate serve`` as a
managed child process (own process group, parent-death signal); wait until it answers
``/healthz``; print one JSON line on stdout. Everything else, the child processes' output
included, goes to stderr.

SIGINT or SIGTERM, at any point, stops the server (its whole process group), then the
stack, and the command exits 0. If the server dies on its own, the stack is stopped too and
the command exits 1; a settings error exits 2.

``--pgbouncer`` puts an embedded PgBouncer (transaction pooling) between the service and
PostgreSQL, configured as ``TENANTGATE_DATABASE_PGBOUNCER`` describes; migrations and
provisioning leases keep the direct connection (``TENANTGATE_DATABASE_DIRECT_URL``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Final, TextIO

import httpx

from tenantgate.cli.exit_codes import ExitCode
from tenantgate.cli.serve import add_server_arguments, command_line
from tenantgate.errors import SettingsError, TenantgateError
from tenantgate.settings import Settings

if TYPE_CHECKING:
    from tenantgate.cli import Subcommands
    from tenantgate.dev import Credentials

__all__ = ["DevServerError", "register", "run_dev"]

STARTUP_TIMEOUT_SECONDS: Final = 60.0
STOP_TIMEOUT_SECONDS: Final = 10.0

_STACK_SETTINGS: Final = (
    "TENANTGATE_DATABASE_URL",
    "TENANTGATE_DATABASE_PGBOUNCER",
    "TENANTGATE_DATABASE_DIRECT_URL",
    "TENANTGATE_REDIS_URL",
    "TENANTGATE_S3_",
    "TENANTGATE_PKCS11_",
    "TENANTGATE_ADMIN_TOKEN",
    "TENANTGATE_KEY_PEPPER",
)
"""Settings the development stack decides; other ``TENANTGATE_*`` variables (limits, pool
size, timeouts) pass from our environment to the server."""

_logger = logging.getLogger("tenantgate.dev")


class _StopRequested(BaseException):
    """SIGINT or SIGTERM arrived. A BaseException, so no ``except Exception`` swallows it."""


class DevServerError(TenantgateError):
    """The development server could not be brought up."""


def register(commands: Subcommands) -> None:
    parser = commands.add_parser(
        "dev",
        help="start embedded PostgreSQL, Redis and S3 servers and serve against them",
        description=(
            "Start embedded PostgreSQL, Redis and S3 servers, then serve. When ready, print "
            "one JSON line on stdout; SIGINT (Ctrl-C) or SIGTERM stops everything."
        ),
    )
    add_server_arguments(parser)
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(".tenantgate"),
        help="folder of the embedded servers' data and the generated secrets",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="also create a demo tenant with a key, to try the API at once",
    )
    parser.add_argument(
        "--pgbouncer",
        action="store_true",
        help="serve through an embedded PgBouncer in transaction pooling mode (Debian: pgbouncer)",
    )
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> ExitCode:
    return run_dev(
        host=args.host,
        port=args.port,
        workers=args.workers,
        data_dir=args.data_dir,
        demo=args.demo,
        pgbouncer=args.pgbouncer,
    )


def run_dev(
    *,
    host: str,
    port: int,
    data_dir: Path,
    workers: int = 1,
    demo: bool = False,
    pgbouncer: bool = False,
) -> ExitCode:
    """Run ``tenantgate dev`` until SIGINT or SIGTERM; return the exit status."""
    _log_to_stderr()
    from tenantgate.dev import (
        APP_DATABASE,
        Credentials,
        EmbeddedStack,
        ManagedProcess,
        ServiceSecrets,
        ensure_app_database,
        missing_components,
        wait_until,
    )
    from tenantgate.dev.pgbouncer import EmbeddedPgBouncer, pgbouncer_binary

    missing = missing_components(hsm=False)
    if missing:
        _logger.error(
            "the embedded servers are missing (%s): pip install 'tenantgate[embedded]'",
            ", ".join(missing),
        )
        return ExitCode.FAILURE
    if pgbouncer and pgbouncer_binary() is None:
        _logger.error("--pgbouncer needs PgBouncer: apt-get install pgbouncer")
        return ExitCode.FAILURE
    data_dir = data_dir.resolve()
    with _stdout_kept_for_ready_line() as ready_stream, _stop_on_signals():
        stack = EmbeddedStack(data_dir)
        server: ManagedProcess | None = None
        bouncer: EmbeddedPgBouncer | None = None
        try:
            _logger.info("starting the embedded servers in %s", data_dir)
            info = stack.start()
            service_secrets = ServiceSecrets.load_or_create(data_dir)
            database_url = asyncio.run(
                ensure_app_database(info.postgres_admin_url, service_secrets.postgres_password)
            )
            direct_url = database_url
            if pgbouncer:
                bouncer = EmbeddedPgBouncer(
                    data_dir, admin_url=info.postgres_admin_url, logins=[direct_url]
                )
                bouncer.start()
                database_url = bouncer.url_for(direct_url)
                _logger.info("PgBouncer (transaction pooling) on port %d", bouncer.port)
            service_env = {
                **_tuning_settings(os.environ),
                **info.service_environment(database_url),
                **service_secrets.environment(),
            }
            if pgbouncer:
                service_env |= {
                    "TENANTGATE_DATABASE_PGBOUNCER": "true",
                    "TENANTGATE_DATABASE_DIRECT_URL": direct_url,
                }
            Settings.from_env(service_env)  # one clear message here rather than from the child
            if info.hsm is not None:
                _logger.info(
                    "HSM keys on the SoftHSM2 token %r (%s)",
                    info.hsm.token_label,
                    info.hsm.library_path,
                )
            _migrate(direct_url)

            url = f"http://{_host_for_url(host)}:{port}"
            server = ManagedProcess(
                name="tenantgate serve",
                argv=command_line(host=host, port=port, workers=workers),
                log_path=None,  # its output joins ours on stderr
                env=_inherited(os.environ) | service_env,
                stop_timeout=STOP_TIMEOUT_SECONDS,
                # If we die, granian gets the polite signal and stops its workers itself.
                death_signal=signal.SIGTERM,
            )
            _logger.info("starting the server: %s", " ".join(server.argv[1:]))
            server.start()
            with httpx.Client(timeout=1.0) as client:
                wait_until(
                    lambda: client.get(f"{url}/healthz").raise_for_status(),
                    timeout=STARTUP_TIMEOUT_SECONDS,
                    server=server.name,
                    what=f"{url}/healthz",
                    alive=server.exit_reason,
                )

            ready: dict[str, Any] = {
                "event": "ready",
                "url": url,
                "admin_token": service_secrets.admin_token,
                "database_url": database_url,
                "database_admin_url": stack.postgres.url(APP_DATABASE),
                "redis_url": info.redis_admin_url,
                "s3_endpoint_url": info.s3_endpoint_url,
                "service_env": service_env,
                # The SoftHSM2 token `service_env` points the service at (HSM keys), if any.
                "hsm": (
                    {"library": info.hsm.library_path, "token_label": info.hsm.token_label}
                    if info.hsm is not None
                    else None
                ),
            }
            if demo:
                ready["demo_api_key"] = _demo_key(
                    url, service_secrets.admin_token, Credentials(data_dir)
                )
            ready_stream.write(json.dumps(ready) + "\n")
            ready_stream.flush()  # scripts wait for this line
            if demo:
                _explain_demo(url, service_secrets.admin_token, ready["demo_api_key"])
            _logger.info("serving on %s; stop with Ctrl-C", url)
            status = server.wait()
            _logger.error("the server exited by itself (status %s)", status)
            return ExitCode.FAILURE
        except _StopRequested:
            _logger.info("stopping")
            return ExitCode.OK
        except SettingsError as exc:
            _logger.error("%s", exc)
            return ExitCode.USAGE
        except (TenantgateError, OSError) as exc:  # EmbeddedServerError among them
            _logger.error("%s", exc)
            return ExitCode.FAILURE
        finally:
            with _signals_ignored():
                if server is not None:
                    server.stop()
                if bouncer is not None:
                    bouncer.stop()
                try:
                    stack.stop()
                except Exception:
                    _logger.exception("stopping the embedded servers failed")
                else:
                    _logger.info("stopped")


def _inherited(environ: Mapping[str, str]) -> dict[str, str]:
    """Our environment without its ``TENANTGATE_*`` settings: the server gets ours."""
    return {name: value for name, value in environ.items() if not name.startswith("TENANTGATE_")}


def _tuning_settings(environ: Mapping[str, str]) -> dict[str, str]:
    return {
        name: value
        for name, value in environ.items()
        if name.startswith("TENANTGATE_") and not name.startswith(_STACK_SETTINGS)
    }


def _migrate(database_url: str) -> None:
    from tenantgate.db.fleet import migrate_everything

    report = asyncio.run(migrate_everything(database_url))
    if report.failed:
        raise DevServerError(f"migrating {len(report.failed)} tenant schemas failed")
    _logger.info(
        "migrated: %d tenant schemas up to date, %d migrated now",
        report.up_to_date,
        report.migrated,
    )


def _demo_key(url: str, admin_token: str, credentials: Credentials) -> str:
    """The demo tenant's key: the one kept from an earlier run if it still works, else a new
    tenant `demo` and its first key (kept with the other secrets)."""
    from tenantgate.dev import DEMO_API_KEY

    with httpx.Client(base_url=url, timeout=10.0) as client:
        key = credentials.find(DEMO_API_KEY)
        if key is not None:
            me = client.get("/v1/me", headers={"Authorization": f"Bearer {key}"})
            if me.is_success:
                return key
        answer = client.post(
            "/admin/v1/tenants",
            json={"name": "demo", "plan": "pro"},
            headers={"Authorization": f"Bearer {admin_token}"},
        )
        if answer.status_code != httpx.codes.CREATED:
            raise DevServerError(f"creating the demo tenant failed: {answer.text}")
        key = str(answer.json()["api_key"]["key"])
    credentials.put(DEMO_API_KEY, key)
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

A second server on the same stack: the ready line's service_env, then `tenantgate serve`.
API reference: {url}/schema (OpenAPI: {url}/schema/openapi.json). Stop with Ctrl-C.

"""
    )
    sys.stderr.flush()


def _log_to_stderr() -> None:
    """Our progress messages on stderr; other libraries' logging stays as configured."""
    if not _logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("tenantgate dev: %(message)s"))
        _logger.addHandler(handler)
        _logger.setLevel(logging.INFO)
        _logger.propagate = False


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


def _host_for_url(host: str) -> str:
    if host in ("0.0.0.0", ""):  # noqa: S104 - a wildcard address is not one to connect to
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host
