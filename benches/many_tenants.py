"""Many tenants: provisioning, a fleet migration killed half-way and resumed, memory per cached
tenant and key, and a tenant-scoped read spread over 10 tenants vs over all of them.

Run with `make bench-tenants` (needs `wrk`, Debian package `wrk`)::

    python benches/many_tenants.py [--tenants 10000] [--quick] [--s3-tenants 100]
                                   [--concurrency 4] [--json bench-tenants.json]
                                   [--spread-only] [--key-trusted-seconds 60]

It starts `tenantgate dev` (embedded PostgreSQL, Redis, SeaweedFS) in a throw-away folder and
then, in order:

1. **Provisioning**, ``--concurrency`` at a time, median and p99 per tenant, total, and the
   median of each tenth of the run. The first ``--s3-tenants`` go through
   ``POST /admin/v1/tenants`` (every step of every layer: role, schema, tenant migrations and
   first key in PostgreSQL; the Redis ACL user; the S3 identity through SeaweedFS's IAM API,
   which costs more with every identity already there: see the README). The rest run the
   same provisioner and step list in this process without the S3 step (``tenantgate serve``
   always has it), which is what 10,000 tenants on SeaweedFS's IAM API cannot have.
2. **Spread read**: one item per tenant (inserted directly), then wrk with a Lua script that
   picks a random (key, item) pair per request, over the first 10 tenants and over all N; p50
   and p99 of each (a warm-up round first, so both compare warm caches).
3. **Memory** (a fresh interpreter): the resident set and tracemalloc growth of the key cache
   (the native verifier table and its Python payloads) holding 10,000 keys of 10,000 tenants,
   and 10,000 keys of 10 tenants: per cached key, and what a tenant adds on top.
4. **Fleet migration**: a new tenant migration (``0002``, from a temporary folder holding the
   packaged ones plus it) applied with ``tenantgate migrate --tenant-migrations``; the run is
   SIGKILLed once half the schemas are reported done, then run again. Checked afterwards:
   every schema is at version 2 with the new column, the second run migrated exactly the
   schemas the first had not, and the total time of both runs.

``--spread-only`` provisions the tenants (none through S3 unless ``--s3-tenants`` says so) and
runs the spread read alone; ``--key-trusted-seconds`` sets the service's
``TENANTGATE_KEY_CACHE_TRUSTED_SECONDS`` (1: every key record trusted one second, as before it
existed).

Prints a table and writes ``bench-tenants.json`` (git-ignored).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tenantgate.dev.ports import free_port

QUICK_TENANTS = 200
S3_TENANTS = 100
QUICK_S3_TENANTS = 10
SPREAD_FEW = 10
WRK_SECONDS = 8
QUICK_WRK_SECONDS = 3
WRK_CONNECTIONS = 32
MEMORY_KEYS = 10_000
PROGRESS = re.compile(r"tenantgate migrate: (\d+)/(\d+) tenant schemas")
SUMMARY = re.compile(r"migrated (\d+), up to date (\d+), failed (\d+) of (\d+) tenant schemas")

SPREAD_SCRIPT = """
local pairs_ = {}
for line in io.lines(os.getenv("TENANTGATE_BENCH_PAIRS")) do
  local key, item = line:match("^(%S+) (%S+)$")
  pairs_[#pairs_ + 1] = {"Bearer " .. key, "/v1/items/" .. item}
end
math.randomseed(os.time())
request = function()
  local pick = pairs_[math.random(#pairs_)]
  return wrk.format("GET", pick[2], {["Authorization"] = pick[1]})
end
"""
"""A wrk script: every request reads a random tenant's item with that tenant's key."""


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# -- 1. provisioning -------------------------------------------------------------------------


async def provision(
    url: str, admin: dict[str, str], count: int, concurrency: int
) -> dict[str, Any]:
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = [0.0] * count
    tenants: list[tuple[str, str]] = [("", "")] * count
    async with httpx.AsyncClient(base_url=url, headers=admin, timeout=120) as client:

        async def one(number: int) -> None:
            async with gate:
                started = time.perf_counter()
                created = await client.post(
                    "/admin/v1/tenants", json={"name": f"tenant {number}", "plan": "bench"}
                )
                latencies[number] = time.perf_counter() - started
            created.raise_for_status()
            body = created.json()
            tenants[number] = (body["tenant"]["id"], body["api_key"]["key"])
            if (number + 1) % max(1, count // 20) == 0:
                print(f"  provisioned {number + 1}/{count}", file=sys.stderr, flush=True)

        started = time.perf_counter()
        await asyncio.gather(*(one(number) for number in range(count)))
        total = time.perf_counter() - started
    return summarise(latencies, total, concurrency) | {"ids_and_keys": tenants}


async def provision_without_s3(env: dict[str, str], count: int, concurrency: int) -> dict[str, Any]:
    """The service's own provisioning steps minus the S3 one, run in this process (``tenantgate
    serve`` always has the S3 step): what ``POST /admin/v1/tenants`` runs, without the HTTP."""
    from tenantgate.db.tenants import NewTenant
    from tenantgate.keys import KeyHasher
    from tenantgate.resources import open_resources
    from tenantgate.settings import Settings
    from tenantgate.tenancy.keyring import KeyIssuer
    from tenantgate.tenancy.provisioning import Provisioner
    from tenantgate.tenancy.steps import service_steps

    settings = Settings.from_env(env)
    issuer = KeyIssuer(KeyHasher(settings.security.key_pepper))
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = [0.0] * count
    tenants: list[tuple[str, str]] = [("", "")] * count
    async with open_resources(settings) as resources:
        provisioner = Provisioner(resources.database, service_steps(resources.redis, settings))

        async def one(number: int) -> None:
            async with gate:
                started = time.perf_counter()
                issued = issuer.issue(name="default", expires_at=None)
                row = await provisioner.create(
                    NewTenant(f"tenant {number}", "bench", "standard", None), issued.row
                )
                latencies[number] = time.perf_counter() - started
            tenants[number] = (str(row["id"]), issued.secret)
            if (number + 1) % max(1, count // 20) == 0:
                print(f"  provisioned {number + 1}/{count}", file=sys.stderr, flush=True)

        started = time.perf_counter()
        await asyncio.gather(*(one(number) for number in range(count)))
        total = time.perf_counter() - started
    return summarise(latencies, total, concurrency) | {"ids_and_keys": tenants}


def summarise(latencies: list[float], total: float, concurrency: int) -> dict[str, Any]:
    count = len(latencies)
    tenths = [latencies[count * part // 10 : count * (part + 1) // 10] for part in range(10)]
    return {
        "tenants": count,
        "concurrency": concurrency,
        "median_ms": statistics.median(latencies) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "total_s": total,
        "median_ms_by_tenth": [statistics.median(part) * 1000 for part in tenths if part],
    }


def ensure_plan(url: str, admin: dict[str, str]) -> None:
    with httpx.Client(base_url=url, headers=admin, timeout=30) as client:
        client.put(
            "/admin/v1/plans/bench", json={"rate_per_second": 1e8, "burst": 10**9}
        ).raise_for_status()


# -- 2. spread read --------------------------------------------------------------------------


async def insert_items(admin_url: str, tenant_ids: list[str]) -> list[str]:
    import uuid

    import asyncpg

    async with asyncpg.create_pool(admin_url, min_size=1, max_size=4) as pool:

        async def one(tenant_id: str) -> str:
            schema = f"t_{uuid.UUID(tenant_id).hex}"
            item_id = await pool.fetchval(
                f'INSERT INTO "{schema}".items (id, data) '
                "VALUES (gen_random_uuid(), '{\"n\": 1}') RETURNING id"
            )
            return str(item_id)

        return list(await asyncio.gather(*(one(tenant_id) for tenant_id in tenant_ids)))


def wrk_latency(url: str, script: Path, pairs: Path, seconds: int) -> dict[str, float]:
    command = ["wrk", "-t1", f"-c{WRK_CONNECTIONS}", f"-d{seconds}s", "--latency"]
    output = subprocess.run(
        [*command, "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
        env=os.environ | {"TENANTGATE_BENCH_PAIRS": str(pairs)},
    ).stdout
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        raise SystemExit(f"spread read: {non_2xx[1]} failed responses\n{output}")

    def millis(label: str) -> float:
        match = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
        if match is None:
            raise SystemExit(output)
        return float(match[1]) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[match[2]]

    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    assert rate is not None, output
    return {"p50_ms": millis("50%"), "p99_ms": millis("99%"), "requests_per_s": float(rate[1])}


async def warm_up(url: str, keys_and_items: list[tuple[str, str]]) -> float:
    """Read every chosen item once with its key (fills the key and item caches); seconds."""
    gate = asyncio.Semaphore(WRK_CONNECTIONS)
    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:

        async def one(key: str, item: str) -> None:
            async with gate:
                read = await client.get(
                    f"/v1/items/{item}", headers={"Authorization": f"Bearer {key}"}
                )
            read.raise_for_status()

        await asyncio.gather(*(one(key, item) for key, item in keys_and_items))
    return time.perf_counter() - started


def key_lookups(url: str) -> float:
    """The service's key lookups in PostgreSQL so far (key-cache misses), from ``/metrics``."""
    exposition = httpx.get(f"{url}/metrics", timeout=10).text
    match = re.search(r"^tenantgate_key_lookups_total ([\d.e+]+)$", exposition, re.MULTILINE)
    return float(match[1]) if match else 0.0


def spread_read(
    url: str, folder: Path, keys_and_items: list[tuple[str, str]], seconds: int
) -> dict[str, Any]:
    script = folder / "spread.lua"
    script.write_text(SPREAD_SCRIPT)
    results: dict[str, Any] = {}
    for label, chosen in (
        (f"over {SPREAD_FEW} tenants", keys_and_items[:SPREAD_FEW]),
        (f"over {len(keys_and_items)} tenants", keys_and_items),
    ):
        pairs = folder / "pairs.txt"
        pairs.write_text("".join(f"{key} {item}\n" for key, item in chosen))
        warmed = asyncio.run(warm_up(url, chosen))
        lookups_before = key_lookups(url)
        measured = wrk_latency(url, script, pairs, seconds)
        lookups = key_lookups(url) - lookups_before
        requests = measured["requests_per_s"] * seconds
        results[label] = measured | {
            "warm_up_s": warmed,
            "key_lookups_per_request": lookups / requests if requests else 0.0,
        }
    few, many = results.values()
    results["p50_ratio"] = many["p50_ms"] / few["p50_ms"]
    return results


# -- 3. memory (runs in a fresh interpreter) ------------------------------------------------


def measure_memory(keys: int, tenants: int) -> dict[str, float]:
    import gc
    import hashlib
    import tracemalloc
    import uuid

    from tenantgate.identity.key_cache import KeyCache
    from tenantgate.identity.plans import Plans
    from tenantgate.identity.source import KeyRecord
    from tenantgate.keys import Verifier

    async def no_plans() -> list[Any]:
        return []

    async def no_lookup(digest: bytes) -> None:
        return None

    def rss() -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    tenant_ids = [uuid.uuid4() for _ in range(tenants)]
    records = [
        KeyRecord(
            key_id=uuid.uuid4(),
            key_status="active",
            expires_at=None,
            tenant_id=tenant_ids[number % tenants],
            tenant_name=f"tenant {number % tenants}",
            tenant_status="active",
            plan="bench",
            tier="standard",
            rate_per_second=100.0,
            burst=200,
        )
        for number in range(keys)
    ]
    digests = [hashlib.sha256(str(record.key_id).encode()).digest() for record in records]
    cache = KeyCache(Verifier(b"p" * 32, ttl_seconds=3600), Plans(no_plans), no_lookup)
    gc.collect()
    tracemalloc.start()
    before_rss, before_traced = rss(), tracemalloc.get_traced_memory()[0]
    for digest, record in zip(digests, records, strict=True):
        cache._cache(digest, record)
    gc.collect()
    grown_rss, grown_traced = rss() - before_rss, tracemalloc.get_traced_memory()[0] - before_traced
    return {"rss_bytes": grown_rss, "python_bytes": grown_traced}


def memory() -> dict[str, Any]:
    def fresh(tenants: int) -> dict[str, float]:
        output = subprocess.run(
            [sys.executable, __file__, "--measure-memory", str(MEMORY_KEYS), str(tenants)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        measured: dict[str, float] = json.loads(output)
        return measured

    spread, few = fresh(MEMORY_KEYS), fresh(SPREAD_FEW)
    tenant_extra = MEMORY_KEYS - SPREAD_FEW
    return {
        "keys": MEMORY_KEYS,
        "per_key_rss_bytes": few["rss_bytes"] / MEMORY_KEYS,
        "per_key_python_bytes": few["python_bytes"] / MEMORY_KEYS,
        "per_tenant_extra_rss_bytes": (spread["rss_bytes"] - few["rss_bytes"]) / tenant_extra,
        "per_tenant_extra_python_bytes": (spread["python_bytes"] - few["python_bytes"])
        / tenant_extra,
        "keys_of_distinct_tenants": spread,
        f"keys_of_{SPREAD_FEW}_tenants": few,
    }


# -- 4. the fleet migration, killed half-way and resumed ------------------------------------


def migrations_folder(folder: Path) -> Path:
    import tenantgate.db.migrations

    packaged = Path(tenantgate.db.migrations.__file__).parent / "tenant"
    folder.mkdir()
    for sql in packaged.glob("*.sql"):
        shutil.copy(sql, folder / sql.name)
    (folder / f"{len(list(packaged.glob('*.sql'))) + 1:04d}_bench_note.sql").write_text(
        "ALTER TABLE items ADD COLUMN bench_note text;\n"
    )
    return folder


async def versions_at(admin_url: str) -> dict[int, int]:
    import asyncpg

    connection = await asyncpg.connect(admin_url)
    try:
        schemas = [
            row[0]
            for row in await connection.fetch(
                r"SELECT nspname FROM pg_namespace WHERE nspname LIKE 't\_%'"
            )
        ]
        counts: dict[int, int] = {}
        for start in range(0, len(schemas), 500):
            union = " UNION ALL ".join(
                f'SELECT max(version) AS v FROM "{schema}".schema_migrations'
                for schema in schemas[start : start + 500]
            )
            for row in await connection.fetch(union):
                counts[row["v"]] = counts.get(row["v"], 0) + 1
        return counts
    finally:
        await connection.close()


def fleet_migration(
    env: dict[str, str], admin_url: str, folder: Path, tenants: int, concurrency: int
) -> dict[str, Any]:
    command = [
        sys.executable, "-m", "tenantgate", "migrate",
        "--tenant-migrations", str(migrations_folder(folder / "migrations")),
        "--concurrency", str(concurrency),
    ]  # fmt: skip
    environ = os.environ | env
    started = time.perf_counter()
    first = subprocess.Popen(command, env=environ, stderr=subprocess.PIPE, text=True)
    done_at_kill = 0
    assert first.stderr is not None
    for line in first.stderr:
        match = PROGRESS.search(line)
        if match and int(match[1]) >= tenants // 2:
            first.send_signal(signal.SIGKILL)
            done_at_kill = int(match[1])
            break
    first.wait()
    killed_after = time.perf_counter() - started
    time.sleep(1.0)  # the server notices the dead connections and rolls their transactions back
    at_kill = asyncio.run(versions_at(admin_url))
    resumed_started = time.perf_counter()
    second = subprocess.run(command, env=environ, capture_output=True, text=True, check=False)
    resumed = time.perf_counter() - resumed_started
    summary = SUMMARY.search(second.stderr)
    if second.returncode != 0 or summary is None:
        raise SystemExit(f"the resumed migrate failed:\n{second.stderr[-3000:]}")
    migrated, up_to_date, failed, total = map(int, summary.groups())
    after = asyncio.run(versions_at(admin_url))
    return {
        "tenants": tenants,
        "concurrency": concurrency,
        "killed": first.returncode == -signal.SIGKILL,
        "reported_done_at_kill": done_at_kill,
        "schemas_by_version_after_kill": at_kill,
        "killed_after_s": killed_after,
        "resumed_run_s": resumed,
        "total_s": killed_after + resumed,
        "resumed_migrated": migrated,
        "resumed_up_to_date": up_to_date,
        "resumed_failed": failed,
        "schemas_by_version_after": after,
        "consistent": (
            failed == 0
            and total == tenants
            and migrated == at_kill.get(1, 0)
            and up_to_date == at_kill.get(2, 0)
            and after == {2: tenants}
        ),
    }


# -- the run ---------------------------------------------------------------------------------


def start_dev(folder: Path) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    dev = subprocess.Popen(
        [sys.executable, "-m", "tenantgate", "dev", "--port", str(free_port()),
         "--data-dir", str(folder / "stack")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    assert dev.stdout is not None
    return dev, json.loads(dev.stdout.readline())


def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {} if args.spread_only else {"memory": memory()}
    if args.key_trusted_seconds is not None:
        os.environ["TENANTGATE_KEY_CACHE_TRUSTED_SECONDS"] = str(args.key_trusted_seconds)
    results["key_trusted_seconds"] = os.environ.get("TENANTGATE_KEY_CACHE_TRUSTED_SECONDS", "60")
    with tempfile.TemporaryDirectory(prefix="tenantgate-tenants-") as name:
        folder = Path(name)
        dev, ready = start_dev(folder)
        try:
            env: dict[str, str] = dict(ready["service_env"])
            admin = {"Authorization": f"Bearer {ready['admin_token']}"}
            ensure_plan(ready["url"], admin)
            ids_and_keys: list[tuple[str, str]] = []
            with_s3 = min(args.s3_tenants, args.tenants)
            if with_s3:
                made = asyncio.run(provision(ready["url"], admin, with_s3, args.concurrency))
                ids_and_keys += made.pop("ids_and_keys")
                results["provisioning_with_s3"] = made
                print(f"  with S3: {json.dumps(made)}", file=sys.stderr, flush=True)
            if args.tenants > with_s3:
                made = asyncio.run(
                    provision_without_s3(env, args.tenants - with_s3, args.concurrency)
                )
                ids_and_keys += made.pop("ids_and_keys")
                results["provisioning_without_s3"] = made
                print(f"  without S3: {json.dumps(made)}", file=sys.stderr, flush=True)
            items = asyncio.run(
                insert_items(ready["database_admin_url"], [tid for tid, _ in ids_and_keys])
            )
            keys_and_items = [
                (key, item) for (_, key), item in zip(ids_and_keys, items, strict=True)
            ]
            if shutil.which("wrk") is not None:
                results["spread_read"] = spread_read(
                    ready["url"], folder, keys_and_items, args.wrk_seconds
                )
            else:
                print("wrk is not installed: no spread read", file=sys.stderr)
            if args.spread_only:
                return results
            results["migration"] = fleet_migration(
                env, ready["database_admin_url"], folder, args.tenants, args.migrate_concurrency
            )
        finally:
            dev.send_signal(signal.SIGINT)
            dev.wait(timeout=60)
    return results


def report(results: dict[str, Any]) -> None:
    if "migration" not in results:
        report_spread(results)
        return
    memory_, moved = results["memory"], results["migration"]
    print(f"\n{moved['tenants']:,} tenants:\n")
    print("| measure | value |")
    print("| --- | ---: |")
    for key, label in (
        ("provisioning_with_s3", "every layer, S3 identity included"),
        ("provisioning_without_s3", "PostgreSQL + Redis, no S3 step"),
    ):
        made = results.get(key)
        if made is None:
            continue
        tenths = ", ".join(f"{value:.0f}" for value in made["median_ms_by_tenth"])
        print(
            f"| provisioning {made['tenants']:,} tenants ({label}), {made['concurrency']} at a "
            f"time: median / p99 per tenant, total | {made['median_ms']:.0f} ms / "
            f"{made['p99_ms']:.0f} ms, {made['total_s']:.1f} s |"
        )
        print(f"| the same, median by tenth of the run (ms) | {tenths} |")
    print(
        f"| `tenantgate migrate`, SIGKILLed at {moved['reported_done_at_kill']:,} done, then "
        f"run again | {moved['killed_after_s']:.1f} s + {moved['resumed_run_s']:.1f} s = "
        f"{moved['total_s']:.1f} s |"
    )
    verdict = "consistent" if moved["consistent"] else "INCONSISTENT"
    print(
        f"| the second run: migrated / already up to date | {moved['resumed_migrated']:,} / "
        f"{moved['resumed_up_to_date']:,} ({verdict}) |"
    )
    print(
        f"| memory per cached key (RSS / Python objects) | {memory_['per_key_rss_bytes']:.0f} B / "
        f"{memory_['per_key_python_bytes']:.0f} B |"
    )
    print(
        f"| memory a cached tenant adds (RSS / Python objects) | "
        f"{memory_['per_tenant_extra_rss_bytes']:.0f} B / "
        f"{memory_['per_tenant_extra_python_bytes']:.0f} B |"
    )
    report_spread(results)


def report_spread(results: dict[str, Any]) -> None:
    spread = results.get("spread_read")
    if spread:
        print(f"| key records trusted while live (s) | {results['key_trusted_seconds']} |")
        for label, measured in spread.items():
            if isinstance(measured, dict):
                print(
                    f"| tenant read spread {label}: p50 / p99, req/s, key lookups per request | "
                    f"{measured['p50_ms']:.2f} ms / {measured['p99_ms']:.2f} ms, "
                    f"{measured['requests_per_s']:,.0f}, "
                    f"{measured['key_lookups_per_request']:.2f} |"
                )
        print(f"| p50 spread over all / over {SPREAD_FEW} | {spread['p50_ratio']:.2f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tenants", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_TENANTS} tenants (CI)")
    parser.add_argument(
        "--s3-tenants",
        type=int,
        default=None,
        help=f"how many of the tenants get the S3 step too (default {S3_TENANTS}; quick "
        f"{QUICK_S3_TENANTS}): on SeaweedFS each costs more than the last (see the README)",
    )
    parser.add_argument("--concurrency", type=int, default=4, help="provisionings at once")
    parser.add_argument("--migrate-concurrency", type=int, default=8)
    parser.add_argument("--json", type=Path, default=Path("bench-tenants.json"))
    parser.add_argument("--measure-memory", nargs=2, type=int, help=argparse.SUPPRESS)
    parser.add_argument(
        "--spread-only", action="store_true", help="provision, then only the spread read"
    )
    parser.add_argument(
        "--key-trusted-seconds",
        type=float,
        default=None,
        help="TENANTGATE_KEY_CACHE_TRUSTED_SECONDS for the service (default: its own, 60)",
    )
    args = parser.parse_args()
    if args.measure_memory:
        print(json.dumps(measure_memory(*args.measure_memory)))
        return 0
    args.wrk_seconds = WRK_SECONDS
    if args.quick:
        args.tenants = QUICK_TENANTS
        args.wrk_seconds = QUICK_WRK_SECONDS
    if args.s3_tenants is None:
        args.s3_tenants = 0 if args.spread_only else QUICK_S3_TENANTS if args.quick else S3_TENANTS
    results = run(args)
    report(results)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
