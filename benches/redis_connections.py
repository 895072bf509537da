"""Talking to Redis as thousands of tenants: which connection strategy.

Each tenant has its own Redis ACL user, so a command on a tenant's behalf must run on a
connection authenticated as that user. Two ways to keep the number of connections bounded
with thousands of tenants, measured side by side against the embedded Redis (``make bench``
runs this after the micro benches)::

    python benches/redis_connections.py [--json bench-results.json]

- ``pools``: an LRU of small per-tenant pools (redis-py ``BlockingConnectionPool`` with the tenant's
  username and password, 2 connections each, at most ``LRU_TENANTS`` pools; the least
  recently used pool is closed to make room). A hit costs one round trip; a miss opens a
  connection (TCP + ``HELLO``/``AUTH``) first.
- ``auth``: one shared pool as the service's own user, and each command sent as a pipeline
  ``AUTH <tenant>; <command>; AUTH <service>`` in one round trip, so a pooled connection is
  back to the service's user before redis-py sees it again (and is dropped if the pipeline
  fails half-way).

Workloads: ``hot`` — 10 tenants, every request a cache hit of the LRU; ``spread`` — 2,000
tenants round robin, more than the LRU holds, so every request of ``pools`` misses. Each
runs ``CONCURRENCY`` tasks in one event loop issuing ``GET`` until ``REQUESTS`` are done, and
reports requests/s, p50/p99 latency and the connections the server saw.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import sys
import tempfile
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis.asyncio

from tenantgate.dev import EmbeddedRedis

CONCURRENCY = 32
REQUESTS = 20_000
LRU_TENANTS = 256
POOL_CONNECTIONS = 2
SHARED_CONNECTIONS = 16
JSON_KEY = "tenantgate_redis_connections"


class LruPools:
    """At most ``capacity`` per-tenant clients, least recently used closed first."""

    def __init__(self, url: str, passwords: dict[str, str], capacity: int) -> None:
        self._url = url
        self._passwords = passwords
        self._capacity = capacity
        self._clients: OrderedDict[str, redis.asyncio.Redis] = OrderedDict()

    def client(self, user: str) -> redis.asyncio.Redis:
        found = self._clients.get(user)
        if found is not None:
            self._clients.move_to_end(user)
            return found
        if len(self._clients) >= self._capacity:
            _, oldest = self._clients.popitem(last=False)
            asyncio.get_running_loop().create_task(oldest.aclose())
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            self._url,
            username=user,
            password=self._passwords[user],
            max_connections=POOL_CONNECTIONS,
        )
        client = redis.asyncio.Redis(connection_pool=pool)
        self._clients[user] = client
        return client

    async def get(self, user: str, key: str) -> Any:
        return await self.client(user).get(key)

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()


class AuthPipelined:
    """One shared pool as the service's user; AUTH as the tenant around each command."""

    def __init__(self, url: str, passwords: dict[str, str], service: tuple[str, str]) -> None:
        self._passwords = passwords
        self._service = service
        pool = redis.asyncio.BlockingConnectionPool.from_url(
            url, max_connections=SHARED_CONNECTIONS
        )
        self._client = redis.asyncio.Redis(connection_pool=pool)

    async def get(self, user: str, key: str) -> Any:
        pipe = self._client.pipeline(transaction=False)
        pipe.execute_command("AUTH", user, self._passwords[user])
        pipe.get(key)
        pipe.execute_command("AUTH", *self._service)
        try:
            _, value, _ = await pipe.execute()
        except BaseException:
            # The connection may still be the tenant's: never give it back.
            await self._client.connection_pool.disconnect(inuse_connections=True)
            raise
        return value

    async def aclose(self) -> None:
        await self._client.aclose()


async def _setup_tenants(admin: redis.asyncio.Redis, count: int) -> dict[str, str]:
    passwords: dict[str, str] = {}
    for n in range(count):
        user, password = f"bench-tenant-{n}", secrets.token_hex(16)
        passwords[user] = password
        await admin.execute_command(
            "ACL", "SETUSER", user, "reset", "on", f">{password}",
            f"~t:{{{n}}}:*", "+@read", "+@write", "+@connection", "-select",
        )  # fmt: skip
        await admin.set(f"t:{{{n}}}:k", "v")
    return passwords


async def _drive(get: Callable[[str, str], Awaitable[Any]], users: list[str]) -> dict[str, Any]:
    latencies: list[float] = []
    issued = 0

    async def worker() -> None:
        nonlocal issued
        while issued < REQUESTS:
            n = issued
            issued += 1
            user = users[n % len(users)]
            index = user.rsplit("-", 1)[1]
            started = time.perf_counter()
            value = await get(user, f"t:{{{index}}}:k")
            latencies.append(time.perf_counter() - started)
            assert value == b"v", value

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    elapsed = time.perf_counter() - began
    latencies.sort()
    return {
        "requests_per_second": round(REQUESTS / elapsed),
        "p50_ms": round(statistics.median(latencies) * 1000, 3),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 3),
    }


async def _connections(admin: redis.asyncio.Redis) -> int:
    info = await admin.info("stats")
    received: int = info["total_connections_received"]
    return received


async def measure(server: EmbeddedRedis) -> list[dict[str, Any]]:
    url = f"redis://127.0.0.1:{server.port}/0"
    admin = redis.asyncio.Redis.from_url(server.admin_url)
    passwords = await _setup_tenants(admin, 2_000)
    users = list(passwords)
    workloads = {"hot (10 tenants)": users[:10], "spread (2,000 tenants)": users}
    rows = []
    for workload, chosen in workloads.items():
        for name in ("pools", "auth"):
            strategy: LruPools | AuthPipelined = (
                LruPools(url, passwords, LRU_TENANTS)
                if name == "pools"
                else AuthPipelined(server.admin_url, passwords, ("default", server.password))
            )
            before = await _connections(admin)
            result = await _drive(strategy.get, chosen)
            result["connections_opened"] = await _connections(admin) - before
            await strategy.aclose()
            rows.append({"workload": workload, "strategy": name, **result})
    await admin.aclose()
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| workload | strategy | requests/s | p50 ms | p99 ms | connections opened |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        lines.append(
            f"| {row['workload']} | {row['strategy']} | {row['requests_per_second']:,} | "
            f"{row['p50_ms']} | {row['p99_ms']} | {row['connections_opened']:,} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=Path("bench-results.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        server = EmbeddedRedis(Path(folder))
        server.start()
        try:
            rows = asyncio.run(measure(server))
        finally:
            server.stop()
    print(
        f"Redis connections per tenant: {CONCURRENCY} tasks, {REQUESTS:,} GETs, "
        f"LRU of {LRU_TENANTS} pools x {POOL_CONNECTIONS} vs {SHARED_CONNECTIONS} shared:\n"
    )
    print(table(rows))
    results = json.loads(args.json.read_text()) if args.json.exists() else {}
    results[JSON_KEY] = rows
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
