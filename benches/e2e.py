"""End-to-end load: `tenantgate dev` on the embedded stack, measured with wrk.

Run with `make bench-e2e` (needs `wrk`, Debian package `wrk`). Starts the service with one
granian worker on a free port in a throw-away data folder, creates a tenant and an item, then
loads three routes in turn with the same wrk settings and prints requests per second:

- `GET /healthz` — no authentication, no database: the floor of Litestar on granian;
- `GET /v1/me` — identification and rate limiting (one native call), no database;
- `GET /v1/items/{id}` — the same plus a tenant-scoped PostgreSQL read (BEGIN + SET LOCAL
  ROLE + SET LOCAL search_path in one round trip, the SELECT, COMMIT).

The tenant is on a plan generous enough that rate limiting never refuses during the run.
"""

from __future__ import annotations

import json
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


def wrk(url: str, headers: dict[str, str]) -> float:
    command = ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{DURATION_SECONDS}s", "--latency"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        raise SystemExit(f"{url}: {non_2xx[1]} failed responses\n{output}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if match is None:
        raise SystemExit(output)
    return float(match[1])


def main() -> int:
    if shutil.which("wrk") is None:
        print("wrk is not installed (Debian: apt-get install wrk)", file=sys.stderr)
        return 2
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="tenantgate-e2e-") as data_dir:
        dev = subprocess.Popen(
            [sys.executable, "-m", "tenantgate", "dev", "--port", str(port), "--data-dir",
             str(Path(data_dir) / "stack")],
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
            results = {
                "GET /healthz (no auth, no database)": wrk(f"{url}/healthz", {}),
                "GET /v1/me (auth + rate limit)": wrk(f"{url}/v1/me", tenant),
                "GET /v1/items/{id} (auth + limit + tenant read)": wrk(item_url, tenant),
            }
        finally:
            dev.send_signal(signal.SIGINT)
            dev.wait(timeout=60)
    floor = next(iter(results.values()))
    print(f"wrk -t{THREADS} -c{CONNECTIONS} -d{DURATION_SECONDS}s, one granian worker:\n")
    print("| route | requests/s | vs /healthz |")
    print("| --- | ---: | ---: |")
    for route, rate in results.items():
        print(f"| `{route}` | {rate:,.0f} | {rate / floor:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
