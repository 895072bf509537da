"""Tenants' S3 secret keys, sealed for storage in PostgreSQL.

Why stored at all: unlike the Redis password (derived from the pepper, never stored), an S3
secret key is made by the S3 server (IAM ``CreateAccessKey``) and shown once, so the service
must keep it to sign the tenant's requests and presigned URLs after a restart or on another
instance. Why sealed: the row sits in the shared database, which backups, replicas and
operators see; sealed with AES-256-GCM under a key derived from ``TENANTGATE_KEY_PEPPER`` (HMAC
with a label of its own, so this use never collides with API-key hashing), a copy of the
database alone opens no tenant's files. The tenant id and access key id are the associated
data, so a sealed secret moved to another tenant's row does not open. The trade-off is the
Redis password's: rotating the pepper means re-running the S3 step (a new access key) for
every tenant.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import TYPE_CHECKING, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

if TYPE_CHECKING:
    from uuid import UUID

__all__ = ["SealedSecretError", "seal", "unseal"]

_KEY_LABEL: Final = b"tenantgate/s3-secret-sealing-key/v1\x00"
_NONCE_BYTES: Final = 12


class SealedSecretError(Exception):
    """A sealed secret does not open: another pepper, another row, or tampering."""


def _cipher(pepper: bytes) -> AESGCM:
    return AESGCM(hmac.new(pepper, _KEY_LABEL, hashlib.sha256).digest())


def _associated(tenant_id: UUID, access_key_id: str) -> bytes:
    return tenant_id.bytes + access_key_id.encode()


def seal(pepper: bytes, tenant_id: UUID, access_key_id: str, secret: str) -> bytes:
    """``nonce ‖ ciphertext ‖ tag`` of ``secret``, bound to the tenant and access key id."""
    nonce = os.urandom(_NONCE_BYTES)
    sealed = _cipher(pepper).encrypt(nonce, secret.encode(), _associated(tenant_id, access_key_id))
    return nonce + sealed


def unseal(pepper: bytes, tenant_id: UUID, access_key_id: str, sealed: bytes) -> str:
    """The secret :func:`seal` sealed; :class:`SealedSecretError` if it does not open."""
    nonce, body = sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:]
    try:
        plain = _cipher(pepper).decrypt(nonce, body, _associated(tenant_id, access_key_id))
    except InvalidTag:
        raise SealedSecretError("the sealed S3 secret does not open") from None
    return plain.decode()
