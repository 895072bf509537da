"""Audit records written off the request path: a bounded queue and one writer task.

Requests that change nothing in PostgreSQL themselves — operator requests, cache writes,
refused identifications — hand their event to :meth:`AuditWriter.record`, which never waits: a
full queue drops the event and counts it (``tenantgate_audit_dropped_total``), so a flood of
refused keys can never slow the 403. The writer task appends what is queued in batches (one
transaction each); PostgreSQL unreachable, it keeps the batch and tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Final

from tenantgate.audit.log import append
from tenantgate.errors import ServiceUnavailableError

if TYPE_CHECKING:
    from tenantgate.audit.records import AuditEvent
    from tenantgate.db.database import Database

__all__ = ["BATCH", "CAPACITY", "AuditWriter"]

_logger = logging.getLogger("tenantgate.audit")

CAPACITY: Final = 10_000
"""Events waiting to be written, at most; more are dropped and counted."""

BATCH: Final = 500
"""Events written in one transaction, at most."""

_RETRY_SECONDS: Final = 0.5
_DRAIN_SECONDS: Final = 5.0


class AuditWriter:
    """Queues audit events and writes them in batches."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self._queue: asyncio.Queue[AuditEvent] = asyncio.Queue(capacity)
        self._busy = 0
        self.dropped = 0
        """Events dropped because the queue was full (a counter for ``/metrics``)."""
        self.written = 0
        """Events written so far."""

    def record(self, event: AuditEvent) -> None:
        """Queue ``event``; never waits (a full queue drops it and counts it)."""
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1

    @property
    def pending(self) -> int:
        """Events queued or being written."""
        return self._queue.qsize() + self._busy

    @contextlib.asynccontextmanager
    async def running(self, database: Database) -> AsyncIterator[None]:
        """Write queued events to ``database`` until the block ends, then what is left (for a
        few seconds at most)."""
        task = asyncio.create_task(self._write_forever(database))
        try:
            yield
        finally:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_DRAIN_SECONDS):
                    await self._queue.join()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _write_forever(self, database: Database) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            self._busy = len(batch)
            try:
                await self._write(database, batch)
            finally:
                self._busy = 0
                for _ in batch:
                    self._queue.task_done()

    async def _write(self, database: Database, batch: list[AuditEvent]) -> None:
        while True:
            try:
                async with database.transaction() as connection:
                    await append(connection, batch)
            except ServiceUnavailableError:
                await asyncio.sleep(_RETRY_SECONDS)
            except Exception:
                _logger.exception("writing %d audit records failed; they are lost", len(batch))
                self.dropped += len(batch)
                return
            else:
                self.written += len(batch)
                return
