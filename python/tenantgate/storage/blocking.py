"""boto3 off the event loop: its calls run in worker threads, at most a bounded number at once.

Why threads and not an async S3 client (aiobotocore): aiobotocore pins exact botocore versions
(it patches botocore's internals), which fights the ``boto3`` dependency plugin users already
have, and a file request is dominated by S3's own latency and the bytes, not by the thread hop
(measured here: ~70 µs per ``to_thread.run_sync``, against milliseconds for any S3 call).
The bound matters more: S3 calls take tokens from a limiter of their own, not from anyio's
default one (40 threads, which other blocking code shares), so a burst of slow S3 calls queues
among the file requests and an S3 outage stays within the file routes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, TypeVar

import anyio
import anyio.to_thread

from tenantgate.storage.errors import translating

__all__ = ["MAX_THREADS", "Blocking"]

MAX_THREADS: Final = 16
"""Worker threads S3 calls may occupy at once, per process."""

T = TypeVar("T")


class Blocking:
    """Runs blocking S3 calls in at most ``max_threads`` worker threads at once."""

    __slots__ = ("_limiter", "_max_threads")

    def __init__(self, max_threads: int = MAX_THREADS) -> None:
        self._max_threads = max_threads
        self._limiter: anyio.CapacityLimiter | None = None

    async def run(self, call: Callable[..., T], *args: object) -> T:
        """``call(*args)`` in a worker thread; S3's errors come out as tenantgate's."""
        if self._limiter is None:  # made on first use: it belongs to the running event loop
            self._limiter = anyio.CapacityLimiter(self._max_threads)
        with translating():
            return await anyio.to_thread.run_sync(
                call, *args, limiter=self._limiter, abandon_on_cancel=True
            )
