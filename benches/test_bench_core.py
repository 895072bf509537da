"""The native core against the best pure-Python version of the same logic, side by side.

Each group has one member with ``extra_info["impl"] == "native"`` and one with
``"reference"``. A round makes ``OPS`` calls (driven from C by ``map`` where the operation is a
single call, so that loop overhead does not drown a ~100 ns operation), and
``extra_info["ops_per_round"]`` lets ``benches/report.py`` turn round times into nanoseconds per
operation. Every bench checks its answers: a fast wrong answer must fail, not win.

Run with ``pytest benches --benchmark-only --benchmark-json=bench-results.json``.
"""

from __future__ import annotations

import hmac
import multiprocessing
import os
import time
from collections import deque
from itertools import repeat
from types import ModuleType
from typing import Any

import pytest

import shared_buckets
from tenantgate import _native as native
from tenantgate import reference as ref

OPS = 1_000
ROUNDS = 300
WARMUP_ROUNDS = 20
PEPPER = b"bench-pepper-0123456789abcdefghij"
HOST = "api.tenantgate.test:443"

IMPLS = pytest.mark.parametrize("impl", [native, ref], ids=["native", "reference"])


def name_of(impl: ModuleType) -> str:
    return "native" if impl is native else "reference"


def run(benchmark: Any, impl: ModuleType, fn: Any) -> Any:
    """Time ``fn`` (which makes OPS calls) and record what the report needs."""
    benchmark.extra_info["impl"] = name_of(impl)
    benchmark.extra_info["ops_per_round"] = OPS
    result = benchmark.pedantic(fn, rounds=ROUNDS, iterations=1, warmup_rounds=WARMUP_ROUNDS)
    if benchmark.stats is not None:
        benchmark.extra_info["per_op_ns"] = benchmark.stats.stats.median / OPS * 1e9
    return result


def last(iterator: Any) -> Any:
    """Exhaust ``iterator`` in C, keeping only the last item."""
    return deque(iterator, maxlen=1)[0]


class Principal:
    """What the service caches per key: who it is and which (shared) quota applies."""

    __slots__ = ("key_id", "quota", "tenant_id")

    def __init__(self, tenant_id: str, key_id: str, quota: object) -> None:
        self.tenant_id = tenant_id
        self.key_id = key_id
        self.quota = quota


@pytest.fixture(scope="module")
def keys() -> list[str]:
    return [native.generate_key() for _ in range(OPS)]


def loaded_verifier(impl: ModuleType, keys: list[str], quota: object) -> tuple[Any, list[Any]]:
    """A verifier holding every key of ``keys``, each for its own tenant, on the real clock."""
    verifier = impl.Verifier(PEPPER, ttl_seconds=3600.0, negative_ttl_seconds=3600.0)
    verifier.bind_domain("other-tenant.example", "tenant-x")
    principals = []
    for i, key in enumerate(keys):
        principal = Principal(f"tenant-{i}", f"key-{i}", quota)
        verifier.insert(
            verifier.hash(key),
            tenant_id=principal.tenant_id,
            key_id=principal.key_id,
            expires_at=None,
            usable=True,
            payload=principal,
        )
        principals.append(principal)
    return verifier, principals


def charging_verifier(impl: ModuleType, keys: list[str], quota: object, **restriction: Any) -> Any:
    """A verifier holding every key of ``keys`` for its own tenant, charged against ``quota``
    (payload: the key's index), with ``restriction`` (``scopes``, ``networks``) on each."""
    verifier = impl.Verifier(PEPPER, ttl_seconds=3600.0)
    for i, key in enumerate(keys):
        verifier.insert(
            verifier.hash(key),
            tenant_id=f"tenant-{i}",
            key_id=f"key-{i}",
            expires_at=None,
            usable=True,
            payload=i,
            quota=quota,
            **restriction,
        )
    return verifier


@IMPLS
@pytest.mark.benchmark(group="key.parse")
def test_key_parse(benchmark, impl, keys):
    parse = impl.parse_key
    assert [parse(k).random for k in keys] == [k[8:-6] for k in keys]
    parsed = run(benchmark, impl, lambda: last(map(parse, keys)))
    assert (parsed.env, parsed.random, parsed.checksum) == ("live", keys[-1][8:-6], keys[-1][-6:])


