"""Buckets and their contents, as the service's own (administrative) S3 principal.

Only provisioning uses these: creating the shared bucket and enterprise tenants' buckets,
and on deletion emptying a tenant's prefix or bucket and deleting the bucket. Every function
blocks (boto3): run them through :class:`~tenantgate.storage.blocking.Blocking`; each is
idempotent (a missing bucket or object is not an error).

A deleted enterprise bucket's name is never made again by tenantgate (tenant ids are never
reused), but on AWS bucket names are global: once released, anyone may take it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import botocore.exceptions

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["delete_bucket", "delete_keys", "ensure_bucket"]

_DELETE_BATCH: Final = 1000  # DeleteObjects' limit
_OURS: Final = frozenset({"BucketAlreadyOwnedByYou"})
_NO_BUCKET: Final = frozenset({"NoSuchBucket", "404"})


def _code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def ensure_bucket(s3: S3Client, bucket: str, region: str) -> None:
    """Create ``bucket`` unless this principal has it already. ``BucketAlreadyExists`` (a name
    someone else holds, on AWS) is raised: the deployment's bucket prefix is taken."""
    try:
        if region == "us-east-1":
            s3.create_bucket(Bucket=bucket)
        else:
            s3.create_bucket(
                Bucket=bucket,
                CreateBucketConfiguration={"LocationConstraint": region},  # type: ignore[typeddict-item]
            )
    except botocore.exceptions.ClientError as exc:
        if _code(exc) not in _OURS:
            raise


def delete_keys(s3: S3Client, bucket: str, prefix: str) -> int:
    """Delete every object under ``prefix`` in ``bucket`` (all of it for ``""``); how many.
    Incomplete multipart uploads under it are aborted too."""
    deleted = 0
    try:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for page in pages:
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            for start in range(0, len(keys), _DELETE_BATCH):
                batch = keys[start : start + _DELETE_BATCH]
                s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})  # type: ignore[typeddict-item]
                deleted += len(batch)
        uploads = s3.list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads", [])
        for upload in uploads:
            s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    except botocore.exceptions.ClientError as exc:
        if _code(exc) not in _NO_BUCKET:
            raise
    return deleted


def delete_bucket(s3: S3Client, bucket: str) -> None:
    """Empty and delete ``bucket``; nothing when it does not exist."""
    delete_keys(s3, bucket, "")
    try:
        s3.delete_bucket(Bucket=bucket)
    except botocore.exceptions.ClientError as exc:
        if _code(exc) not in _NO_BUCKET:
            raise
