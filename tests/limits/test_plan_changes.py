"""A changed plan applies in full on the next request: a raised plan refuses nothing the new
plan would allow, a lowered one applies at once; plans the arithmetic cannot hold exactly
are refused."""

from __future__ import annotations

import mmap
import os
import time
import uuid

import pytest

from tenantgate._native import Limiter, ManualClock, Quota


def _limiters(clock: ManualClock) -> list[Limiter]:
    fd = os.memfd_create("tenantgate-test")
    size = Limiter.shared_size(100)
    os.ftruncate(fd, size)
    shared = Limiter.shared(mmap.mmap(fd, size), clock=clock)
    os.close(fd)
    return [Limiter(clock=clock), shared]


@pytest.mark.parametrize("store", ["heap", "shared"])
def test_a_raised_plan_forgives_the_old_plans_debt(store: str):
    clock = ManualClock()
    limiter = _limiters(clock)[store == "shared"]
    plan = Quota(1.0, 3)
    assert [limiter.try_acquire("t", plan).allowed for _ in range(4)] == [True] * 3 + [False]
    clock.advance(1.2)
    plan.update(1000.0, 1000)
    assert all(limiter.try_acquire("t", plan).allowed for _ in range(50))
    assert limiter.try_acquire("t", plan, 0).remaining == 950
    assert limiter.try_acquire("t", plan, 950).allowed
    refused = limiter.try_acquire("t", plan)
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(0.001)
    clock.advance(0.001)
    assert limiter.try_acquire("t", plan).allowed


@pytest.mark.parametrize("store", ["heap", "shared"])
def test_a_lowered_plan_applies_at_once(store: str):
    clock = ManualClock()
    limiter = _limiters(clock)[store == "shared"]
    plan = Quota(10.0, 20)
    assert limiter.try_acquire("t", plan, 8).allowed
    plan.update(1.0, 5)
    refused = limiter.try_acquire("t", plan)
    assert not refused.allowed, "8 tokens are owed, more than the new burst"
    assert (refused.limit, refused.remaining) == (5, 0)
    assert refused.retry_after == pytest.approx(1.0)
    clock.advance(0.999_999_999)
    assert not limiter.try_acquire("t", plan).allowed
    clock.advance(0.000_000_001)
    assert limiter.try_acquire("t", plan).allowed
    assert not limiter.try_acquire("t", plan).allowed
    clock.advance(5.0)
    assert limiter.try_acquire("t", plan, 5).allowed
    assert not limiter.try_acquire("t", plan, 1).allowed, "the new burst, exactly"


@pytest.mark.parametrize("store", ["heap", "shared"])
def test_a_slower_rate_keeps_the_tokens_used_owed(store: str):
    clock = ManualClock()
    limiter = _limiters(clock)[store == "shared"]
    plan = Quota(10.0, 5)
    assert limiter.try_acquire("t", plan, 2).allowed
    plan.update(2.0, 5)
    report = limiter.try_acquire("t", plan, 0)
    assert (report.remaining, report.reset_after) == (3, pytest.approx(1.0))
    clock.advance(0.5)
    assert limiter.try_acquire("t", plan, 0).remaining == 4


@pytest.mark.servers
def test_after_a_raise_the_exhausted_tenant_gets_what_the_new_plan_allows(
    service, make_tenant, admin_headers
):
    """The issue's case: 1/s burst 3, exhausted, raised to 1000/s burst 1000; 1.2 s later
    50 requests are all answered 200 (before: 5 to 11 of them 429)."""
    name = f"raise-{uuid.uuid4().hex[:8]}"

    def put(rate: float, burst: int) -> None:
        answer = service.put(
            f"/admin/v1/plans/{name}",
            json={"rate_per_second": rate, "burst": burst},
            headers=admin_headers,
        )
        assert answer.status_code == 200, answer.text

    put(1.0, 3)
    tenant = make_tenant(plan=name)
    statuses = [service.get("/v1/me", headers=tenant.headers).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    put(1000.0, 1000)
    time.sleep(1.2)
    statuses = [service.get("/v1/me", headers=tenant.headers).status_code for _ in range(50)]
    assert statuses == [200] * 50


@pytest.mark.servers
def test_after_a_cut_the_tokens_used_are_owed_at_the_new_rate(service, make_tenant, admin_headers):
    """1/s burst 10, 6 used, cut to 0.5/s burst 5: the 6 tokens are owed at 2 s each, more
    than the new burst, so the next request is refused (a cut that only capped the old 6 s
    of debt would have left 2 tokens)."""
    name = f"cut-{uuid.uuid4().hex[:8]}"

    def put(rate: float, burst: int) -> None:
        answer = service.put(
            f"/admin/v1/plans/{name}",
            json={"rate_per_second": rate, "burst": burst},
            headers=admin_headers,
        )
        assert answer.status_code == 200, answer.text

    put(1.0, 10)
    tenant = make_tenant(plan=name)
    assert all(service.get("/v1/me", headers=tenant.headers).status_code == 200 for _ in range(6))
    put(0.5, 5)
    refused = service.get("/v1/me", headers=tenant.headers)
    assert refused.status_code == 429
    assert refused.headers["ratelimit-limit"] == "5"
    assert int(refused.headers["retry-after"]) >= 1


@pytest.mark.servers
@pytest.mark.parametrize(
    "body",
    [
        {"rate_per_second": 5e-324, "burst": 2},
        {"rate_per_second": 1e-300, "burst": 2},
        {"rate_per_second": 1e-9, "burst": 2},
        {"rate_per_second": 1e-8, "burst": 1},
        {"rate_per_second": 0.001, "burst": 100_000_000},
        {"rate_per_second": 0, "burst": 1},
        {"rate_per_second": 1e9, "burst": 1},
    ],
)
def test_plans_the_arithmetic_cannot_hold_exactly_are_refused(service, admin_headers, body):
    answer = service.put(
        f"/admin/v1/plans/edge-{uuid.uuid4().hex[:8]}", json=body, headers=admin_headers
    )
    assert answer.status_code == 422, answer.text


@pytest.mark.servers
def test_the_slowest_plan_the_arithmetic_holds_is_accepted(service, admin_headers):
    # One request per 2**56 ns, burst 1: exactly at the bound.
    body = {"rate_per_second": 1e9 / 2**56, "burst": 1}
    answer = service.put(
        f"/admin/v1/plans/edge-{uuid.uuid4().hex[:8]}", json=body, headers=admin_headers
    )
    assert answer.status_code == 200, answer.text
