"""``StorageService``: the S3 side of a running service, opened once by the plugin.

It holds the service's own clients (S3 and IAM, as the deployment's administrative
principal), the bounded worker pool boto3 calls run in, and a bounded LRU of tenants' clients:
building a boto3 client costs ~5 ms (~90 ms the first, which loads the service model) and a
tenant's credentials a PostgreSQL round trip,
so both are kept for the tenants in use, and at most :data:`MAX_TENANT_CLIENTS` of them (each
client keeps its own small connection pool).

:meth:`StorageService.for_tenant` is the one place a :class:`TenantStorage` is built from a
tenant: its placement from its tier, its client from its own sealed credentials.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Final

import anyio

from tenantgate.db import storage_credentials
from tenantgate.errors import ServiceUnavailableError
from tenantgate.naming import BucketNames
from tenantgate.storage.blocking import Blocking
from tenantgate.storage.client import create_client
from tenantgate.storage.errors import SERVICE
from tenantgate.storage.placement import placement_of
from tenantgate.storage.sealing import SealedSecretError, unseal
from tenantgate.storage.tenant_storage import TenantStorage

if TYPE_CHECKING:
    from uuid import UUID

    from mypy_boto3_s3 import S3Client

    from tenantgate.db.database import Database
    from tenantgate.naming import TenantNames
    from tenantgate.settings import Settings

__all__ = ["MAX_TENANT_CLIENTS", "StorageService", "open_storage"]

MAX_TENANT_CLIENTS: Final = 256
"""Tenants' boto3 clients kept per process (least recently used ones are closed first)."""

_logger = logging.getLogger("tenantgate.storage")


class StorageService:
    """See the module docstring. Build it with :func:`open_storage`."""

    def __init__(
        self,
        settings: Settings,
        database: Database,
        *,
        s3: S3Client,
        iam: Any,
        blocking: Blocking | None = None,
        max_tenant_clients: int = MAX_TENANT_CLIENTS,
    ) -> None:
        self.s3_settings: Final = settings.s3
        self.buckets: Final = BucketNames(settings.s3.bucket_prefix)
        self.max_file_bytes: Final = settings.limits.max_file_bytes
        self.s3: Final = s3
        """The service's own S3 client (buckets; emptying a deleted tenant's objects)."""
        self.iam: Final = iam
        """The service's own IAM client (tenants' identities)."""
        self.blocking: Final = blocking or Blocking()
        self.iam_lock: Final = anyio.Lock()
        """Serialises this process's IAM changes: SeaweedFS applies them one at a time anyway
        (a read-modify-write of all identities), and calls queued here do not run down their
        read timeout while waiting for one another."""
        self._pepper = settings.security.key_pepper
        self._database = database
        self._clients: OrderedDict[UUID, tuple[str, S3Client]] = OrderedDict()
        self._max_tenant_clients = max_tenant_clients
        self._lock = anyio.Lock()

    async def for_tenant(self, names: TenantNames, tier: str) -> TenantStorage:
        """The storage of the tenant named by ``names`` (of ``tier``), signing as the tenant."""
        tenant_id = names.tenant_id
        client = self._clients.get(tenant_id)
        if client is not None:
            self._clients.move_to_end(tenant_id)
            s3 = client[1]
        else:
            s3 = await self._tenant_client(tenant_id)
        placement = placement_of(names, tier, self.buckets)
        return TenantStorage(s3, placement, self.blocking, self.max_file_bytes)

    def forget(self, tenant_id: UUID) -> None:
        """Drop the cached client of ``tenant_id`` (its identity is gone or replaced)."""
        cached = self._clients.pop(tenant_id, None)
        if cached is not None:
            cached[1].close()

    async def _tenant_client(self, tenant_id: UUID) -> S3Client:
        async with self._lock:  # one PostgreSQL read and one client per tenant, not per request
            cached = self._clients.get(tenant_id)
            if cached is not None:
                return cached[1]
            found = await storage_credentials.find(self._database, tenant_id)
            if found is None:
                # A tenant made before storage existed, or one whose S3 step failed: nothing
                # a retry fixes by itself, but nothing the client did wrong either.
                _logger.error("tenant %s has no S3 credentials (re-run its S3 step)", tenant_id)
                raise ServiceUnavailableError(SERVICE, retry_after=60)
            access_key_id, sealed = found
            try:
                secret = unseal(self._pepper, tenant_id, access_key_id, sealed)
            except SealedSecretError:
                _logger.error("tenant %s: its S3 secret does not open (pepper changed?)", tenant_id)
                raise ServiceUnavailableError(SERVICE, retry_after=60) from None
            client: S3Client = await self.blocking.run(
                create_client, self.s3_settings, "s3", access_key_id, secret
            )
            self._clients[tenant_id] = (access_key_id, client)
            while len(self._clients) > self._max_tenant_clients:
                _, (_, evicted) = self._clients.popitem(last=False)
                evicted.close()
            return client

    def close(self) -> None:
        """Close every tenant client (the service's own are closed by :func:`open_storage`)."""
        while self._clients:
            _, (_, client) = self._clients.popitem()
            client.close()


@asynccontextmanager
async def open_storage(settings: Settings, database: Database) -> AsyncIterator[StorageService]:
    """The :class:`StorageService` of ``settings``, closed (every client) on exit. Nothing
    connects here: a service starts while S3 is down."""
    blocking = Blocking()
    s3_settings = settings.s3
    key_id, secret = s3_settings.access_key_id, s3_settings.secret_access_key
    s3: S3Client = await blocking.run(create_client, s3_settings, "s3", key_id, secret)
    iam = await blocking.run(create_client, s3_settings, "iam", key_id, secret)
    service = StorageService(settings, database, s3=s3, iam=iam, blocking=blocking)
    try:
        yield service
    finally:
        service.close()
        s3.close()
        iam.close()
