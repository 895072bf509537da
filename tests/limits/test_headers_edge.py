"""Rate-limit headers stay well-formed for any plan the admin API accepts, down to the slowest
(a bucket that takes 2**56 ns, about 833 days, to refill; slower plans are refused with 422,
see test_plan_changes.py): a window too long for any integer is stated as the longest one."""

from __future__ import annotations

import math
import uuid

import pytest

pytestmark = pytest.mark.servers

LONGEST = 2**31 - 1


SLOWEST_FOR_BURST_2 = 2e9 / 2**56
"""ceil(1e9 / rate) * 2 == 2**56 ns exactly: the slowest rate the admin API accepts at burst 2."""


@pytest.mark.parametrize("rate", [SLOWEST_FOR_BURST_2, 1e-7, 1e-3])
def test_a_nearly_stopped_plan_still_answers_with_integer_headers(
    rate, service, make_tenant, admin_headers
):
    plan = f"crawl-{uuid.uuid4().hex[:8]}"
    body = {"rate_per_second": rate, "burst": 2}
    made = service.put(f"/admin/v1/plans/{plan}", json=body, headers=admin_headers)
    assert made.status_code == 200, made.text
    tenant = make_tenant(plan=plan)

    first = service.get("/v1/me", headers=tenant.headers)
    assert first.status_code == 200, first.text
    window = int(first.headers["ratelimit-policy"].rsplit("w=", 1)[1])
    assert window == (LONGEST if 2 / rate > LONGEST else math.ceil(2 / rate))
    assert int(first.headers["ratelimit-reset"]) <= LONGEST

    service.get("/v1/me", headers=tenant.headers)
    refused = service.get("/v1/me", headers=tenant.headers)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= LONGEST
