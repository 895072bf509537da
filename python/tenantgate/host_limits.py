"""One rate-limit budget per tenant across the worker processes of a host.

Each granian worker is its own process with its own heap, so buckets on the heap would give
every tenant one budget per worker. Instead, the process that starts the workers
(``tenantgate serve``, which ``tenantgate dev`` runs) makes one table of buckets in shared
memory before granian forks or spawns them (:class:`HostTable`), and names it to them in
``TENANTGATE_RATELIMIT_SHM``; each worker maps it (:func:`open_limiter`) and the native core
charges buckets in it with atomic compare-and-swaps, as it does on the heap. No process
does any I/O per request, and no lock is taken to charge a bucket.

The memory is a ``memfd`` (anonymous, never on a file system, gone with the last process
that maps it: nothing to clean up after a crash), named to the workers as
``/proc/<pid>/fd/<fd>`` of the parent, which they can open whether granian forks them or
spawns fresh interpreters; where there is no ``memfd`` (not Linux), a temporary file the
parent removes when it stops.

The table's size is fixed: ``TENANTGATE_RATELIMIT_SLOTS`` buckets (16 bytes each). When a
table's neighbourhood of an id is full, a new id takes the slot of an idle bucket (a full
one: nothing is lost) or, failing that, of the bucket closest to full, whose debt is then
forgiven; size the table for the tenants busy at once.

A single process (``tenantgate serve --workers 1``, a test's ``TestClient``, an application
using the plugin on its own) has no table named to it and keeps its buckets on the heap,
which is as good for one process, and faster.
"""

from __future__ import annotations

import mmap
import os
import tempfile
from typing import Final, Self

from tenantgate.limits import Limiter
from tenantgate.settings import LimitsSettings

__all__ = ["SHARED_MEMORY_VARIABLE", "HostTable", "open_limiter"]

SHARED_MEMORY_VARIABLE: Final = "TENANTGATE_RATELIMIT_SHM"
"""The variable that names the host's table to the worker processes (set by ``serve``)."""


class HostTable:
    """The host's bucket table: made (and its header written) by the parent process, which
    keeps it open for as long as it serves so that workers it starts later can attach."""

    __slots__ = ("_fd", "_file", "path", "slots")

    def __init__(self, slots: int) -> None:
        size = Limiter.shared_size(slots)
        self.slots = slots
        """The buckets asked for (the table holds at least as many)."""
        self._file: str | None = None
        if hasattr(os, "memfd_create"):
            self._fd = os.memfd_create("tenantgate-ratelimit", os.MFD_CLOEXEC)
            self.path = f"/proc/{os.getpid()}/fd/{self._fd}"
            """Where another process of this host opens the table (while this one holds
            it)."""
        else:  # pragma: no cover - not Linux
            self._fd, self._file = tempfile.mkstemp(prefix="tenantgate-ratelimit-")
            self.path = self._file
        try:
            os.ftruncate(self._fd, size)
            # Writes the header (seed, time origin) now, so workers never race to write it.
            Limiter.shared(mmap.mmap(self._fd, size))
        except BaseException:
            self.close()
            raise

    def environ(self) -> dict[str, str]:
        """The variables that make ``open_limiter`` in a worker attach to this table."""
        return {SHARED_MEMORY_VARIABLE: self.path}

    def close(self) -> None:
        """Stop naming the table; workers that mapped it keep their mapping."""
        os.close(self._fd)
        if self._file is not None:  # pragma: no cover - not Linux
            os.unlink(self._file)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_limiter(limits: LimitsSettings) -> Limiter:
    """The limiter over the host's table when one is named (``limits.shared_memory``), else
    one of this process's own."""
    path = limits.shared_memory
    if path is None:
        return Limiter(capacity=limits.ratelimit_slots)
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        # The limiter holds the mapping for as long as it lives (mmap refuses to close while
        # it is exported).
        return Limiter.shared(mmap.mmap(fd, size))
    finally:
        os.close(fd)