@IMPLS
@pytest.mark.benchmark(group="key.hash")
def test_key_hash(benchmark, impl, keys):
    hash_ = impl.KeyHasher(PEPPER).hash
    assert hash_(keys[0]) == hmac.digest(PEPPER, keys[0].encode(), "sha256")
    digest = run(benchmark, impl, lambda: last(map(hash_, keys)))
    assert digest == hmac.digest(PEPPER, keys[-1].encode(), "sha256")


@IMPLS
@pytest.mark.benchmark(group="auth.verify_header.hit")
def test_verify_header_hit(benchmark, impl, keys):
    verifier, principals = loaded_verifier(impl, keys, impl.Quota(1e9, 1_000_000))
    headers = [f"Bearer {k}" for k in keys]
    verify = verifier.verify
    assert all(verify(h, HOST) is p for h, p in zip(headers, principals, strict=True))
    answer = run(benchmark, impl, lambda: last(map(verify, headers, repeat(HOST))))
    assert answer is principals[-1]


@IMPLS
@pytest.mark.benchmark(group="auth.verify_header.garbage")
def test_verify_header_garbage(benchmark, impl, keys):
    """What a scanner sends: wrong checksums, wrong schemes, junk. Refused before any hashing."""
    verifier, _ = loaded_verifier(impl, keys[:10], impl.Quota(1.0, 1))
    final_char = keys[0][-1]
    junk = [
        f"Bearer {keys[0][:-1]}{'x' if final_char != 'x' else 'y'}",
        "Basic YWRtaW46YWRtaW4=",
        "Bearer ",
        "Bearer tg_live_abc",
        f"Bearer {keys[1][:20]}",
        "Bearer ' OR 1=1 --",
        f"Token {keys[2]}",
        "x" * 60,
    ]
    headers = [junk[i % len(junk)] for i in range(OPS)]
    verify = verifier.verify
    assert all(verify(h, HOST) is None for h in headers)
    answer = run(benchmark, impl, lambda: last(map(verify, headers, repeat(HOST))))
    assert answer is None


@IMPLS
@pytest.mark.benchmark(group="limit.acquire")
def test_limit_acquire(benchmark, impl):
    limiter = impl.Limiter()
    quota = impl.Quota(1e9, 1_000_000_000)
    ids = [f"tenant-{i}" for i in range(OPS)]
    acquire = limiter.try_acquire
    assert all(acquire(i, quota).allowed for i in ids)
    decision = run(benchmark, impl, lambda: last(map(acquire, ids, repeat(quota))))
    assert decision.allowed
    assert decision.limit == 1_000_000_000
    assert len(limiter) == OPS


def authenticate_and_limit(verify: Any, acquire: Any, miss: type, headers: list[str]) -> Any:
    """The per-request path of the middleware: identify the key, then charge its tenant."""
    decision = None
    for header in headers:
        principal = verify(header, HOST)
        if principal is None or type(principal) is miss:
            raise AssertionError("every key is cached and valid")
        decision = acquire(principal.tenant_id, principal.quota)
    return decision


@IMPLS
@pytest.mark.benchmark(group="auth+limit.two_calls")
def test_auth_and_limit_two_calls(benchmark, impl, keys):
    """The per-request path as two calls: ``verify``, then ``try_acquire`` on the tenant."""
    quota = impl.Quota(1e9, 1_000_000_000)
    verifier, _ = loaded_verifier(impl, keys, quota)
    limiter = impl.Limiter()
    headers = [f"Bearer {k}" for k in keys]
    args = (verifier.verify, limiter.try_acquire, impl.Miss, headers)
    decision = run(benchmark, impl, lambda: authenticate_and_limit(*args))
    assert decision.allowed
    assert decision.remaining < 1_000_000_000
    assert len(limiter) == OPS


