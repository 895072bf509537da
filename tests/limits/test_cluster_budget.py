"""One budget per tenant across instances sharing a Redis (``TENANTGATE_RATELIMIT_SCOPE=
cluster``): the lease script's arithmetic under a driven clock, leases shared by two
instances' budgets, and two real service instances — sharing one budget, each keeping its
host budget while Redis is stopped, and sharing again once it is back."""

from __future__ import annotations

import asyncio
import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest
import redis.asyncio

from tenantgate.cache.leases import take_tokens
from tenantgate.cluster_limits import ClusterBudget, lease_size
from tenantgate.dev.ports import free_port
from tenantgate.dev.redis import EmbeddedRedis
from tenantgate.errors import SettingsError
from tenantgate.limits import Quota
from tenantgate.settings import Settings

pytestmark = pytest.mark.servers

SECOND = 1_000_000  # µs


@pytest.fixture
def lease_redis(tmp_path: Any) -> Iterator[EmbeddedRedis]:
    """A Redis of the test's own on a fixed port (so it can be stopped and started again
    where the instances look for it)."""
    server = EmbeddedRedis(tmp_path / "redis", port=free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


async def _take(url: str, bucket: str, rate: float, burst: int, want: int, now_us: int) -> Any:
    client = redis.asyncio.Redis.from_url(url)
    try:
        return await take_tokens(
            client, bucket, rate_per_second=rate, burst=burst, want=want, now_us=now_us
        )
    finally:
        await client.aclose()


def test_the_lease_script_takes_what_the_bucket_holds_under_a_driven_clock(lease_redis):
    url, bucket, t0 = lease_redis.service_url, str(uuid.uuid4()), 1_700_000_000 * SECOND

    def take(want: int, at: int, rate: float = 10.0, burst: int = 10) -> tuple[int, float]:
        grant = _run(_take(url, bucket, rate, burst, want, t0 + at))
        return grant.tokens, grant.retry_after

    assert [take(4, 0), take(4, 0), take(4, 0)] == [(4, 0.0), (4, 0.0), (2, 0.0)]
    assert take(1, 0) == (0, pytest.approx(0.1)), "empty: a token in one interval"
    assert take(5, SECOND // 10 - 1) == (0, pytest.approx(1e-6)), "not a microsecond early"
    assert take(5, SECOND // 10) == (1, 0.0), "one token back after exactly 1/rate"
    assert take(5, 2 * SECOND) == (5, 0.0), "a refilled bucket gives the whole lease"
    with lease_redis.client() as admin:
        ttl = admin.pttl(f"tg:rl:{{{bucket}}}")
    assert 0 < ttl <= 2_000, "the key goes once the bucket is full again (plus a second)"


def test_a_raised_plan_forgives_the_old_debt_and_a_cut_one_keeps_it(lease_redis):
    url, t0 = lease_redis.service_url, 1_700_000_000 * SECOND
    raised, cut = str(uuid.uuid4()), str(uuid.uuid4())

    def take(bucket: str, rate: float, burst: int, want: int, at: int = 0) -> tuple[int, float]:
        grant = _run(_take(url, bucket, rate, burst, want, t0 + at))
        return grant.tokens, grant.retry_after

    assert take(raised, 1.0, 3, 10) == (3, 0.0)
    assert take(raised, 1.0, 3, 1)[0] == 0
    assert take(raised, 1000.0, 1000, 1000) == (1000, 0.0), "the new plan's whole burst at once"

    assert take(cut, 10.0, 10, 10) == (10, 0.0)  # 1 s of debt at 10/s
    # At 1/s the 10 tokens owed are 10 s of debt, capped at the new tolerance (5 s).
    assert take(cut, 1.0, 5, 1) == (0, pytest.approx(1.0))
    assert take(cut, 1.0, 5, 1, at=SECOND) == (1, 0.0)


def test_two_budgets_leasing_from_one_redis_never_over_grant(lease_redis):
    """Two instances' cluster tiers, time nearly frozen (1 token a day): together they allow
    at most the burst, and at least the burst less what they hold unused."""
    burst = 128
    quota = Quota(1 / 86_400, burst)
    tenant = str(uuid.uuid4())

    async def spend() -> tuple[int, list[ClusterBudget]]:
        budgets = [ClusterBudget(), ClusterBudget()]
        clients = [redis.asyncio.Redis.from_url(lease_redis.service_url) for _ in budgets]
        for budget, client in zip(budgets, clients, strict=True):
            budget.attach(client)
        allowed = 0
        for _ in range(burst):
            for budget in budgets:
                allowed += await budget.admit(tenant, quota, "test") is None
        for budget, client in zip(budgets, clients, strict=True):
            await budget.close()
            await client.aclose()
        return allowed, budgets

    allowed, budgets = _run(spend())
    held_at_most = 2 * (lease_size(burst) + lease_size(burst) // 2)
    assert burst - held_at_most <= allowed <= burst, allowed
    assert not any(budget.fallback_decisions for budget in budgets)
    trips = sum(budget.round_trips for budget in budgets)
    assert trips <= allowed // lease_size(burst) + 8, "a round trip per lease, not per request"


def test_a_refused_tenant_costs_no_round_trip_until_the_bucket_can_give_a_token(lease_redis):
    """Time of the budget driven (Redis keeps its own): once Redis says the bucket is empty
    for ~1 s, requests within that second are refused without asking it again."""
    now = [100.0]
    quota, tenant = Quota(1.0, 1), str(uuid.uuid4())

    async def run() -> tuple[list[float | None], int]:
        budget = ClusterBudget(clock=lambda: now[0])
        client = redis.asyncio.Redis.from_url(lease_redis.service_url)
        budget.attach(client)
        answers = [await budget.admit(tenant, quota, "free") for _ in range(2)]
        trips = budget.round_trips
        now[0] += 0.5
        answers += [await budget.admit(tenant, quota, "free") for _ in range(50)]
        assert budget.round_trips == trips, "no round trip while the bucket is known empty"
        await budget.close()
        await client.aclose()
        return answers, trips

    answers, trips = _run(run())
    assert answers[0] is None, "the burst's one token"
    assert answers[1] == pytest.approx(1.0, abs=0.05), "refused: a token in a second"
    assert all(a == pytest.approx(0.5, abs=0.05) for a in answers[2:]), answers[2:4]
    assert trips == 2


def test_without_redis_the_host_tier_decides_and_it_is_counted():
    async def admit() -> tuple[list[float | None], ClusterBudget]:
        budget = ClusterBudget()
        dead = redis.asyncio.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")
        budget.attach(dead)
        answers = [await budget.admit(str(uuid.uuid4()), Quota(1.0, 1), "free") for _ in range(3)]
        await budget.close()
        await dead.aclose()
        return answers, budget

    answers, budget = _run(admit())
    assert answers == [None, None, None], "the host tier's allowance stands"
    assert budget.fallback_decisions == {"free": 3}


SETTINGS_ENVIRON = {
    "TENANTGATE_DATABASE_URL": "postgresql://tenantgate:secret@db.internal:5432/tenantgate",
    "TENANTGATE_REDIS_URL": "redis://:secret@cache.internal:6379/0",
    "TENANTGATE_ADMIN_TOKEN": "an-admin-token-of-32-characters!",
    "TENANTGATE_KEY_PEPPER": "00112233445566778899aabbccddeeff",
}


def test_the_scope_defaults_to_host_and_a_malformed_one_is_named():
    assert Settings.from_env(SETTINGS_ENVIRON).limits.ratelimit_scope == "host"
    cluster = SETTINGS_ENVIRON | {"TENANTGATE_RATELIMIT_SCOPE": "Cluster"}
    assert Settings.from_env(cluster).limits.ratelimit_scope == "cluster"
    with pytest.raises(SettingsError, match="TENANTGATE_RATELIMIT_SCOPE"):
        Settings.from_env(SETTINGS_ENVIRON | {"TENANTGATE_RATELIMIT_SCOPE": "global"})
    assert Settings.from_env(SETTINGS_ENVIRON).limits.ratelimit_redis_timeout_seconds == 0.1
    with pytest.raises(SettingsError, match="TENANTGATE_RATELIMIT_REDIS_TIMEOUT"):
        Settings.from_env(SETTINGS_ENVIRON | {"TENANTGATE_RATELIMIT_REDIS_TIMEOUT": "0"})


RATE, BURST = 10.0, 20  # the `free` plan


def _hammer(urls: list[str], headers: dict[str, str], seconds: float) -> dict[str, Any]:
    """4 clients per instance for ``seconds``: statuses per instance, and the time between
    the first request sent and the last answered."""
    log: list[tuple[str, float, float, int]] = []
    lock = threading.Lock()
    clients = [url for url in urls for _ in range(4)]
    start = threading.Barrier(len(clients))

    def client(url: str) -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=10) as http:
            mine = []
            start.wait()
            deadline = time.monotonic() + seconds
            while (sent := time.monotonic()) < deadline:
                status = http.get("/v1/me").status_code
                mine.append((url, sent, time.monotonic(), status))
            with lock:
                log.extend(mine)

    threads = [threading.Thread(target=client, args=(url,)) for url in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = {url: [status for u, _, _, status in log if u == url] for url in urls}
    elapsed = max(answered for _, _, answered, _ in log) - min(sent for _, sent, _, _ in log)
    return {"statuses": statuses, "elapsed": elapsed}


def _fallback_decisions(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    found = re.findall(
        r'^tenantgate_ratelimit_fallback_decisions_total\{plan="free"\} (\S+)$', text, re.MULTILINE
    )
    return float(found[0]) if found else 0.0


def test_two_instances_share_one_budget_and_keep_their_own_while_redis_is_down(
    serve_tenantgate, service_environment, make_tenant, lease_redis
):
    tenant = make_tenant(plan="free")
    environ = service_environment | {
        "TENANTGATE_REDIS_URL": lease_redis.service_url,
        "TENANTGATE_RATELIMIT_SCOPE": "cluster",
        # Generous on a shared CI box (a stopped Redis refuses connections at once anyway):
        # the phases that share one budget must not fall back because the box was busy.
        "TENANTGATE_RATELIMIT_REDIS_TIMEOUT": "1.0",
    }
    with ExitStack() as stack:
        urls = [stack.enter_context(serve_tenantgate(environ)) for _ in range(2)]

        shared = _hammer(urls, tenant.headers, seconds=2.5)
        allowed = sum(s.count(200) for s in shared["statuses"].values())
        budget = BURST + RATE * shared["elapsed"]
        assert all(set(s) <= {200, 429} for s in shared["statuses"].values())
        assert all(s.count(200) for s in shared["statuses"].values()), "both served"
        assert abs(allowed - budget) <= 0.1 * budget, (allowed, budget)
        assert [_fallback_decisions(url) for url in urls] == [0.0, 0.0]

        lease_redis.stop()
        alone = _hammer(urls, tenant.headers, seconds=1.5)
        one_host = BURST + RATE * alone["elapsed"]
        for url, statuses in alone["statuses"].items():
            assert set(statuses) <= {200, 429}, "limits still apply, never a 5xx"
            assert statuses.count(429), "each instance still limits on its own"
            assert 0 < statuses.count(200) <= 1.1 * one_host, (url, statuses.count(200))
            assert _fallback_decisions(url) > 0, "decisions in fallback are counted"
        counted = [_fallback_decisions(url) for url in urls]

        lease_redis.start()  # the same port, empty: a fresh bucket
        time.sleep(1.5)  # past the retry pause; the host buckets refill meanwhile
        again = _hammer(urls, tenant.headers, seconds=2.5)
        allowed = sum(s.count(200) for s in again["statuses"].values())
        budget = BURST + RATE * again["elapsed"]
        assert abs(allowed - budget) <= 0.1 * budget, ("one budget again", allowed, budget)
        assert [_fallback_decisions(url) for url in urls] == counted, "Redis decides again"


def test_a_raised_plan_refuses_nothing_the_new_plan_allows_in_cluster_scope(
    service_environment, service, make_tenant, admin_headers
):
    """The issue's case in the cluster scope: 1/s burst 3, exhausted, raised to 1000/s burst
    1000; 1.2 s later (plans reload within a second) 50 requests are all answered 200 — the
    Redis bucket forgives the old plan's debt as the host tier does."""
    from litestar.testing import TestClient

    from tenantgate.app import create_app

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
    cluster = Settings.from_env(service_environment | {"TENANTGATE_RATELIMIT_SCOPE": "cluster"})
    with TestClient(create_app(cluster)) as instance:
        statuses = [instance.get("/v1/me", headers=tenant.headers).status_code for _ in range(5)]
        assert statuses == [200, 200, 200, 429, 429]
        put(1000.0, 1000)
        time.sleep(1.2)
        statuses = [instance.get("/v1/me", headers=tenant.headers).status_code for _ in range(50)]
        assert statuses == [200] * 50
        metrics = instance.get("/metrics").text
    trips = re.search(r"^tenantgate_ratelimit_lease_round_trips_total (\S+)$", metrics, re.M)
    assert trips is not None
    assert 3 <= float(trips.group(1)) < 55, "leases: fewer round trips than requests"
    assert "tenantgate_ratelimit_fallback_decisions_total{" not in metrics, "Redis answered"
