"""The caller's tenant lives in a context variable for exactly as long as its request, and in
the tasks that request starts; it never leaks into the next request, another request running
at the same time, or code outside any request."""

from __future__ import annotations

import asyncio

import pytest
from isolation_helpers import serving
from litestar import Litestar, Router, get
from litestar.params import FromPath

from tenantgate.app import create_app
from tenantgate.identity import current_tenant, require_tenant
from tenantgate.plugin import TenantGatePlugin

pytestmark = [pytest.mark.servers, pytest.mark.anyio, pytest.mark.pgbouncer]


def _tenant_id() -> str | None:
    tenant = current_tenant.get()
    return None if tenant is None else str(tenant.tenant_id)


def _probe_app(settings):
    """A user's app: the plugin and two tenant routes that read the context variable."""
    plugin = TenantGatePlugin(settings)
    recorded: dict[str, str | None] = {}
    tasks: set[asyncio.Task[None]] = set()

    async def record_later(label: str) -> None:
        await asyncio.sleep(0.2)
        recorded[label] = _tenant_id()

    @get("/whoami")
    async def whoami() -> dict[str, str | None]:
        before = _tenant_id()
        await asyncio.sleep(0.05)
        return {"before": before, "after": _tenant_id()}

    @get("/spawn/{label:str}")
    async def spawn(label: FromPath[str]) -> dict[str, str | None]:
        task = asyncio.create_task(record_later(label))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        await asyncio.sleep(0.05)
        return {"tenant": _tenant_id()}

    app = Litestar(
        route_handlers=[
            Router("/", route_handlers=[whoami, spawn], middleware=plugin.tenant_middleware)
        ],
        plugins=[plugin],
    )
    return app, recorded, tasks


async def test_after_a_request_the_test_context_has_no_tenant(service_settings, make_tenant):
    tenant = make_tenant()
    async with serving(create_app(service_settings)) as client:
        answer = await client.get("/v1/me", headers=tenant.headers)
        assert answer.status_code == 200
        assert current_tenant.get() is None
        with pytest.raises(LookupError):
            require_tenant()


async def test_sequential_requests_of_different_tenants_each_see_their_own(
    service_settings, make_tenant
):
    a, b = make_tenant(), make_tenant()
    app, _, _ = _probe_app(service_settings)
    async with serving(app) as client:
        for caller in (a, b, a):
            answer = await client.get("/whoami", headers=caller.headers)
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"before": caller.id, "after": caller.id}
            assert current_tenant.get() is None


async def test_concurrent_requests_of_different_tenants_each_see_their_own(
    service_settings, make_tenant
):
    callers = [make_tenant() for _ in range(3)]
    app, _, _ = _probe_app(service_settings)
    async with serving(app) as client:
        answers = await asyncio.gather(
            *(client.get("/whoami", headers=caller.headers) for caller in callers * 4)
        )
    for caller, answer in zip(callers * 4, answers, strict=True):
        assert answer.json() == {"before": caller.id, "after": caller.id}


async def test_a_task_started_by_a_request_keeps_that_requests_tenant(
    service_settings, make_tenant
):
    a, b = make_tenant(), make_tenant()
    app, recorded, tasks = _probe_app(service_settings)
    async with serving(app) as client:
        first, second = await asyncio.gather(
            client.get("/spawn/a", headers=a.headers),
            client.get("/spawn/b", headers=b.headers),
        )
        assert first.json() == {"tenant": a.id}
        assert second.json() == {"tenant": b.id}
        # The tasks outlive their requests; b's request ran while a's task was waiting.
        assert recorded == {}
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=5)

        async def outside() -> str | None:
            await asyncio.sleep(0.01)
            return _tenant_id()

        assert await asyncio.create_task(outside()) is None

    assert recorded == {"a": a.id, "b": b.id}
