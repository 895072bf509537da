"""Resident memory of 1,000,000 limiter buckets and 1,000,000 verifier records.

Run as a script (``make bench`` does, after the timing benches)::

    python benches/memory.py [--entries 1000000] [--json bench-results.json]

Each measurement runs in a fresh interpreter: it reads the resident set size, fills one
structure, reads it again and reports the growth, native and reference side by side. The
limiter gets one bucket per distinct id (ids are made on the fly and not kept, so only what
the structure itself retains is counted); the verifier gets one record per distinct digest,
with a distinct key id, one of 1,000 tenant ids, and one shared payload object. Both run with
a capacity above the entry count, so nothing is evicted.

The table is printed, and stored under the ``"tenantgate_memory"`` key of the JSON file
(``bench-results.json``, git-ignored; created if missing), where ``benches/report.py`` reads
it.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

CASES = [
    ("limiter", "native"),
    ("limiter", "reference"),
    ("verifier", "native"),
    ("verifier", "reference"),
]
JSON_KEY = "tenantgate_memory"
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE_SIZE


def load(impl: str) -> Any:
    if impl == "native":
        from tenantgate import _native

        return _native
    from tenantgate import reference

    return reference


def fill_limiter(mod: Any, n: int) -> Any:
    limiter = mod.Limiter(capacity=2 * n)
    # A slow quota, so every bucket stays busy (not idle) for the whole run.
    quota = mod.Quota(0.001, 10)
    acquire = limiter.try_acquire
    for i in range(n):
        if not acquire(f"tenant-{i:07d}", quota).allowed:
            raise AssertionError("a first acquire must be allowed")
    return limiter


def fill_verifier(mod: Any, n: int) -> Any:
    verifier = mod.Verifier(b"memory-bench-pepper-0123456789ab", capacity=2 * n, ttl_seconds=3600)
    payload = object()
    insert = verifier.insert
    sha256 = hashlib.sha256
    for i in range(n):
        insert(
            sha256(i.to_bytes(8, "little")).digest(),
            tenant_id=f"tenant-{i % 1000:04d}",
            key_id=f"key-{i:07d}",
            expires_at=None,
            usable=True,
            payload=payload,
        )
    return verifier


def measure(structure: str, impl: str, n: int) -> dict[str, Any]:
    mod = load(impl)
    fill = fill_limiter if structure == "limiter" else fill_verifier
    # Warm up: import paths, first allocations, interned ints and the like.
    fill(mod, 1_000)
    gc.collect()
    before = rss_bytes()
    held = fill(mod, n)
    gc.collect()
    after = rss_bytes()
    entries = len(held)
    if entries != n:
        raise AssertionError(f"{structure}/{impl} holds {entries} entries, expected {n}")
    growth = after - before
    return {
        "structure": structure,
        "impl": impl,
        "entries": entries,
        "rss_growth_bytes": growth,
        "bytes_per_entry": growth / entries,
    }


def run_all(n: int) -> list[dict[str, Any]]:
    results = []
    for structure, impl in CASES:
        out = subprocess.run(
            [sys.executable, __file__, "--child", structure, impl, "--entries", str(n)],
            check=True,
            capture_output=True,
            text=True,
        )
        results.append(json.loads(out.stdout))
    return results


def table(results: list[dict[str, Any]]) -> str:
    by = {(r["structure"], r["impl"]): r for r in results}
    n = results[0]["entries"]
    lines = [
        f"| {n:,} entries | native MiB | reference MiB | native B/entry "
        "| reference B/entry | ratio |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for structure in ("limiter", "verifier"):
        nat, ref = by[(structure, "native")], by[(structure, "reference")]
        ratio = ref["rss_growth_bytes"] / max(nat["rss_growth_bytes"], 1)
        lines.append(
            f"| {structure} | {nat['rss_growth_bytes'] / 2**20:.1f} "
            f"| {ref['rss_growth_bytes'] / 2**20:.1f} | {nat['bytes_per_entry']:.0f} "
            f"| {ref['bytes_per_entry']:.0f} | {ratio:.1f}x |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--json", type=Path, default=Path("bench-results.json"))
    parser.add_argument("--child", nargs=2, metavar=("STRUCTURE", "IMPL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        print(json.dumps(measure(*args.child, args.entries)))
        return 0

    results = run_all(args.entries)
    print("Resident memory growth\n")
    print(table(results))
    data: dict[str, Any] = {}
    if args.json.exists():
        data = json.loads(args.json.read_text())
    data[JSON_KEY] = results
    args.json.write_text(json.dumps(data, indent=4))
    print(f"\n(stored under {JSON_KEY!r} in {args.json})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
