"""Liveness and readiness.

``GET /healthz`` answers as long as the process serves requests. ``GET /readyz`` asks
PostgreSQL (``SELECT 1``), Redis (``PING``) and S3 (``ListBuckets``) at once, each with a
short timeout, and answers 200 only when all three answered; otherwise 503 with
``Retry-After: 1``, as problem+json whose ``checks`` member says which one failed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any, Final

from litestar import Response, get
from litestar.di import NamedDependency

from tenantgate.cache import ping as ping_redis
from tenantgate.db import ping as ping_postgres
from tenantgate.http.openapi import problems
from tenantgate.http.problems import problem_response
from tenantgate.resources import Resources
from tenantgate.storage import ping as ping_s3

__all__ = ["CHECK_TIMEOUT_SECONDS", "healthz", "readyz"]

CHECK_TIMEOUT_SECONDS: Final = 2.0
"""How long each readiness check may take before its service counts as unavailable."""

_logger = logging.getLogger("tenantgate.health")


@get("/healthz", sync_to_thread=False, tags=["service"])
def healthz() -> dict[str, str]:
    """The process is alive and serving."""
    return {"status": "ok"}


@get("/readyz", tags=["service"], responses=problems(503))
async def readyz(resources: NamedDependency[Resources]) -> Response[dict[str, Any]]:
    """PostgreSQL, Redis and S3 all answer (200), or which of them does not (503)."""
    names = ("postgres", "redis", "s3")
    outcomes = await asyncio.gather(
        _check("postgres", lambda: ping_postgres(resources.database)),
        _check("redis", lambda: ping_redis(resources.redis)),
        _check("s3", lambda: ping_s3(resources.s3)),
    )
    checks = dict(zip(names, outcomes, strict=True))
    if all(outcome == "ok" for outcome in outcomes):
        return Response({"status": "ready", "checks": checks})
    failed = ", ".join(name for name, outcome in checks.items() if outcome != "ok")
    response = problem_response(
        HTTPStatus.SERVICE_UNAVAILABLE, f"unavailable: {failed}", {"Retry-After": "1"}
    )
    response.content["checks"] = checks
    return response


async def _check(name: str, ping: Callable[[], Awaitable[object]]) -> str:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            await ping()
    except Exception as exc:  # any failure at all means "not ready"
        _logger.warning("readiness: %s is unavailable: %r", name, exc)
        return "unavailable"
    return "ok"
