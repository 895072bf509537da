"""Shared-memory rate limiting for the benches: the pure-Python reference of the native
shared table, and a second process that contends for the same buckets.

Python has no atomic compare-and-swap, so the best pure-Python table in shared memory takes
a lock shared by the processes (a POSIX semaphore, ``multiprocessing.Lock``) around each
decision: open addressing over (fingerprint, TAT) word pairs in the mapping, fingerprints
from BLAKE2b (``hash()`` of a string differs between processes), time from
``time.monotonic_ns`` (``CLOCK_MONOTONIC``, one time base for the host). GCRA as in
:mod:`tenantgate.reference` (one quota, no plan-change tags: the benches never change it).
"""

from __future__ import annotations

import hashlib
import mmap
import os
import time
from typing import Any

from tenantgate import _native as native
from tenantgate import reference as ref

SLOTS = 4096

CONTENDED_QUOTA = (1.0, 1_000_000_000)
"""Refills slowly enough that every charge shows (and all are allowed in a bench's time)."""


def new_memory(slots: int = SLOTS) -> tuple[int, mmap.mmap]:
    """A zeroed memfd mapping big enough for either table, and its descriptor."""
    fd = os.memfd_create("tenantgate-bench")
    size = max(native.Limiter.shared_size(slots), 16 * slots)
    os.ftruncate(fd, size)
    return fd, mmap.mmap(fd, size)


def attach(path: str) -> mmap.mmap:
    """Map the memory another process named by ``path`` (``/proc/<pid>/fd/<fd>``)."""
    fd = os.open(path, os.O_RDWR)
    try:
        return mmap.mmap(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


class ReferenceSharedLimiter:
    """GCRA buckets in shared memory, in pure Python, under one lock shared by processes."""

    __slots__ = ("_lock", "_slots", "_words")

    def __init__(self, memory: mmap.mmap, lock: Any, slots: int = SLOTS) -> None:
        self._words = memoryview(memory).cast("Q")
        self._lock = lock
        self._slots = slots

    def try_acquire(self, id: str, quota: ref.Quota, cost: int = 1) -> ref.Decision:
        _rate, burst, interval, tau = quota._value[:4]
        fp = int.from_bytes(hashlib.blake2b(id.encode(), digest_size=8).digest()) or 1
        words, slots = self._words, self._slots
        with self._lock:
            now = time.monotonic_ns()
            i = fp % slots
            for _ in range(slots):
                held = words[2 * i]
                if held == fp or held == 0:
                    break
                i = (i + 1) % slots
            else:
                raise RuntimeError("table full")
            words[2 * i] = fp
            tat = words[2 * i + 1]
            used = min(tat - now if tat > now else 0, tau)
            after = used + interval * cost
            if after <= tau and cost <= burst:
                if cost:
                    words[2 * i + 1] = now + after
                return ref.Decision(
                    True, burst, min((tau - after) // interval, burst), after / 1e9, 0.0
                )
        return ref.Decision(False, burst, (tau - used) // interval, used / 1e9, (after - tau) / 1e9)


def contend(impl: str, path: str, lock: Any, ids: list[str], ready: Any, stop: Any) -> None:
    """Charge ``ids`` round and round in the table at ``path`` until ``stop`` is set: the
    second process of the contended benches."""
    memory = attach(path)
    if impl == "native":
        acquire = native.Limiter.shared(memory).try_acquire
        quota: Any = native.Quota(*CONTENDED_QUOTA)
    else:
        acquire = ReferenceSharedLimiter(memory, lock).try_acquire
        quota = ref.Quota(*CONTENDED_QUOTA)
    ready.set()
    while not stop.is_set():
        for i in ids:
            acquire(i, quota)
