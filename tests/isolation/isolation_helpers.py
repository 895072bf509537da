"""Helpers of the isolation tests: an app served in the test's own event loop, and tenants
made through its admin API."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from litestar import Litestar

from tenantgate.db.pool import statement_cache_size
from tenantgate.settings import Settings

BASE_URL = "http://testserver.local"


@dataclass(frozen=True)
class Caller:
    id: str
    key: str
    key_id: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


async def create_tenant(client: Any, admin_headers: dict[str, str], **fields: Any) -> Caller:
    """A new tenant through ``client``'s admin API."""
    body = {"name": f"iso-{uuid.uuid4().hex[:8]}", "plan": "pro", **fields}
    answer = await client.post("/admin/v1/tenants", json=body, headers=admin_headers)
    assert answer.status_code == 201, answer.text
    created = answer.json()
    return Caller(created["tenant"]["id"], created["api_key"]["key"], created["api_key"]["id"])


def as_the_service(settings: Settings) -> dict[str, Any]:
    """The asyncpg options the service connects to its URL with (behind PgBouncer in
    transaction mode: no statement cache), for tests opening their own connections."""
    return {
        "statement_cache_size": statement_cache_size(
            pooled_by_pgbouncer=settings.database.pgbouncer
        )
    }


@asynccontextmanager
async def serving(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """``app`` with its lifespan running, and a client calling it in this very event loop and
    context.

    Not Litestar's ``AsyncTestClient``: that one runs the application in a portal thread with
    an event loop of its own and hands each request over synchronously, so requests sent with
    ``asyncio.gather`` are served one at a time, resources made in the lifespan belong to the
    other loop, and context variables are not the test's.
    """
    async with app.lifespan():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            yield client
