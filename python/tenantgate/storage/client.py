"""boto3 clients: created here only, with the same short timeouts and retry mode everywhere.

boto3 blocks, so every call goes through a worker thread (``anyio.to_thread.run_sync``); see
:mod:`tenantgate.storage.blocking` for the bounded pool the file routes use.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Final

import anyio.to_thread
import boto3
import botocore.config

from tenantgate.storage.errors import translating

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from tenantgate.settings import S3Settings

__all__ = [
    "CONNECT_TIMEOUT_SECONDS",
    "IAM_READ_TIMEOUT_SECONDS",
    "READ_TIMEOUT_SECONDS",
    "create_client",
    "open_s3",
    "ping",
]

CONNECT_TIMEOUT_SECONDS: Final = 2.0
"""How long opening a connection to the S3 endpoint may take."""

READ_TIMEOUT_SECONDS: Final = 10.0
"""How long one S3 response may take to start arriving."""

IAM_READ_TIMEOUT_SECONDS: Final = 60.0
"""The same for an IAM call: provisioning only, never on a tenant's request path, and slow on
SeaweedFS with many identities (each write took ~1 s with 250 identities on a 2-core box: it
rewrites them all)."""

_session = boto3.session.Session()
"""One session for every client: its loader parses each service's model once (a fresh session
per client costs tens of milliseconds); creating clients from it is serialised by the lock,
as boto3 sessions are not thread-safe."""
_session_lock = threading.Lock()


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
    client: S3Client = create_client(
        settings, "s3", settings.access_key_id, settings.secret_access_key
    )
    return client


def create_client(
    settings: S3Settings,
    service: str,
    access_key_id: str | None,
    secret_access_key: str | None,
) -> Any:
    """A boto3 client of ``service`` (``s3`` or ``iam``) at ``settings``' endpoint, signing
    with the given keys (``None``: boto3's default chain). Blocks: call it in a thread."""
    config = botocore.config.Config(
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        read_timeout=IAM_READ_TIMEOUT_SECONDS if service == "iam" else READ_TIMEOUT_SECONDS,
        retries={"mode": "standard", "max_attempts": 2},
        # SigV4 for presigned URLs too: it signs `content-length` into a sized PUT URL.
        signature_version="s3v4",
        # Self-hosted gateways (SeaweedFS, MinIO) have no per-bucket DNS names.
        s3={"addressing_style": "path" if settings.endpoint_url else "auto"},
    )
    with _session_lock:
        return _session.client(
            service,  # type: ignore[call-overload]
            endpoint_url=settings.endpoint_url,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            region_name=settings.region,
            config=config,
        )
