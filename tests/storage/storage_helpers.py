"""What the storage tests share: a tenant's own S3 credentials (read and unsealed as the
service does), boto3 clients as the tenant or the administrator, and where a tenant lives."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import botocore.exceptions

from tenantgate.naming import BucketNames, TenantNames
from tenantgate.storage.sealing import unseal


def credentials_row(service_environment: dict[str, str], tenant_id: str) -> Any:
    async def read() -> Any:
        connection = await asyncpg.connect(service_environment["TENANTGATE_DATABASE_URL"])
        try:
            return await connection.fetchrow(
                "SELECT access_key_id, sealed_secret FROM storage_credentials WHERE tenant_id = $1",
                uuid.UUID(tenant_id),
            )
        finally:
            await connection.close()

    return asyncio.run(read())


def tenant_keys(
    service_environment: dict[str, str], service_settings: Any, tenant_id: str
) -> tuple[str, str]:
    """The tenant's S3 access key id and secret, as the service unseals them."""
    row = credentials_row(service_environment, tenant_id)
    assert row is not None, "the tenant has no stored S3 credentials"
    secret = unseal(
        service_settings.security.key_pepper,
        uuid.UUID(tenant_id),
        row["access_key_id"],
        bytes(row["sealed_secret"]),
    )
    return row["access_key_id"], secret


def as_tenant(s3_settings: Any, keys: tuple[str, str]) -> Any:
    """A boto3 S3 client signing with the tenant's own keys (SigV4, path-style)."""
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3",
        endpoint_url=s3_settings.endpoint_url,
        aws_access_key_id=keys[0],
        aws_secret_access_key=keys[1],
        region_name=s3_settings.region,
        config=Config(
            s3={"addressing_style": "path"},
            signature_version="s3v4",
            retries={"max_attempts": 1, "mode": "standard"},
        ),
    )


def buckets(service_settings: Any) -> BucketNames:
    return BucketNames(service_settings.s3.bucket_prefix)


def shared_key(tenant_id: str, path: str) -> str:
    return TenantNames.of(uuid.UUID(tenant_id)).s3_prefix + path


def s3_error(call: Any) -> str:
    """The S3 error code ``call()`` fails with (it must fail)."""
    try:
        call()
    except botocore.exceptions.ClientError as exc:
        return str(exc.response.get("Error", {}).get("Code", ""))
    raise AssertionError("the call succeeded")
