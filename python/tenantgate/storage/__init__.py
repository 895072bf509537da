"""S3: tenants' files, each tenant walled off by the S3 server itself.

The only room that imports ``boto3``/``botocore``: clients (:mod:`.client`), the bounded
worker pool boto3 runs in (:mod:`.blocking`), placement and policies (:mod:`.placement`),
buckets (:mod:`.buckets`), identities through the IAM API (:mod:`.identities`), sealed
credentials (:mod:`.sealing`), file paths (:mod:`.paths`), :class:`TenantStorage`, the
:class:`StorageService` that builds it per tenant, the provisioning step
(:mod:`.provisioning`), and the translation of S3's errors (:mod:`.errors`).

Internal: the public API is :mod:`tenantgate` (its ``__all__``); names here may change.
"""

from tenantgate.storage.client import open_s3, ping
from tenantgate.storage.errors import translate, translating
from tenantgate.storage.service import StorageService, open_storage
from tenantgate.storage.tenant_storage import TenantStorage
from tenantgate.storage.types import Download, FileEntry, FileList, Presigned, StoredFile

__all__ = [
    "Download",
    "FileEntry",
    "FileList",
    "Presigned",
    "StorageService",
    "StoredFile",
    "TenantStorage",
    "open_s3",
    "open_storage",
    "ping",
    "translate",
    "translating",
]
