"""`/metrics` counts the front door's decisions per plan (allowed, limited), key lookups, and
requests the guessing brake refused — never a series per tenant."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tenantgate.app import create_app
from tenantgate.keys import generate_key

pytestmark = pytest.mark.servers


def _samples(client: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = client.get("/metrics").text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_decisions_are_counted_per_plan(
    service_settings: Any, service: Any, admin_headers: dict[str, str], make_tenant: Any
) -> None:
    plan = f"counted-{uuid.uuid4().hex[:8]}"
    body = {"rate_per_second": 0.01, "burst": 3}
    assert service.put(f"/admin/v1/plans/{plan}", json=body, headers=admin_headers).is_success
    first, second = make_tenant(plan=plan), make_tenant(plan=plan)
    with TestClient(create_app(service_settings)) as client:
        statuses = [client.get("/v1/me", headers=first.headers).status_code for _ in range(5)]
        statuses += [client.get("/v1/me", headers=second.headers).status_code for _ in range(4)]
        for _ in range(3):
            client.get("/v1/me", headers={"Authorization": f"Bearer {generate_key()}"})
        samples = _samples(client)

    assert statuses == [200, 200, 200, 429, 429, 200, 200, 200, 429]
    decisions = "tenantgate_rate_limit_decisions_total"
    assert samples[(decisions, (("decision", "allowed"), ("plan", plan)))] == 6
    assert samples[(decisions, (("decision", "limited"), ("plan", plan)))] == 3
    assert samples[("tenantgate_key_lookups_total", ())] >= 5  # two tenants' keys, three made up
    assert samples[("tenantgate_key_lookups_in_flight", ())] == 0
    assert ("tenantgate_guessing_braked_total", ()) in samples
    assert not any("tenant" in dict(labels) for _, labels in samples)
