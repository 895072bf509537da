"""Provisioning and deleting a tenant's storage: deletion removes its objects, its bucket
(enterprise) and its identity; an S3 step that fails, or cannot reach S3, leaves nothing of
the tenant behind in PostgreSQL or S3."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import uuid
from typing import Any

import asyncpg
import pytest
import redis.asyncio
from storage_helpers import (
    as_tenant,
    buckets,
    credentials_row,
    s3_error,
    shared_key,
    tenant_keys,
)

from tenantgate.cli import ExitCode
from tenantgate.cli.tenants import run_repair
from tenantgate.db import Database
from tenantgate.db.tenants import NewTenant
from tenantgate.errors import ServiceUnavailableError
from tenantgate.keys import KeyHasher
from tenantgate.naming import TenantNames
from tenantgate.settings import S3Settings
from tenantgate.storage import open_storage
from tenantgate.storage.provisioning import S3Identity
from tenantgate.tenancy import provisioning
from tenantgate.tenancy.keyring import KeyIssuer
from tenantgate.tenancy.provisioning import Provisioner, TenantUnderway
from tenantgate.tenancy.steps import service_steps

pytestmark = pytest.mark.servers


def _iam_user_exists(s3_settings: Any, tenant_id: str) -> bool:
    import boto3

    iam = boto3.session.Session().client(
        "iam",
        endpoint_url=s3_settings.endpoint_url,
        aws_access_key_id=s3_settings.access_key_id,
        aws_secret_access_key=s3_settings.secret_access_key,
        region_name=s3_settings.region,
    )
    users = {u["UserName"] for u in iam.list_users()["Users"]}
    return TenantNames.of(uuid.UUID(tenant_id)).s3_user in users


def _bucket_names(s3_settings: Any) -> set[str]:
    return {b["Name"] for b in s3_settings.client().list_buckets()["Buckets"]}


# -- deletion --------------------------------------------------------------------------------


@pytest.mark.parametrize("tier", ["standard", "enterprise"])
def test_deleting_a_tenant_removes_its_objects_bucket_and_identity(
    tier: str,
    make_tenant: Any,
    service: Any,
    admin_headers: dict[str, str],
    s3_settings: Any,
    service_settings: Any,
    service_environment: dict[str, str],
) -> None:
    doomed, kept = make_tenant(tier=tier), make_tenant()
    for number in range(5):
        path = f"dir/{number}.txt"
        assert (
            service.put(f"/v1/files/{path}", content=b"x", headers=doomed.headers).status_code
            == 201
        )
    service.put("/v1/files/kept.txt", content=b"kept", headers=kept.headers)
    keys = tenant_keys(service_environment, service_settings, doomed.id)
    names = buckets(service_settings)
    own = names.tenant(uuid.UUID(doomed.id))
    assert _iam_user_exists(s3_settings, doomed.id)
    if tier == "enterprise":
        assert own in _bucket_names(s3_settings)

    answer = service.delete(f"/admin/v1/tenants/{doomed.id}", headers=admin_headers)
    assert answer.status_code == 204, answer.text

    admin = s3_settings.client()
    left = admin.list_objects_v2(Bucket=names.shared, Prefix=shared_key(doomed.id, ""))
    assert left.get("Contents", []) == []
    assert own not in _bucket_names(s3_settings)
    assert not _iam_user_exists(s3_settings, doomed.id)
    assert credentials_row(service_environment, doomed.id) is None
    client = as_tenant(s3_settings, keys)
    assert s3_error(lambda: client.list_objects_v2(Bucket=names.shared)) == "InvalidAccessKeyId"
    assert service.get("/v1/files/kept.txt", headers=kept.headers).content == b"kept"
    assert _iam_user_exists(s3_settings, kept.id)


def test_the_stored_secret_is_sealed(
    make_tenant: Any, service_settings: Any, service_environment: dict[str, str]
) -> None:
    tenant = make_tenant()
    _, secret = tenant_keys(service_environment, service_settings, tenant.id)
    row = credentials_row(service_environment, tenant.id)
    assert secret.encode() not in bytes(row["sealed_secret"])


# -- a failed S3 step ------------------------------------------------------------------------


class InjectedFailure(Exception):
    pass


@dataclasses.dataclass
class FailingAfterItsWork:
    step: Any

    @property
    def name(self) -> str:
        return str(self.step.name)

    async def apply(self, tenant: TenantUnderway) -> None:
        await self.step.apply(tenant)
        raise InjectedFailure(self.step.name)

    async def undo(self, tenant: TenantUnderway) -> None:
        await self.step.undo(tenant)


def _create_with(
    service_environment: dict[str, str],
    settings: Any,
    tier: str,
    wrap: Any,
) -> tuple[BaseException, dict[str, int]]:
    """Create a tenant through the service's steps, the S3 one wrapped; the error it raised
    and what PostgreSQL holds of the tenant afterwards."""
    issuer = KeyIssuer(KeyHasher(settings.security.key_pepper))

    async def scenario() -> tuple[BaseException, dict[str, int]]:
        url = service_environment["TENANTGATE_DATABASE_URL"]
        client = redis.asyncio.Redis.from_url(service_environment["TENANTGATE_REDIS_URL"])
        try:
            async with asyncpg.create_pool(url, min_size=0, max_size=2) as pool:
                database = Database(pool)
                async with open_storage(settings, database) as storage:
                    steps = service_steps(client, settings, storage)
                    assert isinstance(steps[-1], S3Identity)
                    steps[-1] = wrap(steps[-1])
                    tenant = NewTenant(name="acme", plan="free", tier=tier, custom_domain=None)
                    key = issuer.issue(name="default", expires_at=None).row
                    with pytest.raises(Exception) as raised:
                        await Provisioner(database, steps).create(tenant, key)
                async with pool.acquire() as connection:
                    tenant_id = provisioning.uuid4()
                    names = TenantNames.of(tenant_id)
                    traces = {
                        "row": await connection.fetchval(
                            "SELECT count(*) FROM tenants WHERE id = $1", tenant_id
                        ),
                        "schema": await connection.fetchval(
                            "SELECT count(*) FROM pg_namespace WHERE nspname = $1", names.schema
                        ),
                        "credentials": await connection.fetchval(
                            "SELECT count(*) FROM storage_credentials WHERE tenant_id = $1",
                            tenant_id,
                        ),
                    }
                return raised.value, traces
        finally:
            await client.aclose()

    return asyncio.run(scenario())


@pytest.mark.parametrize("tier", ["standard", "enterprise"])
def test_an_s3_step_failing_after_its_work_undoes_everything(
    tier: str,
    service_environment: dict[str, str],
    service_settings: Any,
    s3_settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tenant_id = uuid.uuid4()
    monkeypatch.setattr(provisioning, "uuid4", lambda: tenant_id)
    error, traces = _create_with(service_environment, service_settings, tier, FailingAfterItsWork)
    assert isinstance(error, InjectedFailure)
    assert traces == {"row": 0, "schema": 0, "credentials": 0}
    assert not _iam_user_exists(s3_settings, str(tenant_id))
    assert buckets(service_settings).tenant(tenant_id) not in _bucket_names(s3_settings)


def test_an_unreachable_s3_fails_the_step_and_undoes_the_postgres_steps(
    service_environment: dict[str, str],
    service_settings: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tenant_id = uuid.uuid4()
    monkeypatch.setattr(provisioning, "uuid4", lambda: tenant_id)
    nowhere = dataclasses.replace(
        service_settings,
        s3=S3Settings(
            endpoint_url="http://127.0.0.1:9",  # the discard port: refused
            access_key_id="nobody",
            secret_access_key="nothing",
        ),
    )
    error, traces = _create_with(service_environment, nowhere, "standard", lambda step: step)
    assert isinstance(error, ServiceUnavailableError)
    # PostgreSQL is clean; the row waits, `provisioning`, for a repair that can reach S3.
    assert traces == {"row": 1, "schema": 0, "credentials": 0}
    assert run_repair(environ=service_environment, stderr=io.StringIO()) == ExitCode.OK
