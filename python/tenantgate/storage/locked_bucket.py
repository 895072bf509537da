"""A bucket under S3 Object Lock: objects written once, kept in compliance mode until a date.

The audit seals live here (:mod:`tenantgate.audit.seal`). What S3 guarantees (AWS, and
SeaweedFS 4.48 as checked: see the README's audit section): the bucket is versioned from its
creation (``ObjectLockEnabledForBucket``), so a ``PutObject`` on an existing key adds a *new
version* and a plain ``DeleteObject`` adds a delete marker — neither touches the version first
written, which ``DeleteObject`` with its ``VersionId`` cannot remove (``AccessDenied``, even for
the administrator) until its retain-until date. So a reader must not trust "the latest
version of a key": :func:`first_versions` reads the **first** version of each key, and counts
the versions and delete markers laid on top of it.

Every function blocks (boto3): run them through :class:`~tenantgate.storage.blocking.Blocking`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import botocore.exceptions

from tenantgate.errors import ServiceUnavailableError
from tenantgate.storage.errors import SERVICE

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

    from mypy_boto3_s3 import S3Client

__all__ = [
    "LockedBucketError",
    "LockedObject",
    "ensure_locked_bucket",
    "first_versions",
    "put_locked",
    "read_version",
]

_OURS: Final = frozenset({"BucketAlreadyOwnedByYou"})
_NO_BUCKET: Final = frozenset({"NoSuchBucket"})
_NO_LOCK: Final = frozenset({"ObjectLockConfigurationNotFoundError"})


class LockedBucketError(ServiceUnavailableError):
    """The bucket is not fit for sealing (it exists without Object Lock, say): nothing written
    there could be trusted to stay, so nothing is. Answered 503 until an operator fixes it;
    ``str()`` says what is wrong."""

    def __init__(self, reason: str) -> None:
        super().__init__(SERVICE, retry_after=300)
        self.args = (reason,)


@dataclass(frozen=True, slots=True)
class LockedObject:
    """The first version of one key, and what was laid on top of it since."""

    key: str
    version_id: str
    later_versions: int
    """Versions and delete markers written to the key after the first: each one an attempt
    to replace or hide it (the first version is still there)."""


def _code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def ensure_locked_bucket(s3: S3Client, bucket: str, region: str) -> None:
    """Create ``bucket`` with Object Lock enabled, unless this principal has it already; an
    existing bucket without Object Lock raises :class:`LockedBucketError` (S3 cannot turn a
    plain bucket into a locked one on every server, and ours must be locked from the first
    object)."""
    arguments: dict[str, Any] = {"Bucket": bucket, "ObjectLockEnabledForBucket": True}
    if region != "us-east-1":
        arguments["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        s3.create_bucket(**arguments)
    except botocore.exceptions.ClientError as exc:
        if _code(exc) not in _OURS:
            raise
    try:
        configuration = s3.get_object_lock_configuration(Bucket=bucket)
    except botocore.exceptions.ClientError as exc:
        if _code(exc) in _NO_LOCK:
            raise LockedBucketError(f"bucket {bucket!r} exists without S3 Object Lock") from None
        raise
    enabled = configuration.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled")
    if enabled != "Enabled":
        raise LockedBucketError(f"bucket {bucket!r} exists without S3 Object Lock")


def put_locked(
    s3: S3Client,
    bucket: str,
    key: str,
    body: bytes,
    retain_until: datetime,
    metadata: Mapping[str, str],
) -> str:
    """Write ``body`` at ``key`` in compliance mode until ``retain_until``; its version id."""
    answer = s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=body,
        ContentType="application/json",
        ObjectLockMode="COMPLIANCE",
        ObjectLockRetainUntilDate=retain_until,
        Metadata=dict(metadata),
    )
    return str(answer.get("VersionId", ""))


def first_versions(s3: S3Client, bucket: str, prefix: str) -> list[LockedObject]:
    """The first version of every key under ``prefix``, in key order; none when the bucket
    does not exist. Versions are told apart by their time (``LastModified``, set by S3, not by
    whoever writes); within one second, by the listing's order (newest first, as S3 lists)."""
    versions: dict[str, list[tuple[datetime, int, str]]] = {}
    markers: dict[str, int] = {}
    position = 0
    try:
        pages = s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix)
        for page in pages:
            for entry in page.get("Versions", []):
                position += 1
                versions.setdefault(entry["Key"], []).append(
                    (entry["LastModified"], -position, entry["VersionId"])
                )
            for marker in page.get("DeleteMarkers", []):
                markers[marker["Key"]] = markers.get(marker["Key"], 0) + 1
    except botocore.exceptions.ClientError as exc:
        if _code(exc) in _NO_BUCKET:
            return []
        raise
    found = []
    for key in sorted(versions):
        ordered = sorted(versions[key])
        later = len(ordered) - 1 + markers.get(key, 0)
        found.append(LockedObject(key, ordered[0][2], later))
    return found


def read_version(
    s3: S3Client, bucket: str, key: str, version_id: str
) -> tuple[bytes, dict[str, str]]:
    """The bytes and user metadata of one version of ``key``."""
    answer = s3.get_object(Bucket=bucket, Key=key, VersionId=version_id)
    return answer["Body"].read(), dict(answer.get("Metadata", {}))