@IMPLS
@pytest.mark.parametrize("store", ["heap", "shared"])
def test_auth_and_limit(benchmark, impl, keys, store):
    """The per-request path of the middleware, as it runs: one ``verify_and_acquire`` call
    identifies the key and charges the quota (and bucket) cached with its record; the
    buckets on the heap (one process) or in the host's shared table (``tenantgate serve``)."""
    benchmark.group = "auth+limit" if store == "heap" else "auth+limit.shared"
    quota = impl.Quota(1e9, 1_000_000_000)
    verifier = charging_verifier(impl, keys, quota)
    verifier.bind_domain("other-tenant.example", "tenant-x")
    if store == "heap":
        limiter = impl.Limiter()
    else:
        fd, memory = shared_buckets.new_memory()
        limiter = shared_limiter(impl, memory, multiprocessing.get_context("spawn").Lock())
        os.close(fd)
    # Bytes, as the middleware passes them straight from the ASGI scope.
    headers = [f"Bearer {k}".encode() for k in keys]
    host = HOST.encode()
    fused = verifier.verify_and_acquire
    assert [fused(h, host, limiter).payload for h in headers] == list(range(OPS))
    decision = run(
        benchmark, impl, lambda: last(map(fused, headers, repeat(host), repeat(limiter)))
    )
    assert type(decision) is impl.Decision
    assert decision.payload == OPS - 1
    assert decision.allowed
    assert decision.remaining < 1_000_000_000
    if store == "heap":
        assert len(limiter) == OPS


@IMPLS
def test_auth_and_limit_restricted(benchmark, impl, keys):
    """A key restricted by scope and network, as the middleware runs it: the first call
    answers ``Restricted`` (charging nothing), the second passes the route's scope bit and the
    source address, which the record checks before it charges."""
    benchmark.group = "auth+limit.restricted"
    quota = impl.Quota(1e9, 1_000_000_000)
    verifier = charging_verifier(
        impl,
        keys,
        quota,
        scopes=0b0010101,  # the three :read scopes
        networks=["10.0.0.0/8", "2001:db8::/32"],
    )
    limiter = impl.Limiter()
    headers = [f"Bearer {k}".encode() for k in keys]
    host = HOST.encode()
    fused, restricted = verifier.verify_and_acquire, impl.Restricted

    def requests() -> Any:
        decision = None
        for header in headers:
            decision = fused(header, host, limiter)
            if type(decision) is restricted:
                decision = fused(header, host, limiter, 1, 0b1, "10.1.2.3")
        return decision

    decision = run(benchmark, impl, requests)
    assert type(decision) is impl.Decision
    assert decision.payload == OPS - 1
    assert decision.allowed


class Brake:
    """The guessing brake as :class:`tenantgate.identity.brake.GuessingBrake` checks it, over
    either implementation's limiter: an address is braked when its bucket of failures is
    empty (a zero-cost acquire reads it)."""

    __slots__ = ("_limiter", "_quota")

    def __init__(self, impl: ModuleType) -> None:
        self._limiter = impl.Limiter(capacity=100_000)
        # GuessingBrake's burst; a refill slow enough that the address stays braked over
        # every round (the check costs the same at any rate).
        self._quota = impl.Quota(1e-3, 20)

    def holds(self, address: str) -> bool:
        return bool(self._limiter.try_acquire(address, self._quota, 0).remaining < 1)

    def failed(self, address: str) -> None:
        self._limiter.try_acquire(address, self._quota)


def guarded_path(
    fused: Any, miss: type, host: bytes, limiter: Any, brake: Brake, headers: list[bytes]
) -> Any:
    """The middleware's front door: one fused call; on a miss, the brake is asked (for a key
    not known to be good) before any lookup would be made."""
    known_good: dict[bytes, float] = {}
    answer = None
    for header in headers:
        answer = fused(header, host, limiter)
        if type(answer) is miss:
            if answer.digest not in known_good and brake.holds("203.0.113.9"):
                answer = None  # the one 403, no lookup
            else:
                raise AssertionError("the guesser's address is braked")
    return answer


