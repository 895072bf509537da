"""The brake on key guessing: a flood of made-up keys with valid checksums from one address
costs at most the brake's burst of PostgreSQL lookups (plus its refill), every one of them is
the one 403, and a tenant whose key is already known keeps being served from that address.
The source address is the socket peer unless a trusted proxy forwarded the request."""

from __future__ import annotations

from ipaddress import ip_network
from typing import Any

import pytest
from litestar.testing import TestClient

from tenantgate.app import create_app
from tenantgate.identity.brake import FAILURES_BURST, FAILURES_PER_SECOND, source_address
from tenantgate.identity.responses import FORBIDDEN_BODY
from tenantgate.keys import generate_key
from tenantgate.plugin import TenantGatePlugin


@pytest.mark.servers
def test_a_flood_of_made_up_keys_is_braked_and_a_known_tenant_still_served(
    service_settings: Any, make_tenant: Any
) -> None:
    tenant = make_tenant(plan="enterprise")
    # Records trusted 50 ms: the known tenant's record expires many times during the flood, and
    # its key must still get through the brake (known good), not be taken for a guess.
    plugin = TenantGatePlugin(service_settings, key_cache_ttl_seconds=0.05)
    app = create_app(plugin=plugin)
    with TestClient(app) as client:
        assert client.get("/v1/me", headers=tenant.headers).status_code == 200  # now known
        before = plugin.identity.keys.lookups

        flood = 300
        for _ in range(flood):
            answer = client.get("/v1/me", headers={"Authorization": f"Bearer {generate_key()}"})
            assert (answer.status_code, answer.content) == (403, FORBIDDEN_BODY)
            assert client.get("/v1/me", headers=tenant.headers).status_code == 200

        assert plugin.identity.keys.lookups > before  # the known key's records did expire
        # The flood took a few seconds at most: the burst, and the refill meanwhile; the known
        # key's own lookups (one per expired record) come on top, and are never braked.
        assert plugin.brake.braked >= flood - FAILURES_BURST - 10 * FAILURES_PER_SECOND


def _scope(peer: str, *forwarded: str) -> dict[str, Any]:
    headers = [(b"x-forwarded-for", value.encode()) for value in forwarded]
    return {"client": (peer, 40000), "headers": headers}


def test_the_source_is_the_peer_unless_a_trusted_proxy_forwarded_the_request() -> None:
    proxies = [ip_network("10.0.0.0/8")]
    assert source_address(_scope("203.0.113.7", "198.51.100.1"), proxies) == "203.0.113.7"
    assert source_address(_scope("10.1.1.1", "198.51.100.1"), proxies) == "198.51.100.1"
    assert source_address(_scope("10.1.1.1", "1.2.3.4, 198.51.100.1, 10.2.2.2"), proxies) == (
        "198.51.100.1"
    )
    assert source_address(_scope("10.1.1.1", "spoofed, 10.2.2.2"), proxies) == "10.1.1.1"
    assert source_address(_scope("10.1.1.1"), proxies) == "10.1.1.1"
    assert source_address(_scope("203.0.113.7", "198.51.100.1")) == "203.0.113.7"
