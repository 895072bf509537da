"""S3: the service's client and the translation of its errors.

The only room that imports ``boto3``/``botocore``. Buckets, tenants' identities, presigning and
``TenantStorage`` arrive with the storage-isolation issue; today the service holds one client,
used by ``/readyz``.

Internal: the public API is :mod:`tenantgate` (its ``__all__``); names here may change.
"""

from tenantgate.storage.client import open_s3, ping
from tenantgate.storage.errors import translate, translating

__all__ = ["open_s3", "ping", "translate", "translating"]