@IMPLS
@pytest.mark.parametrize("traffic", ["hit", "guess"])
def test_auth_and_limit_with_brake(benchmark, impl, keys, traffic):
    """``auth+limit`` as the middleware runs it, the brake included: ``hit`` — every key
    cached and valid (the brake is one type check away, never consulted); ``guess`` — every
    key unknown (a valid checksum, not cached) from an address already braked: the fused
    call's miss, then the brake's refusal, with no lookup."""
    benchmark.group = f"auth+limit.brake.{traffic}"
    quota = impl.Quota(1e9, 1_000_000_000)
    verifier = charging_verifier(impl, keys, quota)
    limiter = impl.Limiter()
    brake = Brake(impl)
    for _ in range(20):
        brake.failed("203.0.113.9")
    assert brake.holds("203.0.113.9")
    sent = keys if traffic == "hit" else [native.generate_key() for _ in range(OPS)]
    headers = [f"Bearer {k}".encode() for k in sent]
    args = (verifier.verify_and_acquire, impl.Miss, HOST.encode(), limiter, brake, headers)
    answer = run(benchmark, impl, lambda: guarded_path(*args))
    if traffic == "hit":
        assert type(answer) is impl.Decision
        assert answer.allowed
        assert answer.payload == OPS - 1
    else:
        assert answer is None
        assert len(verifier) == OPS, "no guess was looked up or cached"


@pytest.mark.benchmark(group="limit.cluster_lease.spend")
def test_cluster_lease_spend(benchmark):
    """The cluster tier's local path: a request spends one token its instance already
    leased (``ClusterBudget.spend_held``, which the middleware calls before any ``await``;
    no Redis round trip). There is no pure-Python twin: it is Python."""
    import uuid

    from tenantgate import cluster_limits

    budget = cluster_limits.ClusterBudget()
    quota = native.Quota(1e9, 1_000_000_000)
    tenants = [str(uuid.uuid4()) for _ in range(OPS)]
    for tenant in tenants:
        # A lease as a refill leaves it, large enough for every round (seeded here: the
        # round trip that fills it is measured by benches/cluster_leases.py).
        lease = budget._replace(tenant, quota.rate_per_second, quota.burst)
        lease.tokens, lease.expires = 1 << 62, float("inf")
    spend = budget.spend_held
    assert run(benchmark, native, lambda: all(map(spend, tenants, repeat(quota))))
    assert budget.round_trips == 0, "the local path never leaves the process"


def shared_limiter(impl: ModuleType, memory: Any, lock: Any) -> Any:
    """A limiter over shared ``memory``: the native table, or the pure-Python reference."""
    if impl is native:
        return native.Limiter.shared(memory)
    return shared_buckets.ReferenceSharedLimiter(memory, lock)


@IMPLS
@pytest.mark.benchmark(group="limit.acquire.shared")
def test_limit_acquire_shared(benchmark, impl):
    """One process charging buckets in memory shared by a host's workers."""
    fd, memory = shared_buckets.new_memory()
    lock = multiprocessing.get_context("spawn").Lock()
    limiter = shared_limiter(impl, memory, lock)
    quota = impl.Quota(1e9, 1_000_000_000)
    ids = [f"tenant-{i}" for i in range(OPS)]
    acquire = limiter.try_acquire
    assert all(acquire(i, quota).allowed for i in ids)
    decision = run(benchmark, impl, lambda: last(map(acquire, ids, repeat(quota))))
    assert decision.allowed
    assert decision.limit == 1_000_000_000
    os.close(fd)


@IMPLS
@pytest.mark.benchmark(group="limit.acquire.shared.2proc")
def test_limit_acquire_shared_two_processes(benchmark, impl):
    """As ``limit.acquire.shared``, while a second process charges the same buckets without
    pause (timed: this process's calls)."""
    fd, memory = shared_buckets.new_memory()
    context = multiprocessing.get_context("spawn")
    lock = context.Lock()
    limiter = shared_limiter(impl, memory, lock)  # writes the native header first
    quota = impl.Quota(*shared_buckets.CONTENDED_QUOTA)
    ids = [f"tenant-{i}" for i in range(OPS)]
    ready, stop = context.Event(), context.Event()
    other = context.Process(
        target=shared_buckets.contend,
        args=(name_of(impl), f"/proc/{os.getpid()}/fd/{fd}", lock, ids, ready, stop),
    )
    other.start()
    try:
        assert ready.wait(60), "the second process never started"
        acquire = limiter.try_acquire
        before = acquire(ids[0], quota, 0).remaining
        time.sleep(0.05)
        assert acquire(ids[0], quota, 0).remaining < before, "the other process charges too"
        decision = run(benchmark, impl, lambda: last(map(acquire, ids, repeat(quota))))
        assert decision.allowed
    finally:
        stop.set()
        other.join(30)
    os.close(fd)
