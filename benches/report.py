"""Print the bench results as Markdown tables, for the README.

    python benches/report.py [bench-results.json]

Reads the pytest-benchmark JSON (``--benchmark-json``) and, if present, the memory numbers
``benches/memory.py`` stored in the same file. For each group: the native and the reference
median in nanoseconds per operation (round median / ``ops_per_round``), and how many times
faster the native one is.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from memory import JSON_KEY, table

# Groups in the order the README shows them; unknown groups follow, sorted.
ORDER = [
    "key.parse",
    "key.hash",
    "auth.verify_header.hit",
    "auth.verify_header.garbage",
    "limit.acquire",
    "limit.acquire.shared",
    "limit.acquire.shared.2proc",
    "auth+limit",
    "auth+limit.shared",
    "auth+limit.brake.hit",
    "auth+limit.brake.guess",
    "auth+limit.two_calls",
    "limit.cluster_lease.spend",
]


def per_op_ns(bench: dict[str, Any]) -> float:
    ops = bench.get("extra_info", {}).get("ops_per_round", 1)
    iterations = bench["stats"].get("iterations", 1)
    return float(bench["stats"]["median"]) / ops / iterations * 1e9


def timing_table(benchmarks: list[dict[str, Any]]) -> str:
    groups: dict[str, dict[str, float]] = {}
    for bench in benchmarks:
        impl = bench.get("extra_info", {}).get("impl")
        if impl in ("native", "reference") and bench.get("group"):
            groups.setdefault(bench["group"], {})[impl] = per_op_ns(bench)
    names = [g for g in ORDER if g in groups] + sorted(set(groups) - set(ORDER))
    lines = [
        "| operation | native (ns) | reference (ns) | native is |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name in names:
        nat, ref = groups[name].get("native"), groups[name].get("reference")
        cell = lambda v: "n/a" if v is None else f"{v:,.0f}"  # noqa: E731
        ratio = f"{ref / nat:.1f}x faster" if nat and ref else "n/a"
        lines.append(f"| `{name}` | {cell(nat)} | {cell(ref)} | {ratio} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    path = Path(argv[1] if len(argv) > 1 else "bench-results.json")
    data = json.loads(path.read_text())
    info = data.get("machine_info", {})
    cpu = info.get("cpu", {}).get("brand_raw", "unknown CPU")
    python = f"{info.get('python_implementation', 'Python')} {info.get('python_version', '')}"
    print(f"Median per operation, {python.strip()}, {cpu}:\n")
    print(timing_table(data.get("benchmarks", [])))
    if data.get(JSON_KEY):
        print("\nResident memory growth:\n")
        print(table(data[JSON_KEY]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
