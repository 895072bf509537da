"""A plan changed through one instance applies on every instance: a client alternating between
two service instances is held to the new plan on both, raised or lowered, within the second the
contract allows."""

from __future__ import annotations

import itertools
import time
import uuid
from contextlib import ExitStack
from typing import Any

import pytest
from litestar.testing import TestClient

from tenantgate.app import create_app
from tenantgate.settings import Settings

pytestmark = pytest.mark.servers


def _alternating(stack: ExitStack, environ: dict[str, str]) -> list[Any]:
    return [stack.enter_context(TestClient(create_app(Settings.from_env(environ)))) for _ in "ab"]


def _allowed(clients: list[Any], headers: dict[str, str], requests: int) -> int:
    """How many of ``requests`` requests, sent alternately to the instances, were allowed."""
    answers = [
        client.get("/v1/me", headers=headers).status_code
        for client, _ in zip(itertools.cycle(clients), range(requests), strict=False)
    ]
    assert set(answers) <= {200, 429}
    return answers.count(200)


def _until(condition: Any, seconds: float = 3.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the plan change did not reach both instances"
        time.sleep(0.1)


def test_a_plan_raised_and_lowered_through_one_instance_holds_on_both(
    service_environment: dict[str, str],
    service: Any,
    make_tenant: Any,
    admin_headers: dict[str, str],
) -> None:
    plan = f"alt-{uuid.uuid4().hex[:8]}"
    put = service.put(
        f"/admin/v1/plans/{plan}", json={"rate_per_second": 0.01, "burst": 2}, headers=admin_headers
    )
    assert put.status_code == 200, put.text
    tenant = make_tenant(plan=plan)
    with ExitStack() as stack:
        first, second = clients = _alternating(stack, service_environment)
        # Each instance keeps its own buckets (host scope): burst 2 each, nearly no refill.
        assert _allowed(clients, tenant.headers, 8) == 4

        raised = first.put(
            f"/admin/v1/plans/{plan}",
            json={"rate_per_second": 1000, "burst": 1000},
            headers=admin_headers,
        )
        assert raised.status_code == 200, raised.text
        _until(lambda: _allowed(clients, tenant.headers, 40) == 40)

        lowered = second.put(
            f"/admin/v1/plans/{plan}",
            json={"rate_per_second": 0.01, "burst": 1},
            headers=admin_headers,
        )
        assert lowered.status_code == 200, lowered.text
        # After the cut, each instance allows at most its new burst, then refuses.
        _until(lambda: _allowed(clients, tenant.headers, 20) <= 2)
        assert _allowed(clients, tenant.headers, 20) == 0
