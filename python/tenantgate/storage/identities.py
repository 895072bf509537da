"""Tenants' S3 identities through the AWS IAM API: a user, one access key, one inline policy.

One code path for AWS and the embedded SeaweedFS, whose gateway serves the IAM API on its S3
port when started with ``-s3.iam.readOnly=false`` (checked on 4.48: a new identity's grants
apply within the same second). Every function here blocks (boto3): run them through
:class:`~tenantgate.storage.blocking.Blocking`. Each is idempotent: ``apply`` may be re-run
after a partial run, ``remove`` whatever exists of the identity.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import botocore.exceptions

if TYPE_CHECKING:
    from tenantgate.storage.placement import Placement

__all__ = ["create_identity", "remove_identity"]

_MISSING: Final = frozenset({"NoSuchEntity", "NoSuchEntityException", "404"})
_EXISTS: Final = frozenset({"EntityAlreadyExists", "EntityAlreadyExistsException"})


def _code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def create_identity(iam: Any, user: str, placement: Placement) -> tuple[str, str]:
    """Make (or complete) user ``user`` confined to ``placement``, with exactly one fresh
    access key: its id and secret. Older keys of the user (a previous, interrupted run) are
    deleted, so no secret the service no longer knows stays valid."""
    try:
        iam.create_user(UserName=user, Tags=[{"Key": "tenantgate", "Value": "tenant"}])
    except botocore.exceptions.ClientError as exc:
        if _code(exc) not in _EXISTS:
            raise
    iam.put_user_policy(UserName=user, PolicyName=user, PolicyDocument=placement.policy_document())
    _delete_access_keys(iam, user)
    key = iam.create_access_key(UserName=user)["AccessKey"]
    return str(key["AccessKeyId"]), str(key["SecretAccessKey"])


def remove_identity(iam: Any, user: str) -> None:
    """Delete user ``user``, its keys and its policy; nothing when it does not exist."""
    try:
        iam.delete_user_policy(UserName=user, PolicyName=user)
    except botocore.exceptions.ClientError as exc:
        if _code(exc) not in _MISSING:
            raise
    _delete_access_keys(iam, user)
    try:
        iam.delete_user(UserName=user)
    except botocore.exceptions.ClientError as exc:
        if _code(exc) not in _MISSING:
            raise


def _delete_access_keys(iam: Any, user: str) -> None:
    try:
        keys = iam.list_access_keys(UserName=user).get("AccessKeyMetadata", [])
    except botocore.exceptions.ClientError as exc:
        if _code(exc) in _MISSING:
            return
        raise
    for key in keys:
        try:
            iam.delete_access_key(UserName=user, AccessKeyId=key["AccessKeyId"])
        except botocore.exceptions.ClientError as exc:
            if _code(exc) not in _MISSING:
                raise
