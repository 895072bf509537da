"""Tenants' Redis passwords: derived from the service's secret, never stored."""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from uuid import UUID

__all__ = ["tenant_password"]

_PASSWORD_LABEL: Final = b"tenantgate/redis-acl-user-password/v1\x00"
"""Separates this use of the pepper from every other (API-key hashes)."""


def tenant_password(pepper: bytes, tenant_id: UUID) -> str:
    """The tenant's Redis password: HMAC-SHA-256(pepper, label ‖ id), hex. Never store it."""
    return hmac.new(pepper, _PASSWORD_LABEL + tenant_id.bytes, hashlib.sha256).hexdigest()
