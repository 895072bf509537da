"""Over one kept-alive HTTP connection to a real server, each request is its own tenant's."""

from __future__ import annotations

import httpx
import pytest

pytestmark = [pytest.mark.servers, pytest.mark.pgbouncer]


def test_one_connection_alternating_tenants_never_carries_one_into_the_next(served, make_tenant):
    first, second = make_tenant(plan="pro"), make_tenant(plan="pro")
    local_addresses = set()

    def note_connection(response: httpx.Response) -> None:
        stream = response.extensions["network_stream"]
        local_addresses.add(stream.get_extra_info("client_addr"))

    with httpx.Client(
        base_url=served,
        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        event_hooks={"response": [note_connection]},
    ) as client:
        for _ in range(10):
            for tenant in (first, second):
                me = client.get("/v1/me", headers=tenant.headers)
                assert me.status_code == 200
                assert me.json()["tenant_id"] == tenant.id
            # Right after an authenticated request, a request without a key is refused:
            # nothing of the previous caller stayed with the connection or the worker.
            assert client.get("/v1/me").status_code == 403
            assert client.get("/v1/items").status_code == 403

    assert len(local_addresses) == 1, "the requests did not share one kept-alive connection"
