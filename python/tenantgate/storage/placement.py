"""Where a tenant's objects live, and the IAM policy that confines its identity there.

Enterprise tenants get a bucket of their own (``BucketNames.tenant``, keys are the paths);
standard tenants share one bucket (``BucketNames.shared``) under ``<tenant id>/``. Either way
the tenant's identity may get, put and delete objects only under ``<bucket>/<prefix>*`` and
list the bucket only with an ``s3:prefix`` inside its own prefix: S3 itself refuses anything
else, so a bug here or a tampered presigned URL cannot reach another tenant's objects.

The policy is AWS's own language, which AWS IAM and SeaweedFS's embedded IAM API both take
(SeaweedFS turns it into its ``Read|Write|List:<bucket>/<prefix>*`` grants; a prefix grant
without the trailing ``*`` would grant nothing there, so the resource always ends in ``*``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from tenantgate.errors import InvalidInputError

if TYPE_CHECKING:
    from tenantgate.naming import BucketNames, TenantNames

__all__ = ["ENTERPRISE", "MAX_KEY_BYTES", "Placement", "placement_of"]

MAX_KEY_BYTES: Final = 1024
"""S3's limit on a key's length (AWS and SeaweedFS alike)."""

ENTERPRISE: Final = "enterprise"
"""The tier whose tenants get a bucket of their own."""

OBJECT_ACTIONS: Final = (
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
)


@dataclass(frozen=True, slots=True)
class Placement:
    """A tenant's bucket and the prefix of all its keys in it (``""`` in its own bucket)."""

    bucket: str
    key_prefix: str
    own_bucket: bool

    def key(self, path: str) -> str:
        """The S3 key of the tenant's file ``path`` (a checked path, or listing prefix).

        S3 keys are at most 1024 bytes, prefix included, so a standard tenant's paths are
        limited to 1024 bytes less its prefix's 37 (:class:`InvalidInputError` past that)."""
        key = self.key_prefix + path
        if len(key.encode()) > MAX_KEY_BYTES:
            room = MAX_KEY_BYTES - len(self.key_prefix.encode())
            raise InvalidInputError(f"path: at most {room} bytes of UTF-8 in this tenant's storage")
        return key

    def path(self, key: str) -> str:
        """The tenant's path of one of its keys."""
        return key[len(self.key_prefix) :]

    def policy_document(self) -> str:
        """The identity's inline policy, as JSON (see the module docstring)."""
        listing: dict[str, object] = {
            "Sid": "ListOwnKeys",
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [f"arn:aws:s3:::{self.bucket}"],
        }
        if self.key_prefix:
            listing["Condition"] = {"StringLike": {"s3:prefix": [self.key_prefix + "*"]}}
        return json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "OwnObjects",
                        "Effect": "Allow",
                        "Action": list(OBJECT_ACTIONS),
                        "Resource": [f"arn:aws:s3:::{self.bucket}/{self.key_prefix}*"],
                    },
                    listing,
                ],
            },
            separators=(",", ":"),
        )


def placement_of(names: TenantNames, tier: str, buckets: BucketNames) -> Placement:
    """Where the objects of the tenant named by ``names``, of ``tier``, live."""
    if tier == ENTERPRISE:
        return Placement(bucket=buckets.tenant(names.tenant_id), key_prefix="", own_bucket=True)
    return Placement(bucket=buckets.shared, key_prefix=names.s3_prefix, own_bucket=False)
