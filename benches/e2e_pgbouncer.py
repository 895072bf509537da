"""The tenant-scoped read, straight to PostgreSQL and through PgBouncer, measured in turns.

Run with `python benches/e2e_pgbouncer.py` (needs Debian's `wrk` and `pgbouncer`). Starts two
`tenantgate dev` stacks, one with `--pgbouncer` (transaction pooling), each with one granian
worker, a tenant and 100,000 items; then loads `GET /v1/items/{id}` on each in turn — every
request a different item, so every read reaches PostgreSQL (cache miss) — `ROUNDS` times,
alternating, so that a machine shared with other work slows both alike. Prints the median
requests per second of each and their ratio.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from e2e import WALK_SCRIPT, prepare_tenant
from tenantgate.dev.ports import free_port

ROUNDS = 3
DURATION_SECONDS = 10
CONNECTIONS = 32
THREADS = 1


MISS_ITEMS = 100_000


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


def _start(data_dir: Path, *, pgbouncer: bool) -> tuple[subprocess.Popen[str], dict[str, str]]:
    command = ["dev", "--port", str(free_port()), "--data-dir", str(data_dir / "stack")]
    if pgbouncer:
        command.append("--pgbouncer")
    dev = subprocess.Popen(
        [sys.executable, "-m", "tenantgate", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert dev.stdout is not None
    ready = json.loads(dev.stdout.readline())
    tenant_id, headers, _ = prepare_tenant(ready["url"], ready["admin_token"])
    ids = _insert_items(ready["database_admin_url"], tenant_id)
    paths = data_dir / "paths.txt"
    paths.write_text("".join(f"/v1/items/{item_id}\n" for item_id in ids))
    return dev, {"url": ready["url"], "headers": headers, "paths": str(paths)}


def main() -> int:
    for tool in ("wrk", "pgbouncer"):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            print(f"{tool} is not installed (Debian: apt-get install {tool})", file=sys.stderr)
            return 2
    rates: dict[str, list[float]] = {"direct": [], "through PgBouncer": []}
    with tempfile.TemporaryDirectory(prefix="tenantgate-e2e-pgb-") as folder:
        walk = Path(folder) / "walk.lua"
        walk.write_text(WALK_SCRIPT)
        servers = {}
        try:
            for name, pgbouncer in (("direct", False), ("through PgBouncer", True)):
                data_dir = Path(folder) / name.replace(" ", "-")
                data_dir.mkdir()
                servers[name] = _start(data_dir, pgbouncer=pgbouncer)
            for _ in range(ROUNDS):
                for name, (_, target) in servers.items():
                    os.environ["TENANTGATE_BENCH_PATHS"] = target["paths"]
                    rates[name].append(wrk(target["url"], target["headers"], script=walk))
        finally:
            for dev, _ in servers.values():
                dev.send_signal(signal.SIGINT)
                dev.wait(timeout=60)
    direct = statistics.median(rates["direct"])
    print("GET /v1/items/{id}, cache miss, wrk -t1 -c32 -d10s, one granian worker, pool of 10;")
    print(f"median of {ROUNDS} alternating rounds:\n")
    print("| route | requests/s (median) | rounds | vs direct |")
    print("| --- | ---: | --- | ---: |")
    for name, values in rates.items():
        shown = ", ".join(f"{value:,.0f}" for value in values)
        median = statistics.median(values)
        print(f"| {name} | {median:,.0f} | {shown} | {median / direct:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
