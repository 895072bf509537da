"""The OpenAPI document tells the truth: schemathesis, all checks, finds no failure.

A bounded run (few examples per operation) of what `make fuzz-api` runs unbounded: against
`tenantgate serve` (granian, on a free port) on the session's stack, as a client would, the
tenant API with a fresh tenant's key, the operator API with the admin token, and the service
endpoints (see `fuzz_api.py`). The admin run changes plans; the built-in ones are put back.
"""

from __future__ import annotations

import re

import pytest
from fuzz_api import create_tenant, restore_built_in_plans, run_schemathesis

pytestmark = pytest.mark.servers

MAX_EXAMPLES = 10
"""Test cases per operation and phase: the whole test takes well under 90 s."""


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
