"""An HSM key's verification on a miss against an ordinary key's hash, on a SoftHSM2 token.

What a miss of the native key table costs in hashing for each kind of key (``make bench``
runs this after the micro benches; it needs SoftHSM2)::

    python benches/hsm.py [--json bench-results.json]

- ``native pepper hash``: ``KeyHasher.hash(key)``, the HMAC-SHA-256 the native verifier
  computes for every request (and every miss);
- ``hsm digest, blocking``: one ``SHA256_HMAC`` through :class:`tenantgate.hsm.Hsm`'s shared
  session (lock, ``C_SignInit``/``C_Sign``), in the calling thread;
- ``hsm digest, awaited``: the same through ``await Hsm.digest`` — what the service does,
  the call on the HSM's own thread, one at a time (so this includes the thread hop);
- ``hsm digest, 16 concurrent``: 16 tasks awaiting digests at once: the shared session
  serialises them, so this is the HSM's throughput per process, not a latency.

Every digest is checked against the first: a fast wrong answer fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tenantgate.dev.hsm import EmbeddedHsm, softhsm_library, softhsm_util
from tenantgate.hsm import Hsm
from tenantgate.keys import KeyHasher, generate_key
from tenantgate.settings import HsmSettings

JSON_KEY = "hsm_verification"
CALLS = 2_000
ROUNDS = 5
CONCURRENCY = 16


def per_call_us(run_round: Callable[[], None], calls: int) -> float:
    """The median over ROUNDS of one round's time per call, in microseconds."""
    run_round()  # warm-up
    times = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        run_round()
        times.append(time.perf_counter() - started)
    return statistics.median(times) / calls * 1e6


def measure(hsm: Hsm) -> list[dict[str, Any]]:
    key = generate_key().encode()
    hasher = KeyHasher(os.urandom(32))
    expected_hsm = hsm.digest_blocking(key)
    expected_pepper = hasher.hash(key)
    assert expected_hsm != expected_pepper

    def pepper_round() -> None:
        for _ in range(CALLS):
            assert hasher.hash(key) == expected_pepper

    def blocking_round() -> None:
        for _ in range(CALLS):
            assert hsm.digest_blocking(key) == expected_hsm

    async def awaited() -> None:
        for _ in range(CALLS):
            assert await hsm.digest(key) == expected_hsm

    async def concurrent() -> None:
        async def worker() -> None:
            for _ in range(CALLS // CONCURRENCY):
                assert await hsm.digest(key) == expected_hsm

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))

    loop = asyncio.new_event_loop()
    try:
        rows = [
            ("native pepper hash", pepper_round),
            ("hsm digest, blocking", blocking_round),
            ("hsm digest, awaited", lambda: loop.run_until_complete(awaited())),
            (
                f"hsm digest, {CONCURRENCY} concurrent",
                lambda: loop.run_until_complete(concurrent()),
            ),
        ]
        return [
            {"what": what, "us_per_call": round(per_call_us(fn, CALLS), 2)} for what, fn in rows
        ]
    finally:
        loop.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=Path("bench-results.json"))
    args = parser.parse_args()
    if softhsm_library() is None or softhsm_util() is None:
        print("HSM bench skipped: SoftHSM2 is not installed (Debian package softhsm2)")
        return 0
    with tempfile.TemporaryDirectory() as folder:
        token = EmbeddedHsm(Path(folder))
        info = token.start()
        os.environ["SOFTHSM2_CONF"] = str(info.conf_path)  # before the library initialises
        hsm = Hsm(HsmSettings(Path(info.library_path), info.token_label, info.pin))
        try:
            rows = measure(hsm)
        finally:
            hsm.close()
    print(f"Hashing a key on a miss, {CALLS:,} calls, median of {ROUNDS} rounds:\n")
    print("| what | µs per call |\n| --- | ---: |")
    for row in rows:
        print(f"| {row['what']} | {row['us_per_call']} |")
    results = json.loads(args.json.read_text()) if args.json.exists() else {}
    results[JSON_KEY] = rows
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
