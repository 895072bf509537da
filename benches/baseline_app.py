"""The single-tenant baseline of `make bench-e2e`: plain Litestar + asyncpg, no tenancy.

What a team would write without tenantgate: one connection pool with asyncpg's defaults, one
route reading a row by primary key, the row returned as JSON — the same row shape and the same
JSON codec as tenantgate's ``GET /v1/items/{id}``, so the difference measured is what
identification, rate limiting, the cache and tenant isolation cost. Served by granian with the
same worker count as the service. Configured by ``BASELINE_DATABASE_URL``; the table is
``baseline.items`` (made by ``benches/e2e.py``).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
import msgspec
from litestar import Litestar, get
from litestar.exceptions import NotFoundException


class Item(msgspec.Struct, frozen=True):
    id: UUID
    data: dict[str, Any]
    created_at: datetime
    updated_at: datetime


_pool: asyncpg.Pool | None = None


@asynccontextmanager
async def _lifespan(app: Litestar) -> AsyncIterator[None]:
    global _pool
    _pool = await asyncpg.create_pool(os.environ["BASELINE_DATABASE_URL"], min_size=1, max_size=10)
    try:
        yield
    finally:
        await _pool.close()


@get("/items/{item_id:uuid}")
async def get_item(item_id: UUID) -> Item:
    assert _pool is not None
    row = await _pool.fetchrow(
        "SELECT id, data, created_at, updated_at FROM baseline.items WHERE id = $1", item_id
    )
    if row is None:
        raise NotFoundException()
    return Item(row["id"], msgspec.json.decode(row["data"]), row["created_at"], row["updated_at"])


@get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


app = Litestar([get_item, healthz], lifespan=[_lifespan])
