"""What an audit record adds to a mutating request: the append path timed alone and in place.

Run by ``make bench`` after the micro benches (or alone)::

    python benches/audit_append.py [--json bench-results.json]

Against an embedded PostgreSQL (fsync off, as in the tests: a commit's flush to disk costs both
variants the same and would drown the difference), as the service's own role, each
variant runs ``TRANSACTIONS`` transactions, first one at a time, then from ``CONCURRENCY``
tasks at once:

- ``change``: BEGIN, one INSERT of an item (a stand-in for a tenant's write), COMMIT;
- ``change+audit``: the same plus, in the same transaction, what ``record_change`` does for a
  tenant's write: ``SET LOCAL ROLE NONE``, the chain's advisory lock, its head, the native
  hash, the INSERT of the record, and the ``SET LOCAL`` back to the tenant's role;
- ``change+audit, one chain`` vs ``... 16 chains``: under concurrency, writers to one chain
  queue on its advisory lock (so it never forks); writers to different chains do not.

And per record, in Python: building its canonical fields, and hashing them with
:func:`tenantgate._native.audit_record_hash` against the pure-Python twin in
:mod:`tenantgate.reference`.
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
import timeit
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from tenantgate import _native as native
from tenantgate import reference
from tenantgate.audit import AuditEvent, append
from tenantgate.audit.records import canonical_fields
from tenantgate.db import Database
from tenantgate.db.migrator import migrate_public
from tenantgate.dev import EmbeddedPostgres, ensure_app_database

TRANSACTIONS = 2_000
CONCURRENCY = 16
HASH_CALLS = 20_000
JSON_KEY = "tenantgate_audit_append"

_ITEM = "INSERT INTO bench_items (id, data) VALUES ($1, $2::jsonb)"


def _event(tenant: uuid.UUID) -> AuditEvent:
    return AuditEvent(
        actor="tenant",
        method="POST",
        path="/v1/items",
        status=201,
        tenant_id=tenant,
        key_id=tenant,
        source_ip="127.0.0.1",
        request_id=secrets.token_hex(8),
        operation={"item_id": str(uuid.uuid4())},
    )


async def _change(database: Database, tenant: uuid.UUID | None) -> None:
    async with database.transaction() as connection:
        await connection.execute(_ITEM, uuid.uuid4(), '{"n": 1}')
        if tenant is not None:
            await connection.execute("SET LOCAL ROLE NONE")
            await append(connection, [_event(tenant)])
            await connection.execute("SET LOCAL ROLE NONE")  # stands for the tenant's scope


ROUNDS = 10
"""Each variant runs in this many slices, taken in turn with the other variants', so a load
that drifts during the run (this box is shared) weighs on every variant alike."""


async def _slice(
    work: Callable[[int], Awaitable[None]], transactions: int, concurrency: int
) -> tuple[list[float], float]:
    """Latencies of ``transactions`` runs of ``work`` from ``concurrency`` tasks, and the time
    they took together."""
    latencies: list[float] = []
    next_index = iter(range(transactions))

    async def worker() -> None:
        for index in next_index:
            started = time.perf_counter()
            await work(index)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - started


def _summary(latencies: list[float], elapsed: float) -> dict[str, float]:
    latencies.sort()
    return {
        "per_second": len(latencies) / elapsed,
        "p50_us": statistics.median(latencies) * 1e6,
        "p99_us": latencies[int(len(latencies) * 0.99)] * 1e6,
    }


async def _database_runs(url: str) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    async with asyncpg.create_pool(url, min_size=CONCURRENCY, max_size=CONCURRENCY) as pool:
        database = Database(pool)
        async with database.transaction() as connection:
            await connection.execute(
                "CREATE TABLE IF NOT EXISTS bench_items (id uuid PRIMARY KEY, data jsonb NOT NULL,"
                " created_at timestamptz NOT NULL DEFAULT now())"
            )
        one_chain = uuid.uuid4()
        chains = [uuid.uuid4() for _ in range(16)]
        variants: dict[str, Callable[[int], Awaitable[None]]] = {
            "change": lambda _: _change(database, None),
            "change+audit, one chain": lambda _: _change(database, one_chain),
            "change+audit, 16 chains": lambda index: _change(database, chains[index % 16]),
        }
        for concurrency in (1, CONCURRENCY):
            chosen = {
                name: work
                for name, work in variants.items()
                # one at a time, the number of chains changes nothing
                if concurrency > 1 or not name.endswith("16 chains")
            }
            for work in chosen.values():  # warm up
                await _slice(work, TRANSACTIONS // 20, concurrency)
            latencies: dict[str, list[float]] = {name: [] for name in chosen}
            elapsed = dict.fromkeys(chosen, 0.0)
            for _ in range(ROUNDS):
                for name, work in chosen.items():
                    taken, seconds = await _slice(work, TRANSACTIONS // ROUNDS, concurrency)
                    latencies[name] += taken
                    elapsed[name] += seconds
            for name in chosen:
                label = f"{name} (x{concurrency})"
                results[label] = _summary(latencies[name], elapsed[name])
                print(_line(label, results[label]), flush=True)
        assert await _verify(database), "the benchmark's chains must verify"
    return results


async def _verify(database: Database) -> bool:
    from tenantgate.audit import verify

    return (await verify(database)).ok


def _line(label: str, numbers: dict[str, float]) -> str:
    return (
        f"  {label:<32} {numbers['per_second']:>8,.0f} tx/s   p50 {numbers['p50_us']:>7,.0f} µs"
        f"   p99 {numbers['p99_us']:>7,.0f} µs"
    )


def _hash_runs() -> dict[str, float]:
    tenant = uuid.uuid4()
    now = datetime.now(UTC)
    previous = bytes(32)

    def fields() -> list[str | None]:
        return canonical_fields(
            tenant, str(tenant), 42, now, tenant, tenant, "tenant", "127.0.0.1", "POST",
            "/v1/items", 201, "req-1", {"item_id": str(tenant)},
        )  # fmt: skip

    built = fields()
    assert native.audit_record_hash(previous, built) == reference.audit_record_hash(
        previous, built
    ), "native and reference hashes must agree"
    calls: dict[str, Callable[[], object]] = {
        "canonical_fields": fields,
        "hash native": lambda: native.audit_record_hash(previous, built),
        "hash reference": lambda: reference.audit_record_hash(previous, built),
    }
    results = {}
    for name, call in calls.items():
        best = min(timeit.repeat(call, number=HASH_CALLS, repeat=5)) / HASH_CALLS
        results[f"{name} (µs)"] = best * 1e6
        print(f"  {name:<18} {best * 1e6:6.2f} µs")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=Path("bench-results.json"))
    args = parser.parse_args()
    print("audit append: per record")
    hashes = _hash_runs()
    with tempfile.TemporaryDirectory(prefix="tg-audit-bench-") as folder:
        server = EmbeddedPostgres(Path(folder), fast=True)
        server.start()
        try:
            url = asyncio.run(ensure_app_database(server.admin_url, secrets.token_urlsafe(18)))

            async def migrate() -> None:
                connection: Any = await asyncpg.connect(url)
                try:
                    await migrate_public(connection)
                finally:
                    await connection.close()

            asyncio.run(migrate())
            print(f"audit append: {TRANSACTIONS} transactions per variant")
            runs = asyncio.run(_database_runs(url))
        finally:
            server.stop()
    alone, audited = runs["change (x1)"], runs["change+audit, one chain (x1)"]
    added = audited["p50_us"] - alone["p50_us"]
    print(f"  the audit record adds {added:,.0f} µs (p50) to a write's transaction, one at a time")
    results = json.loads(args.json.read_text()) if args.json.exists() else {}
    results[JSON_KEY] = {"hash": hashes, "transactions": runs, "added_p50_us": added}
    args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
