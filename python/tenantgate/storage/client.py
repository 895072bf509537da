"""The service's S3 client: created and closed here only.

boto3 blocks, so every call goes through a worker thread (``anyio.to_thread.run_sync``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final

import anyio.to_thread
import boto3
import botocore.config

from tenantgate.storage.errors import translating

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from tenantgate.settings import S3Settings

__all__ = ["CONNECT_TIMEOUT_SECONDS", "READ_TIMEOUT_SECONDS", "open_s3", "ping"]

CONNECT_TIMEOUT_SECONDS: Final = 2.0
"""How long opening a connection to the S3 endpoint may take."""

READ_TIMEOUT_SECONDS: Final = 10.0
"""How long one S3 response may take to start arriving."""


@asynccontextmanager
async def open_s3(settings: S3Settings) -> AsyncIterator[S3Client]:
    """A boto3 S3 client for ``settings`` (it connects on first use); closed on exit."""
    client = await anyio.to_thread.run_sync(_create_client, settings)
    try:
        yield client
    finally:
        await anyio.to_thread.run_sync(client.close)


async def ping(client: S3Client) -> None:
    """One ``ListBuckets``; raises ServiceUnavailableError when S3 does not answer."""
    with translating():
        await anyio.to_thread.run_sync(client.list_buckets, abandon_on_cancel=True)


def _create_client(settings: S3Settings) -> S3Client:
    config = botocore.config.Config(
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        read_timeout=READ_TIMEOUT_SECONDS,
        retries={"mode": "standard", "max_attempts": 2},
        signature_version="s3v4",
        # Self-hosted gateways (SeaweedFS, MinIO) have no per-bucket DNS names.
        s3={"addressing_style": "path" if settings.endpoint_url else "auto"},
    )
    session = boto3.session.Session()
    return session.client(
        "s3",
        endpoint_url=settings.endpoint_url,
        aws_access_key_id=settings.access_key_id,
        aws_secret_access_key=settings.secret_access_key,
        region_name=settings.region,
        config=config,
    )
