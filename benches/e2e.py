"""End to end: tenantgate against a single-tenant baseline, on the embedded stack.

Run with `make bench-e2e` (`--quick` in CI). Needs `wrk` (Debian package `wrk`); the open-loop
generator is ours (`benches/loadgen`, built by the make target).

What runs: `tenantgate dev` (one granian worker unless `--workers`), a tenant on a plan that
never refuses, 300,000 items inserted into its schema (30,000 in quick mode), and the same rows
copied into `baseline.items` for the **baseline** (`benches/baseline_app.py`: plain Litestar +
asyncpg on granian, same worker count, the row read by primary key, no tenancy). Each route is
loaded in turn on loopback:

- `GET /healthz` — no authentication, no database: the floor of Litestar on granian;
- `GET /v1/me` — identification and rate limiting (one native call), no database;
- `GET /v1/cache/{key}` — plus one Redis round trip as the tenant's ACL user;
- `GET /v1/items/{id}`, cache hit — the same item again and again: one Redis round trip;
- `GET /v1/items/{id}`, cache miss — every request a different item, never read before: the
  Redis lookup, the tenant-scoped PostgreSQL read, the Redis round trip that keeps the copy;
- `POST /v1/items` — a tenant write and its audit record in one transaction;
- the baseline's `GET /items/{id}` over the same rows (different rows every request).

Two measurements per route: **saturation** (wrk, closed loop, best of the rounds) and an
**open loop at a fixed offered rate** (`tenantgate-loadgen`: requests on a schedule, latency
counted from when each request should have been sent, so a stall is not hidden — wrk2-style),
at one rate for every route: half the lower of the baseline's and the cache-miss read's
saturated throughput, a rate both sustain. Each core — the Rust one and the pure-Python
reference (`TENANTGATE_CORE=reference`), so the table shows what the Rust core buys end to end
— runs on a `tenantgate serve` of its own on the same stack, and each route loads the cores one
after the other.

Writes `benches/results/e2e.json` and `e2e.png` (`bench-e2e-quick.*` in quick mode; the chart
when matplotlib is installed) and prints a Markdown table with the ratios the README quotes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tenantgate.dev.ports import free_port

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LOADGEN = ROOT / "target" / "release" / "tenantgate-loadgen"

CONNECTIONS = 32
MISS = "GET /v1/items/{id} (cache miss)"


@dataclass(frozen=True)
class Mode:
    seconds: float
    rounds: int
    items: int
    cores: tuple[str, ...]


FULL = Mode(seconds=8, rounds=2, items=300_000, cores=("native", "reference"))
QUICK = Mode(seconds=2, rounds=1, items=30_000, cores=("native",))


@dataclass
class Route:
    """One thing to load: a path (or a walk over many), a method, a body."""

    label: str
    path: str = ""
    walk: str | None = None
    """Walk over unread items: the path prefix before each item id."""
    method: str = "GET"
    body: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


def wait_until_up(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not come up")


class IdSlices:
    """Hands each load run item ids nobody has read yet, so a cache miss stays a miss."""

    def __init__(self, ids: list[str], folder: Path) -> None:
        self.ids, self.folder, self.next = ids, folder, 0

    def take(self, count: int, prefix: str) -> Path:
        if self.next + count > len(self.ids):
            print(f"  (item ids reused: {count} wanted, {len(self.ids) - self.next} left)")
            self.next = 0
        chosen = self.ids[self.next : self.next + count]
        self.next += count
        path = self.folder / f"ids-{self.next}.txt"
        path.write_text("".join(f"{prefix}{item_id}\n" for item_id in chosen))
        return path


WALK_SCRIPT = """
local paths = {}
for line in io.lines(os.getenv("TENANTGATE_BENCH_PATHS")) do paths[#paths + 1] = line end
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, paths[((n - 1) % #paths) + 1])
end
"""

BODY_SCRIPT = """
wrk.method = os.getenv("TENANTGATE_BENCH_METHOD")
wrk.body = os.getenv("TENANTGATE_BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"
"""


def _seconds(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


class Loader:
    def __init__(self, mode: Mode, folder: Path, slices: IdSlices) -> None:
        self.mode, self.folder, self.slices = mode, folder, slices
        (folder / "walk.lua").write_text(WALK_SCRIPT)
        (folder / "body.lua").write_text(BODY_SCRIPT)

    def saturate(self, base: str, route: Route, expected_rate: float = 5e3) -> dict[str, float]:
        """wrk, closed loop: the best of the mode's rounds."""
        best: dict[str, float] = {}
        for _ in range(self.mode.rounds):
            command = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{self.mode.seconds}s", "--latency"]
            for name, value in route.headers.items():
                command += ["-H", f"{name}: {value}"]
            env = dict(os.environ)
            url = base + route.path
            if route.walk:
                wanted = int(expected_rate * (self.mode.seconds + 1) * 1.5) + 1000
                env["TENANTGATE_BENCH_PATHS"] = str(self.slices.take(wanted, route.walk))
                command += ["-s", str(self.folder / "walk.lua")]
                url = base
            elif route.body is not None:
                env["TENANTGATE_BENCH_METHOD"] = route.method
                env["TENANTGATE_BENCH_BODY"] = route.body
                command += ["-s", str(self.folder / "body.lua")]
            output = subprocess.run(
                [*command, url], capture_output=True, text=True, check=True, env=env
            ).stdout
            failed = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
            if failed:
                raise SystemExit(f"{route.label}: {failed[1]} failed responses\n{output}")
            rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output)[1])  # type: ignore[index]
            quantiles = dict(re.findall(r"^\s+(50|90|99)%\s+(\S+)$", output, flags=re.M))
            result = {
                "throughput": rate,
                "p50_ms": _seconds(quantiles["50"]) * 1e3,
                "p99_ms": _seconds(quantiles["99"]) * 1e3,
            }
            if result["throughput"] > best.get("throughput", 0):
                best = result
        return best

    def offer(self, base: str, route: Route, rate: float) -> dict[str, float]:
        """tenantgate-loadgen at a fixed offered rate: latency from the intended send time."""
        command = [
            str(LOADGEN),
            "--url",
            base,
            "--rate",
            f"{rate:.0f}",
            "--connections",
            str(CONNECTIONS),
            "--duration",
            str(self.mode.seconds),
            "--warmup",
            "1",
        ]
        for name, value in route.headers.items():
            command += ["-H", f"{name}: {value}"]
        if route.walk:
            wanted = int(rate * (self.mode.seconds + 1.5)) + 1000
            command += ["--paths-file", str(self.slices.take(wanted, route.walk))]
        else:
            command += ["--path", route.path]
        if route.body is not None:
            command += ["--method", route.method, "--body", route.body]
            command += ["-H", "Content-Type: application/json"]
        report = json.loads(subprocess.run(command, capture_output=True, check=True).stdout)
        if report["non_2xx"] or report["errors"]:
            raise SystemExit(f"{route.label}: failures at {rate:.0f}/s: {report}")
        latency = report["latency_us"]
        return {
            "offered_rate": rate,
            "throughput": report["throughput"],
            "p50_ms": latency["p50"] / 1e3,
            "p99_ms": latency["p99"] / 1e3,
            "p999_ms": latency["p999"] / 1e3,
        }


async def _copy_items(admin_url: str, tenant_id: str, count: int) -> list[str]:
    """Fill the tenant's items, copy them to `baseline.items`; the ids, shuffled."""
    import asyncpg

    schema = f"t_{uuid.UUID(tenant_id).hex}"
    connection = await asyncpg.connect(admin_url)
    try:
        rows = await connection.fetch(
            f"""
            INSERT INTO "{schema}".items (id, data)
            SELECT gen_random_uuid(), jsonb_build_object('n', n, 'name', 'item ' || n)
              FROM generate_series(1, $1) AS n
            RETURNING id
            """,
            count,
        )
        await connection.execute(
            f"""
            DROP SCHEMA IF EXISTS baseline CASCADE;
            CREATE SCHEMA baseline;
            CREATE TABLE baseline.items (LIKE "{schema}".items INCLUDING ALL);
            INSERT INTO baseline.items SELECT * FROM "{schema}".items;
            """
        )
        # Settle the database before measuring: the bulk insert leaves dirty pages and
        # tables autovacuum would otherwise visit during a run, whichever route it is.
        await connection.execute(f'VACUUM ANALYZE baseline.items, "{schema}".items')
        await connection.execute("CHECKPOINT")
    finally:
        await connection.close()
    ids = [str(row["id"]) for row in rows]
    random.shuffle(ids)
    return ids


def prepare_tenant(url: str, admin_token: str) -> tuple[str, dict[str, str], str]:
    """A tenant on a plan that never refuses, an item, a cached value: (tenant id, headers,
    item id)."""
    admin = {"Authorization": f"Bearer {admin_token}"}
    with httpx.Client(base_url=url, timeout=30) as client:
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
        item = client.post("/v1/items", json={"data": {"n": 0}}, headers=tenant)
        item.raise_for_status()
        client.put("/v1/cache/bench", json={"value": {"n": 1}}, headers=tenant).raise_for_status()
    return created.json()["tenant"]["id"], tenant, item.json()["id"]


def _start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as sink:
        return subprocess.Popen(
            command, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )


def _stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs, native core only")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--json", type=Path, help="default: benches/results/e2e.json")
    parser.add_argument("--chart", type=Path, help="default: benches/results/e2e.png")
    options = parser.parse_args()
    mode = QUICK if options.quick else FULL
    # A quick run's numbers are not the README's: they go beside the tree, not into it.
    output = ROOT / "bench-e2e-quick" if options.quick else HERE / "results" / "e2e"
    options.json = options.json or output.with_suffix(".json")
    options.chart = options.chart or output.with_suffix(".png")
    for tool, hint in (("wrk", "apt-get install wrk"), (str(LOADGEN), "make bench-e2e")):
        if shutil.which(tool) is None:
            print(f"{tool} is missing ({hint})", file=sys.stderr)
            return 2
    processes: list[subprocess.Popen[Any]] = []
    with tempfile.TemporaryDirectory(prefix="tenantgate-e2e-") as temp:
        folder = Path(temp)
        dev_port = free_port()
        dev = subprocess.Popen(
            [sys.executable, "-m", "tenantgate", "dev", "--port", str(dev_port),
             "--workers", str(options.workers), "--data-dir", str(folder / "stack")],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            start_new_session=True,
        )  # fmt: skip
        processes.append(dev)
        try:
            assert dev.stdout is not None
            ready = json.loads(dev.stdout.readline())
            tenant_id, tenant, item_id = prepare_tenant(ready["url"], ready["admin_token"])
            print(f"inserting {mode.items:,} items (and their baseline copy)…", flush=True)
            ids = asyncio.run(_copy_items(ready["database_admin_url"], tenant_id, mode.items))
            slices = IdSlices(ids, folder)
            loader = Loader(mode, folder, slices)

            baseline_port = free_port()
            baseline = _start(
                [str(Path(sys.executable).with_name("granian")), "--interface", "asgi",
                 "--host", "127.0.0.1", "--port", str(baseline_port),
                 "--workers", str(options.workers), "--no-access-log",
                 "--working-dir", str(HERE), "baseline_app:app"],
                {**os.environ, "BASELINE_DATABASE_URL": ready["database_admin_url"]},
                folder / "baseline.log",
            )  # fmt: skip
            processes.append(baseline)
            baseline_url = f"http://127.0.0.1:{baseline_port}"
            wait_until_up(baseline_url)

            routes = [
                Route("GET /healthz", "/healthz"),
                Route("GET /v1/me", "/v1/me", headers=tenant),
                Route("GET /v1/cache/{key}", "/v1/cache/bench", headers=tenant),
                Route("GET /v1/items/{id} (cache hit)", f"/v1/items/{item_id}", headers=tenant),
                Route(MISS, walk="/v1/items/", headers=tenant),
                Route("POST /v1/items", "/v1/items", method="POST",
                      body='{"data": {"n": 1}}', headers=tenant),
            ]  # fmt: skip
            baseline_route = Route("baseline GET /items/{id}", walk="/items/")
            # Each core on a `tenantgate serve` of its own (the dev stack's service idles), so
            # both run the same way; each route loads the cores one after the other, so a
            # change in the machine's weather falls on both.
            urls: dict[str, str] = {}
            for core in mode.cores:
                port = free_port()
                processes.append(
                    _start(
                        [sys.executable, "-m", "tenantgate", "serve", "--port", str(port),
                         "--workers", str(options.workers)],
                        {**os.environ, **ready["service_env"], "TENANTGATE_CORE": core},
                        folder / f"serve-{core}.log",
                    )
                )  # fmt: skip
                urls[core] = f"http://127.0.0.1:{port}"
                wait_until_up(urls[core])
            print("saturation (wrk)…", flush=True)
            saturated: dict[str, dict[str, dict[str, float]]] = {
                "baseline": {baseline_route.label: loader.saturate(baseline_url, baseline_route)}
            }
            for route in routes:
                for core in mode.cores:
                    print(f"  {core}: {route.label}", flush=True)
                    saturated.setdefault(core, {})[route.label] = loader.saturate(urls[core], route)
            # The open loop's rate: one both the baseline and the tenant read (cache miss)
            # sustain, so their latencies compare like for like.
            read = saturated["native"][MISS]["throughput"]
            base = saturated["baseline"][baseline_route.label]["throughput"]
            rate = max(50.0, round(min(read, base) / 2, -1))
            print(f"open loop at {rate:.0f} requests/s…", flush=True)
            results: dict[str, dict[str, Any]] = {
                "baseline": {
                    baseline_route.label: {
                        "saturation": saturated["baseline"][baseline_route.label],
                        "open_loop": loader.offer(baseline_url, baseline_route, rate),
                    }
                }
            }
            for route in routes:
                for core in mode.cores:
                    print(f"  {core}: {route.label}", flush=True)
                    results.setdefault(core, {})[route.label] = {
                        "saturation": saturated[core][route.label],
                        "open_loop": loader.offer(urls[core], route, rate),
                    }
        finally:
            for process in reversed(processes):
                _stop(process)
    document = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "mode": "quick" if options.quick else "full",
        "workers": options.workers,
        "connections": CONNECTIONS,
        "seconds": mode.seconds,
        "offered_rate": rate,
        "results": results,
        "ratios": ratios(results),
    }
    options.json.write_text(json.dumps(document, indent=2) + "\n")
    print_table(document)
    chart(document, options.chart)
    return 0


