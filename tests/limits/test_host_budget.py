"""One budget per tenant across the worker processes of a host: the buckets live in memory
every worker maps, so two workers allow what one budget allows, not twice as much."""

from __future__ import annotations

import mmap
import multiprocessing
import os
import threading
import time
from typing import Any

import httpx
import pytest

from tenantgate._native import Limiter, ManualClock, Quota
from tenantgate.errors import SettingsError
from tenantgate.host_limits import HostTable, open_limiter
from tenantgate.settings import Settings


def _table(slots: int = 1000) -> tuple[int, mmap.mmap]:
    fd = os.memfd_create("tenantgate-test")
    size = Limiter.shared_size(slots)
    os.ftruncate(fd, size)
    return fd, mmap.mmap(fd, size)


def test_limiters_over_one_table_share_every_bucket_exactly():
    fd, memory = _table()
    clock = ManualClock()
    one = Limiter.shared(memory, clock=clock)
    two = Limiter.shared(mmap.mmap(fd, len(memory)), clock=clock)
    quota = Quota(10.0, 5)

    granted = [limiter.try_acquire("t", quota).allowed for limiter in (one, two) * 4]
    assert granted == [True] * 5 + [False] * 3
    refused = two.try_acquire("t", quota)
    assert refused.retry_after == pytest.approx(0.1)
    clock.advance(0.099_999_999)
    assert not one.try_acquire("t", quota).allowed, "not a nanosecond early"
    clock.advance(0.000_000_001)
    assert one.try_acquire("t", quota).allowed, "one token back after exactly 1/rate"
    assert not two.try_acquire("t", quota).allowed
    assert two.try_acquire("other", quota, 5).allowed, "other ids have their own buckets"
    assert len(one) == len(two) == 2
    assert one.is_shared
    assert not Limiter().is_shared
    os.close(fd)


def test_a_full_table_makes_room_with_idle_buckets_first():
    _, memory = _table(slots=7)  # one group of 7 slots
    clock = ManualClock()
    limiter = Limiter.shared(memory, clock=clock)
    quota = Quota(1.0, 10)
    assert limiter.capacity == 7
    assert limiter.try_acquire("busy", quota, 10).allowed
    for i in range(6):
        limiter.try_acquire(f"idle{i}", quota, 0)
    for i in range(20):
        limiter.try_acquire(f"new{i}", quota, 0)
    assert len(limiter) == 7
    assert not limiter.try_acquire("busy", quota).allowed, "the busy bucket kept its debt"


def test_memory_that_is_not_a_table_is_refused():
    with pytest.raises(ValueError, match="writable"):
        Limiter.shared(bytes(Limiter.shared_size(7)))
    with pytest.raises(ValueError, match="whole number"):
        Limiter.shared(bytearray(100))
    memory = bytearray(Limiter.shared_size(7))
    memory[:8] = b"garbage!"
    with pytest.raises(ValueError, match="not a tenantgate slot table"):
        Limiter.shared(memory)
    with pytest.raises(ValueError):
        Limiter.shared_size(0)


BURST = 100_000


def _hammer(path: str, attempts: int, start: Any, out: Any) -> None:
    fd = os.open(path, os.O_RDWR)
    limiter = Limiter.shared(mmap.mmap(fd, os.fstat(fd).st_size), clock=ManualClock())
    quota = Quota(1.0, BURST)
    start.wait()
    out.put(sum(limiter.try_acquire("hot", quota).allowed for _ in range(attempts)))


def test_two_processes_hammering_one_bucket_never_over_grant():
    """Time frozen in both processes (each its own clock at 0): exactly the burst is granted,
    however the attempts of the two interleave."""
    fd, memory = _table()
    Limiter.shared(memory)  # writes the header, as `tenantgate serve` does
    path = f"/proc/{os.getpid()}/fd/{fd}"
    context = multiprocessing.get_context("spawn")
    out, start = context.Queue(), context.Barrier(2)
    attempts = BURST * 3 // 4
    workers = [context.Process(target=_hammer, args=(path, attempts, start, out)) for _ in range(2)]
    for w in workers:
        w.start()
    granted = [out.get(timeout=60) for _ in workers]
    for w in workers:
        w.join(timeout=10)
    assert sum(granted) == BURST, granted
    assert min(granted) < attempts, "the processes contended for the last tokens"
    os.close(fd)


@pytest.mark.servers
def test_two_workers_allow_one_budget(serve_tenantgate, service_environment, make_tenant):
    """`tenantgate serve --workers 2`, a tenant on `free` (10/s, burst 20), 16 clients for
    3 s: the total allowed is within 10% of burst + rate * elapsed (each worker keeping its
    own buckets allowed 98 where this allows 50)."""
    tenant = make_tenant(plan="free")
    rate, burst, seconds = 10.0, 20, 3.0
    with serve_tenantgate(service_environment, workers=2) as url:
        # (sent, answered, status) of every request.
        log: list[tuple[float, float, int]] = []
        lock = threading.Lock()
        start = threading.Barrier(16)

        def client() -> None:
            with httpx.Client(base_url=url, headers=tenant.headers, timeout=10) as http:
                mine = []
                start.wait()
                deadline = time.monotonic() + seconds
                while (sent := time.monotonic()) < deadline:
                    status = http.get("/v1/me").status_code
                    mine.append((sent, time.monotonic(), status))
                with lock:
                    log.extend(mine)

        threads = [threading.Thread(target=client) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    statuses = [status for _, _, status in log]
    allowed = statuses.count(200)
    # The server decided every request between the first send and the last answer.
    elapsed = max(answered for _, answered, _ in log) - min(sent for sent, _, _ in log)
    budget = burst + rate * elapsed
    assert set(statuses) <= {200, 429}, set(statuses)
    assert statuses.count(429) > 0, "the clients asked for more than the budget"
    assert abs(allowed - budget) <= 0.1 * budget, (allowed, budget, len(statuses))


SETTINGS_ENVIRON = {
    "TENANTGATE_DATABASE_URL": "postgresql://tenantgate:secret@db.internal:5432/tenantgate",
    "TENANTGATE_REDIS_URL": "redis://:secret@cache.internal:6379/0",
    "TENANTGATE_ADMIN_TOKEN": "an-admin-token-of-32-characters!",
    "TENANTGATE_KEY_PEPPER": "00112233445566778899aabbccddeeff",
}


def test_a_process_with_no_table_named_keeps_its_own_buckets():
    limits = Settings.from_env(SETTINGS_ENVIRON).limits
    assert (limits.ratelimit_slots, limits.shared_memory) == (65_536, None)
    limiter = open_limiter(limits)
    assert not limiter.is_shared


def test_workers_attach_to_the_table_the_parent_names():
    with HostTable(slots=1000) as table:
        environ = SETTINGS_ENVIRON | table.environ()
        limits = Settings.from_env(environ).limits
        one, two = open_limiter(limits), open_limiter(limits)
    assert one.is_shared
    assert one.capacity >= 1000
    quota = Quota(1.0, 2)
    assert one.try_acquire("t", quota, 2).allowed
    assert not two.try_acquire("t", quota).allowed, "the mapping outlives the parent's name"


@pytest.mark.parametrize("value", ["0", "-5", "many"])
def test_a_malformed_table_size_is_named(value: str):
    with pytest.raises(SettingsError, match="TENANTGATE_RATELIMIT_SLOTS"):
        Settings.from_env(SETTINGS_ENVIRON | {"TENANTGATE_RATELIMIT_SLOTS": value})
