"""The S3 step of provisioning a tenant: its bucket or prefix, its identity, its credentials.

``apply`` (as the service's own principal): make sure the bucket exists (the shared one for a
standard tenant, its own, ``<bucket prefix>-<id hex>``, for an enterprise tenant), make the
tenant's IAM user ``tg-<id hex>`` with the inline policy that confines it to its placement
(:meth:`~tenantgate.storage.placement.Placement.policy_document`) and one access key, and
store that key, its secret sealed (:mod:`tenantgate.storage.sealing`), in PostgreSQL on the
provisioning connection. Re-running it replaces the key (the old one is deleted).

``undo`` works whatever ran before: it deletes the identity (so the tenant's signatures stop
working first), then every object of the tenant (its prefix in the shared bucket; or its whole
bucket, and the bucket), then the stored key; each part is a no-op when there is nothing.
S3 down is :class:`~tenantgate.errors.ServiceUnavailableError`, and the provisioner then undoes
the steps before this one; an undo that could not reach S3 leaves the tenant's row for
``tenantgate tenants repair``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from tenantgate.db import storage_credentials
from tenantgate.storage.buckets import delete_bucket, delete_keys, ensure_bucket
from tenantgate.storage.identities import create_identity, remove_identity
from tenantgate.storage.placement import placement_of
from tenantgate.storage.sealing import seal

if TYPE_CHECKING:
    from tenantgate.storage.service import StorageService
    from tenantgate.tenancy.provisioning import TenantUnderway

__all__ = ["S3Identity"]


class S3Identity:
    """The tenant's S3 placement and identity; its undo also removes the tenant's objects."""

    name: Final = "s3 identity"

    def __init__(self, storage: StorageService, pepper: bytes) -> None:
        self._storage = storage
        self._pepper = pepper

    async def apply(self, tenant: TenantUnderway) -> None:
        storage = self._storage
        placement = placement_of(tenant.names, tenant.tier, storage.buckets)
        region = storage.s3_settings.region
        await storage.blocking.run(ensure_bucket, storage.s3, placement.bucket, region)
        async with storage.iam_lock:
            access_key_id, secret = await storage.blocking.run(
                create_identity, storage.iam, tenant.names.s3_user, placement
            )
        sealed = seal(self._pepper, tenant.id, access_key_id, secret)
        await storage_credentials.store(tenant.connection, tenant.id, access_key_id, sealed)
        storage.forget(tenant.id)

    async def undo(self, tenant: TenantUnderway) -> None:
        storage = self._storage
        storage.forget(tenant.id)
        placement = placement_of(tenant.names, tenant.tier, storage.buckets)
        async with storage.iam_lock:
            await storage.blocking.run(remove_identity, storage.iam, tenant.names.s3_user)
        if placement.own_bucket:
            await storage.blocking.run(delete_bucket, storage.s3, placement.bucket)
        else:
            await storage.blocking.run(
                delete_keys, storage.s3, placement.bucket, placement.key_prefix
            )
        await storage_credentials.forget(tenant.connection, tenant.id)
