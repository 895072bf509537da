"""A revocation reaches every instance: at once through Redis pub/sub, even where the key's
record is trusted for a minute (the subscription provably live); and, with Redis stopped or
hung, within about two seconds, because records then fall back to the one-second TTL (the
backstop). An announcement Redis did not take is sent again once Redis is back."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import pytest
from litestar.testing import TestClient

from tenantgate.app import create_app
from tenantgate.plugin import TenantGatePlugin
from tenantgate.settings import Settings

pytestmark = pytest.mark.servers

LOST_SUBSCRIPTION_BOUND = 6.0
"""Generous: the design's bound is about 2.25 s (a second's window, a ping interval, a second's
TTL), far below the minute a record is trusted while the subscription is live."""


def _refused_within(client: Any, headers: dict[str, str], seconds: float) -> float:
    """Seconds until ``client`` refuses ``headers``' key (fails after ``seconds``); a 429
    means the key is still accepted (and over its plan's rate)."""
    started = time.monotonic()
    while (answer := client.get("/v1/me", headers=headers)).status_code in (200, 429):
        assert time.monotonic() - started < seconds, "the revoked key is still accepted"
        time.sleep(0.05)
    assert answer.status_code == 403, answer.text
    return time.monotonic() - started


def _until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def _instances(
    environ: dict[str, str], count: int = 2
) -> tuple[ExitStack, list[Any], list[TenantGatePlugin]]:
    """``count`` running instances, each trusting key records for a minute while live."""
    settings = Settings.from_env({**environ, "TENANTGATE_KEY_CACHE_TRUSTED_SECONDS": "60"})
    stack = ExitStack()
    plugins = [TenantGatePlugin(settings) for _ in range(count)]
    clients = [stack.enter_context(TestClient(create_app(plugin=p))) for p in plugins]
    return stack, clients, plugins


def _trusted_for_a_minute(client: Any, plugin: TenantGatePlugin, headers: dict[str, str]) -> None:
    """Use the key on ``client`` once its subscription is live, so its record is trusted long."""
    liveness = plugin.identity.liveness
    _until(liveness.proven, 10.0, "the announcements subscription never became live")
    trusted = plugin.identity.keys.trusted_inserts
    assert client.get("/v1/me", headers=headers).status_code == 200
    assert plugin.identity.keys.trusted_inserts == trusted + 1, "the record is trusted long"


def test_a_revocation_is_announced_to_the_other_instances(
    service_environment: dict[str, str], make_tenant: Any, admin_headers: dict[str, str]
) -> None:
    tenant = make_tenant()
    stack, (revoker, other), (_, other_plugin) = _instances(service_environment)
    with stack:
        _trusted_for_a_minute(other, other_plugin, tenant.headers)
        revoked = revoker.delete(
            f"/admin/v1/tenants/{tenant.id}/keys/{tenant.key_id}", headers=admin_headers
        )
        assert revoked.status_code == 204
        _refused_within(other, tenant.headers, seconds=5.0)
        assert other_plugin.identity.liveness.losses == 0, "pub/sub did it, not a lapse"


def test_a_suspension_is_announced_too(
    service_environment: dict[str, str], make_tenant: Any, admin_headers: dict[str, str]
) -> None:
    tenant = make_tenant()
    stack, (operator, other), (_, other_plugin) = _instances(service_environment)
    with stack:
        _trusted_for_a_minute(other, other_plugin, tenant.headers)
        suspended = operator.patch(
            f"/admin/v1/tenants/{tenant.id}", json={"status": "suspended"}, headers=admin_headers
        )
        assert suspended.status_code == 200, suspended.text
        _refused_within(other, tenant.headers, seconds=5.0)
        assert other_plugin.identity.liveness.losses == 0


@pytest.mark.parametrize("outage", ["stopped", "hung"])
def test_without_redis_records_fall_back_to_the_short_ttl(
    service_environment: dict[str, str],
    make_tenant: Any,
    admin_headers: dict[str, str],
    own_redis: Any,
    outage: str,
) -> None:
    """Stopped: the subscription fails. Hung (SIGSTOP): nothing fails, only the pongs stop
    coming, which is what the liveness proof is for. Either way the minute-long records are cut
    back, the revocation applies within the backstop, and the announcement Redis missed is
    sent once it is back."""
    redis_server = own_redis()
    environ = {**service_environment, "TENANTGATE_REDIS_URL": redis_server.service_url}
    tenant = make_tenant()
    stack, (revoker, other), (revoker_plugin, other_plugin) = _instances(environ)
    with stack:
        _trusted_for_a_minute(other, other_plugin, tenant.headers)
        pid = redis_server.pid
        if outage == "stopped":
            redis_server.stop()
        else:
            os.kill(pid, signal.SIGSTOP)
        try:
            revoked = revoker.delete(
                f"/admin/v1/tenants/{tenant.id}/keys/{tenant.key_id}", headers=admin_headers
            )
            assert revoked.status_code == 204, "the revocation is committed: it succeeds"
            announcer = revoker_plugin.announcer
            assert announcer is not None
            assert announcer.unsent == 1, "kept for later"
            _refused_within(other, tenant.headers, seconds=LOST_SUBSCRIPTION_BOUND)
            assert other_plugin.identity.liveness.losses >= 1
        finally:
            if outage == "stopped":
                redis_server.start()
            else:
                os.kill(pid, signal.SIGCONT)
        _until(lambda: announcer.unsent == 0, 10.0, "the kept announcement was never sent")
