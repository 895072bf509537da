"""The cluster rate-limit tier against the embedded Redis (``make bench`` runs this after the
micro benches; the local spend is ``limit.cluster_lease.spend`` in test_bench_core.py)::

    python benches/cluster_leases.py

- **refill**: one lease round trip (``take_tokens``: the Lua script, as the service's ACL
  user), ``ROUND_TRIPS`` times one after another; p50 and p99.
- **two instances**: two ``ClusterBudget`` over one Redis, each request offered to them in
  turn as fast as one event loop goes, for ``SECONDS`` per plan: how many round trips a request
  cost, and what was allowed against the budget ``burst + rate * elapsed``.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import redis.asyncio

from tenantgate.cache.leases import take_tokens
from tenantgate.cluster_limits import ClusterBudget, lease_size
from tenantgate.dev import EmbeddedRedis
from tenantgate.limits import Quota

ROUND_TRIPS = 5_000
SECONDS = 2.0
PLANS = [(10.0, 20), (100.0, 200), (1000.0, 1000), (5000.0, 10_000)]


async def refill_round_trip(url: str) -> tuple[float, float]:
    client = redis.asyncio.Redis.from_url(url)
    bucket = str(uuid.uuid4())
    times = []
    for _ in range(ROUND_TRIPS):
        started = time.perf_counter()
        await take_tokens(client, bucket, rate_per_second=1e6, burst=1_000_000, want=31)
        times.append(time.perf_counter() - started)
    await client.aclose()
    times.sort()
    return statistics.median(times) * 1e6, times[int(len(times) * 0.99)] * 1e6


async def two_instances(url: str, rate: float, burst: int) -> dict[str, float]:
    clients = [redis.asyncio.Redis.from_url(url) for _ in range(2)]
    budgets = [ClusterBudget(), ClusterBudget()]
    for budget, client in zip(budgets, clients, strict=True):
        budget.attach(client)
    quota, tenant = Quota(rate, burst), str(uuid.uuid4())
    offered = allowed = 0
    started = time.monotonic()
    while time.monotonic() - started < SECONDS:
        for budget in budgets:
            offered += 1
            allowed += await budget.admit(tenant, quota, "bench") is None
    elapsed = time.monotonic() - started
    trips = sum(budget.round_trips for budget in budgets)
    for budget, client in zip(budgets, clients, strict=True):
        await budget.close()
        await client.aclose()
    budget_tokens = burst + rate * elapsed
    return {
        "offered": offered,
        "allowed": allowed,
        "budget": budget_tokens,
        "trips_per_allowed": trips / max(allowed, 1),
        "trips_per_request": trips / offered,
    }


def main() -> int:
    with tempfile.TemporaryDirectory() as folder:
        server = EmbeddedRedis(Path(folder))
        server.start()
        try:
            p50, p99 = asyncio.run(refill_round_trip(server.service_url))
            print(f"Lease refill round trip (Lua, loopback): p50 {p50:.0f} µs, p99 {p99:.0f} µs\n")
            print(
                "| plan (rate/s, burst) | lease | requests offered | allowed / budget "
                "| round trips per allowed | per request |"
            )
            print("| --- | ---: | ---: | ---: | ---: | ---: |")
            for rate, burst in PLANS:
                row = asyncio.run(two_instances(server.service_url, rate, burst))
                print(
                    f"| {rate:,.0f}, {burst:,} | {lease_size(burst)} | {row['offered']:,.0f} "
                    f"| {row['allowed']:,.0f} / {row['budget']:,.0f} "
                    f"({row['allowed'] / row['budget']:.1%}) | {row['trips_per_allowed']:.3f} "
                    f"| {row['trips_per_request']:.4f} |"
                )
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
