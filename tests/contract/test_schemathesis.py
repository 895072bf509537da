"""The OpenAPI document tells the truth: schemathesis, all checks, finds no failure.

A bounded run (few examples per operation) of what `make fuzz-api` runs unbounded: against
`tenantgate serve` (granian, on a free port) on the session's stack, as a client would, the
tenant API with a fresh tenant's key, the operator API with the admin token, and the service
endpoints (see `fuzz_api.py`). The admin run changes plans; the built-in ones are put back.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest
from fuzz_api import create_tenant, restore_built_in_plans, run_schemathesis

from tenantgate.dev.ports import free_port

pytestmark = pytest.mark.servers

MAX_EXAMPLES = 10
"""Test cases per operation and phase: the whole test takes well under 90 s."""


@pytest.fixture
def served(service_environment):
    """`tenantgate serve` (granian, one worker) on the session's stack."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tenantgate", "serve", "--port", str(port)],
        env={**os.environ, **service_environment},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, "the server exited during start-up"
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def test_schemathesis_finds_no_failure(served, service_environment):
    admin_token = service_environment["TENANTGATE_ADMIN_TOKEN"]
    tenant_key = create_tenant(served, admin_token)
    try:
        runs = run_schemathesis(
            served,
            admin_token=admin_token,
            tenant_key=tenant_key,
            max_examples=MAX_EXAMPLES,
            timeout=240,
        )
    finally:
        restore_built_in_plans(served, admin_token)

    assert [run.name for run in runs] == ["tenant API", "admin API", "service endpoints"]
    failed = [run for run in runs if not run.passed]
    if failed:
        pytest.fail("\n\n".join(run.report() for run in failed), pytrace=False)
    # Each run tested something: a run that selects no operation would pass vacuously.
    for run in runs:
        tested = re.search(r"Tested: (\d+)", run.output)
        assert tested is not None, run.report()
        assert int(tested.group(1)) > 0, run.report()
