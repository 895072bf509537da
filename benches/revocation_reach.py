"""How late another instance still accepts a revoked key, measured from outside.

    python benches/revocation_reach.py [--rounds 20]

Starts `tenantgate dev` (instance A) and a second `tenantgate serve` on the same stack
(instance B), then, each round: a fresh key, four clients sending `GET /v1/me` with it to B as
fast as they can, the key revoked through A, and the clients kept going for 1.5 s. The figure is
the time from the moment A's `DELETE` answered to the moment B answered its last 200 with the
key (negative or zero: B refused every request answered after the revocation). Revocations
reach B through Redis pub/sub (B trusts the key's record for a minute while its subscription is
provably live); the backstop when Redis is unreachable is about two seconds (records fall back
to one second the moment the subscription stops proving itself live).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from e2e import wait_until_up
from tenantgate.dev.ports import free_port

CLIENTS = 4
AFTER_SECONDS = 1.5


async def _round(a: str, b: str, admin: dict[str, str], tenant_id: str) -> float:
    async with httpx.AsyncClient(timeout=10) as http:
        created = await http.post(f"{a}/admin/v1/tenants/{tenant_id}/keys", json={}, headers=admin)
        created.raise_for_status()
        key = created.json()
        headers = {"Authorization": f"Bearer {key['key']}"}
        assert (await http.get(f"{b}/v1/me", headers=headers)).status_code == 200
        accepted: list[float] = []
        stop = asyncio.Event()

        async def client() -> None:
            while not stop.is_set():
                answer = await http.get(f"{b}/v1/me", headers=headers)
                if answer.status_code == 200:
                    accepted.append(time.monotonic())

        clients = [asyncio.create_task(client()) for _ in range(CLIENTS)]
        await asyncio.sleep(0.3)
        revoked = await http.delete(
            f"{a}/admin/v1/tenants/{tenant_id}/keys/{key['id']}", headers=admin
        )
        answered = time.monotonic()
        revoked.raise_for_status()
        await asyncio.sleep(AFTER_SECONDS)
        stop.set()
        await asyncio.gather(*clients)
    return (max(accepted) - answered) * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tenantgate-revocation-") as temp:
        dev = subprocess.Popen(
            [sys.executable, "-m", "tenantgate", "dev", "--port", str(free_port()),
             "--data-dir", str(Path(temp) / "stack")],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            start_new_session=True,
        )  # fmt: skip
        other = None
        try:
            assert dev.stdout is not None
            ready = json.loads(dev.stdout.readline())
            port = free_port()
            other = subprocess.Popen(
                [sys.executable, "-m", "tenantgate", "serve", "--port", str(port)],
                env={**os.environ, **ready["service_env"]},
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
            a, b = ready["url"], f"http://127.0.0.1:{port}"
            wait_until_up(b)
            admin = {"Authorization": f"Bearer {ready['admin_token']}"}
            created = httpx.post(
                f"{a}/admin/v1/tenants", json={"name": "revocations", "plan": "enterprise"},
                headers=admin, timeout=30,
            )  # fmt: skip
            created.raise_for_status()
            tenant_id = created.json()["tenant"]["id"]
            reach = [asyncio.run(_round(a, b, admin, tenant_id)) for _ in range(options.rounds)]
        finally:
            for process in (other, dev):
                if process is not None and process.poll() is None:
                    os.killpg(process.pid, signal.SIGINT)
                    process.wait(timeout=60)
    reach.sort()
    print(
        f"revocation through instance A, last 200 from instance B after A's answer "
        f"({options.rounds} rounds, {CLIENTS} clients on B): "
        f"median {statistics.median(reach):.1f} ms, max {reach[-1]:.1f} ms, "
        f"rounds with none after: {sum(r <= 0 for r in reach)}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
