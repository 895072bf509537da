"""One bucket, many threads, the real clock: the limiter never grants more than the quota allows.

Eight Python threads take tokens from the same id as fast as they can. Whatever the
interleaving, the number granted over the run is at most ``burst + rate * elapsed`` (plus one
for rounding at the edges), and — so that a limiter that refuses everything cannot pass — at
least the burst plus a good share of what the rate allows.
"""

from __future__ import annotations

import sys
import threading
import time

import pytest

from tenantgate import _native as native
from tenantgate import reference as ref

THREADS = 8
RUN_SECONDS = 0.6
MIN_UPDATES = 20
IMPLS = pytest.mark.parametrize("impl", [native, ref], ids=["native", "reference"])


@pytest.fixture(autouse=True)
def frequent_thread_switches():
    """Switch threads every 0.1 ms instead of 5 ms: more interleavings, and a fair share of
    the interpreter for the thread that updates the quota."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    yield
    sys.setswitchinterval(before)


def run(limiter, quota, during=None) -> tuple[int, int, float]:
    """THREADS threads acquire from one id until ``during`` returns (default: RUN_SECONDS).

    Answers the total granted, the total refused and the seconds elapsed (measured from before
    the first acquire to after the last).
    """
    stop = threading.Event()
    ready = threading.Barrier(THREADS + 1)
    granted = [0] * THREADS
    refused = [0] * THREADS

    def worker(n: int) -> None:
        acquire = limiter.try_acquire
        ready.wait()
        ok = no = 0
        while not stop.is_set():
            if acquire("tenant-1", quota).allowed:
                ok += 1
            else:
                no += 1
        granted[n], refused[n] = ok, no

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    began = time.monotonic()
    ready.wait()
    if during is None:
        time.sleep(RUN_SECONDS)
    else:
        during()
    stop.set()
    for t in threads:
        t.join()
    return sum(granted), sum(refused), time.monotonic() - began


@IMPLS
def test_eight_threads_never_exceed_burst_plus_rate(impl: object):
    rate, burst = 2_000.0, 100
    limiter = impl.Limiter()
    quota = impl.Quota(rate, burst)
    granted, refused, elapsed = run(limiter, quota)

    assert refused > 0, "the threads must have run the bucket dry for this test to mean anything"
    assert granted <= burst + rate * elapsed + 1
    assert granted >= burst + rate * RUN_SECONDS * 0.5, "the limiter must still grant the rate"


@IMPLS
def test_quota_updates_mid_run_keep_the_bound_of_the_largest_quota(impl: object):
    quotas = [(1_000.0, 50), (3_000.0, 200), (500.0, 10)]
    limiter = impl.Limiter()
    quota = impl.Quota(*quotas[0])
    updates = 0

    def flip() -> None:
        nonlocal updates
        deadline = time.monotonic() + RUN_SECONDS
        # At least MIN_UPDATES changes, however slowly this thread gets scheduled on a busy
        # machine: the bound below is computed from the real elapsed time and changes.
        while time.monotonic() < deadline or updates < MIN_UPDATES:
            quota.update(*quotas[updates % len(quotas)])
            updates += 1
            time.sleep(0.02)

    granted, refused, elapsed = run(limiter, quota, flip)

    # Every grant moves the bucket's theoretical arrival time forward by at least 1/max_rate,
    # and that time can run at most the largest tolerance (burst/rate seconds) ahead of now.
    # A change forgives at most one largest tolerance: a raise forgives the debt left under
    # the old values (a plan change applies in full), a cut caps it at the new tolerance.
    max_rate = max(r for r, _ in quotas)
    max_tolerance = max(b / r for r, b in quotas)
    min_rate = min(r for r, _ in quotas)
    assert updates >= MIN_UPDATES, "the quota must really change during the run"
    assert refused > 0
    assert granted <= max_rate * (elapsed + max_tolerance * (1 + updates)) + 1
    assert granted >= min_rate * RUN_SECONDS * 0.5


@IMPLS
def test_a_shared_quota_caps_each_id_separately(impl: object):
    """Two ids under one quota: each gets its own burst + rate, not a share of one."""
    rate, burst = 1_000.0, 100
    limiter = impl.Limiter()
    quota = impl.Quota(rate, burst)
    counts = {"a": 0, "b": 0}
    stop = threading.Event()
    lock = threading.Lock()

    def worker(id_: str) -> None:
        n = 0
        while not stop.is_set():
            n += limiter.try_acquire(id_, quota).allowed
        with lock:
            counts[id_] += n

    began = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in "abab"]
    for t in threads:
        t.start()
    time.sleep(RUN_SECONDS / 2)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - began
    for n in counts.values():
        assert burst <= n <= burst + rate * elapsed + 1
