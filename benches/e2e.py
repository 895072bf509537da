"""End-to-end load: `tenantgate dev` on the embedded stack, measured with wrk.

Run with `make bench-e2e` (needs `wrk`, Debian package `wrk`). Starts the service with one
granian worker on a free port in a throw-away data folder, creates a tenant and an item, then
loads these routes in turn with the same wrk settings and prints requests per second:

- `GET /healthz` — no authentication, no database: the floor of Litestar on granian;
- `GET /v1/me` — identification and rate limiting (one native call), no database;
- `GET /v1/cache/{key}` — the same plus one Redis round trip as the tenant's ACL user (``AUTH``
  tenant, ``GET``, ``AUTH`` back, pipelined);
- `GET /v1/items/{id}`, cache hit — the same item again and again: one Redis round trip
  (lookup and version), no PostgreSQL;
- `GET /v1/items/{id}`, cache miss — every request a different item, never read before (100,000
  items inserted beforehand, walked in order by a wrk script): the Redis lookup, the
  tenant-scoped PostgreSQL read (BEGIN + SET LOCAL ROLE + SET LOCAL search_path in one round
  trip, the SELECT, COMMIT), and the Redis round trip that keeps the copy;
- `POST /v1/items` — a tenant write and, in the same transaction, its audit record (the
  chain's advisory lock, its head, the native hash, the INSERT): what a change costs.

The tenant is on a plan generous enough that rate limiting never refuses during the run.

``--pgbouncer`` runs the same with the service behind an embedded PgBouncer in transaction
pooling mode (``tenantgate dev --pgbouncer``; Debian package ``pgbouncer``).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

DURATION_SECONDS = 10
CONNECTIONS = 32
THREADS = 1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


MISS_ITEMS = 100_000

WALK_SCRIPT = """
local ids = {}
for line in io.lines(os.getenv("TENANTGATE_BENCH_IDS")) do ids[#ids + 1] = line end
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/v1/items/" .. ids[(n % #ids) + 1])
end
"""
"""A wrk script: each request reads the next item of the list, so none is read twice."""

CREATE_SCRIPT = """
wrk.method = "POST"
wrk.body = '{"data": {"n": 1}}'
wrk.headers["Content-Type"] = "application/json"
"""
"""A wrk script: every request creates an item (and, in the same transaction, its audit
record)."""


def wrk(url: str, headers: dict[str, str], script: Path | None = None) -> float:
    command = ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{DURATION_SECONDS}s", "--latency"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    if script is not None:
        command += ["-s", str(script)]
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        raise SystemExit(f"{url}: {non_2xx[1]} failed responses\n{output}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if match is None:
        raise SystemExit(output)
    return float(match[1])


def _insert_items(database_admin_url: str, tenant_id: str) -> list[str]:
    """Put :data:`MISS_ITEMS` items straight into the tenant's table; their ids, shuffled."""
    import asyncio
    import uuid

    import asyncpg

    schema = f"t_{uuid.UUID(tenant_id).hex}"

    async def insert() -> list[str]:
        connection = await asyncpg.connect(database_admin_url)
        try:
            rows = await connection.fetch(
                f"""
                INSERT INTO "{schema}".items (id, data)
                SELECT gen_random_uuid(), jsonb_build_object('n', n)
                  FROM generate_series(1, $1) AS n
                RETURNING id
                """,
                MISS_ITEMS,
            )
        finally:
            await connection.close()
        return [str(row["id"]) for row in rows]

    ids = asyncio.run(insert())
    random.shuffle(ids)
    return ids


def main(argv: list[str] | None = None) -> int:
    through_pgbouncer = "--pgbouncer" in (sys.argv[1:] if argv is None else argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="tenantgate-e2e-") as data_dir:
        dev = subprocess.Popen(
            [sys.executable, "-m", "tenantgate", "dev", "--port", str(port), "--data-dir",
             str(Path(data_dir) / "stack"), *(["--pgbouncer"] if through_pgbouncer else [])],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )  # fmt: skip
        try:
            assert dev.stdout is not None
            ready = json.loads(dev.stdout.readline())
            url, admin = ready["url"], {"Authorization": f"Bearer {ready['admin_token']}"}
            with httpx.Client(base_url=url, timeout=10) as client:
                created = client.post(
                    "/admin/v1/tenants", json={"name": "load", "plan": "bench"}, headers=admin
                )
                if created.status_code == 422:  # the plan does not exist yet
                    client.put(
                        "/admin/v1/plans/bench",
                        json={"rate_per_second": 1e8, "burst": 10**9},
                        headers=admin,
                    ).raise_for_status()
                    created = client.post(
                        "/admin/v1/tenants", json={"name": "load", "plan": "bench"}, headers=admin
                    )
                created.raise_for_status()
                tenant = {"Authorization": f"Bearer {created.json()['api_key']['key']}"}
                item = client.post("/v1/items", json={"data": {"n": 1}}, headers=tenant)
                item.raise_for_status()
                item_url = f"{url}/v1/items/{item.json()['id']}"
                client.put("/v1/cache/bench", json={"value": {"n": 1}}, headers=tenant)
            tenant_id = created.json()["tenant"]["id"]
            ids_file = Path(data_dir) / "item-ids.txt"
            ids_file.write_text("\n".join(_insert_items(ready["database_admin_url"], tenant_id)))
            walk = Path(data_dir) / "walk.lua"
            walk.write_text(WALK_SCRIPT)
            create = Path(data_dir) / "create.lua"
            create.write_text(CREATE_SCRIPT)
            os.environ["TENANTGATE_BENCH_IDS"] = str(ids_file)
            results = {
                "GET /healthz (no auth, no database)": wrk(f"{url}/healthz", {}),
                "GET /v1/me (auth + rate limit)": wrk(f"{url}/v1/me", tenant),
                "GET /v1/cache/{key} (auth + limit + Redis as the tenant)": wrk(
                    f"{url}/v1/cache/bench", tenant
                ),
                "GET /v1/items/{id}, cache hit (auth + limit + Redis)": wrk(item_url, tenant),
                "GET /v1/items/{id}, cache miss (+ tenant read in PostgreSQL)": wrk(
                    url, tenant, script=walk
                ),
                "POST /v1/items (a tenant write + its audit record, one transaction)": wrk(
                    f"{url}/v1/items", tenant, script=create
                ),
            }
        finally:
            dev.send_signal(signal.SIGINT)
            dev.wait(timeout=60)
    floor = next(iter(results.values()))
    behind = ", through PgBouncer (transaction pooling)" if through_pgbouncer else ""
    print(f"wrk -t{THREADS} -c{CONNECTIONS} -d{DURATION_SECONDS}s, one granian worker{behind}:\n")
    print("| route | requests/s | vs /healthz |")
    print("| --- | ---: | ---: |")
    for route, rate in results.items():
        print(f"| `{route}` | {rate:,.0f} | {rate / floor:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
