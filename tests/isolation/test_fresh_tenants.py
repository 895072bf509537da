"""A tenant is usable by every pooled connection the moment its creation is answered, also
while other tenants are created and deleted side by side."""

from __future__ import annotations

import asyncio

import pytest
from isolation_helpers import create_tenant, serving

from tenantgate.app import create_app

pytestmark = [pytest.mark.servers, pytest.mark.anyio]

ROUNDS = 6
TENANTS_A_ROUND = 8
# Every tenant is deleted by the end: each also holds an S3 identity, and SeaweedFS's IAM writes
# slow down with the number of identities it keeps.


async def test_tenants_created_and_deleted_concurrently_are_served_at_once(
    service_settings, admin_headers
):
    # PostgreSQL backends cache the roles their login may become; one that computed its list
    # while a new tenant role's grant was committing refused that role (a 500) until such
    # connections were replaced on the refusal: seen here in most runs of this test.
    refused = []
    left: list = []
    async with serving(create_app(service_settings)) as client:
        for _round in range(ROUNDS):
            callers = await asyncio.gather(
                *(create_tenant(client, admin_headers) for _ in range(TENANTS_A_ROUND))
            )

            async def use(caller):
                answer = await client.post(
                    "/v1/items", json={"data": {"of": caller.id}}, headers=caller.headers
                )
                if answer.status_code != 201:
                    refused.append((caller.id, answer.status_code, answer.text))

            async def delete(caller):
                answer = await client.delete(
                    f"/admin/v1/tenants/{caller.id}", headers=admin_headers
                )
                assert answer.status_code == 204, answer.text

            await asyncio.gather(*(use(caller) for caller in callers for _ in range(3)))
            assert refused == []
            # Half of this round's tenants are deleted, together with the last round's other half.
            await asyncio.gather(
                *(delete(caller) for caller in callers[TENANTS_A_ROUND // 2 :]),
                *(delete(caller) for caller in left),
            )
            left = callers[: TENANTS_A_ROUND // 2]
        await asyncio.gather(*(delete(caller) for caller in left))