def ratios(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """The figures the issue sets targets for, per core."""
    base = results["baseline"]["baseline GET /items/{id}"]
    out: dict[str, dict[str, float]] = {}
    for core, routes in results.items():
        if core == "baseline":
            continue
        health = routes["GET /healthz"]["saturation"]["throughput"]
        me = routes["GET /v1/me"]["saturation"]["throughput"]
        miss = routes[MISS]
        hit = routes["GET /v1/items/{id} (cache hit)"]
        out[core] = {
            "me_vs_healthz": me / health,
            "miss_vs_baseline": miss["saturation"]["throughput"] / base["saturation"]["throughput"],
            "miss_p99_vs_baseline_at_rate": miss["open_loop"]["p99_ms"]
            / base["open_loop"]["p99_ms"],
            "hit_vs_baseline": hit["saturation"]["throughput"] / base["saturation"]["throughput"],
        }
    return out


def print_table(document: dict[str, Any]) -> None:
    rate = document["offered_rate"]
    print(
        f"\nwrk -t1 -c{CONNECTIONS} -d{document['seconds']}s (saturation) and "
        f"tenantgate-loadgen at {rate:.0f} req/s (open loop), {document['workers']} worker(s):\n"
    )
    print(f"| core | route | req/s | p50 | p99 | p50 @ {rate:.0f}/s | p99 @ {rate:.0f}/s "
          f"| p99.9 @ {rate:.0f}/s |")  # fmt: skip
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for core, routes in document["results"].items():
        for label, result in routes.items():
            saturated, open_loop = result["saturation"], result["open_loop"]
            print(
                f"| {core} | `{label}` | {saturated['throughput']:,.0f} | "
                f"{saturated['p50_ms']:.1f} ms | {saturated['p99_ms']:.1f} ms | "
                f"{open_loop['p50_ms']:.2f} ms | {open_loop['p99_ms']:.2f} ms | "
                f"{open_loop['p999_ms']:.2f} ms |"
            )
    print("\n| core | /v1/me ÷ /healthz | miss ÷ baseline | miss p99 ÷ baseline p99 "
          "| hit ÷ baseline |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: |")
    for core, figures in document["ratios"].items():
        print(
            f"| {core} | {figures['me_vs_healthz']:.2f} (≥ 0.85) | "
            f"{figures['miss_vs_baseline']:.2f} (≥ 0.80) | "
            f"{figures['miss_p99_vs_baseline_at_rate']:.2f} (≤ 1.25) | "
            f"{figures['hit_vs_baseline']:.2f} (> 1) |"
        )


def chart(document: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib is not installed: no chart)")
        return
    labels: list[str] = []
    throughput: list[float] = []
    p99: list[float] = []
    colours: list[str] = []
    palette = {"baseline": "#888888", "native": "#1f77b4", "reference": "#ff7f0e"}
    for core, routes in document["results"].items():
        for label, result in routes.items():
            labels.append(f"{label} [{core}]")
            throughput.append(result["saturation"]["throughput"])
            p99.append(result["open_loop"]["p99_ms"])
            colours.append(palette.get(core, "#2ca02c"))
    figure, (left, right) = plt.subplots(1, 2, figsize=(14, 0.45 * len(labels) + 1.5))
    positions = range(len(labels))
    left.barh(positions, throughput, color=colours)
    left.set_yticks(list(positions), labels, fontsize=8)
    left.invert_yaxis()
    left.set_xlabel("requests/s at saturation (wrk)")
    right.barh(positions, p99, color=colours)
    right.set_yticks(list(positions), [""] * len(labels))
    right.invert_yaxis()
    right.set_xscale("log")
    right.set_xlabel(f"p99 ms at {document['offered_rate']:.0f} req/s offered (open loop)")
    figure.suptitle(
        f"tenantgate vs a single-tenant baseline — {document['machine']['cpus']} CPUs, "
        f"{document['workers']} worker(s), {document['when']}"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    print(f"chart: {path}")


if __name__ == "__main__":
    raise SystemExit(main())
