"""Tenants created at the same time each get a working, confined S3 identity: the IAM
changes of one creation do not overwrite another's (SeaweedFS keeps identities in one filer
file, read-modified-written)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.servers

TENANTS = 8


@pytest.fixture
def served_by_two(serve_tenantgate: Any, service_environment: dict[str, str]) -> Any:
    """`tenantgate serve` with two worker processes: creations run in both at once."""
    with serve_tenantgate(service_environment, workers=2) as url:
        yield url


def test_tenants_created_concurrently_each_get_their_own_working_identity(
    served_by_two: str, admin_headers: dict[str, str]
) -> None:
    served = served_by_two

    def create(number: int) -> dict[str, Any]:
        tier = "enterprise" if number % 2 else "standard"
        answer = httpx.post(
            f"{served}/admin/v1/tenants",
            json={"name": f"concurrent-{number}", "tier": tier},
            headers=admin_headers,
            timeout=60,
        )
        assert answer.status_code == 201, answer.text
        created: dict[str, Any] = answer.json()
        return created

    with ThreadPoolExecutor(max_workers=TENANTS) as pool:
        tenants = list(pool.map(create, range(TENANTS)))

    for tenant in tenants:
        headers = {"Authorization": f"Bearer {tenant['api_key']['key']}"}
        body = tenant["tenant"]["id"].encode()
        put = httpx.put(f"{served}/v1/files/me.txt", content=body, headers=headers, timeout=30)
        assert put.status_code == 201, put.text
    for tenant in tenants:
        headers = {"Authorization": f"Bearer {tenant['api_key']['key']}"}
        got = httpx.get(f"{served}/v1/files/me.txt", headers=headers, timeout=30)
        assert got.content == tenant["tenant"]["id"].encode()
        listed = httpx.get(f"{served}/v1/files", headers=headers, timeout=30).json()
        assert [f["path"] for f in listed["files"]] == ["me.txt"]
