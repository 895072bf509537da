"""Issuing API keys: a fresh secret, its stored digest and its display prefix.

An ordinary key's digest is HMAC-SHA-256 under the pepper (``hmac-sha256``); an HSM key's is
HMAC-SHA-256 computed inside the HSM (``hsm-hmac-sha256-v1``, :mod:`tenantgate.hsm`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING
from uuid import uuid4

from tenantgate.db.keys import NewKeyRow
from tenantgate.errors import InvalidInputError
from tenantgate.hsm import HSM_HASH_SCHEME
from tenantgate.keys import KeyHasher, generate_key, parse_key
from tenantgate.scopes import ALL_SCOPES

if TYPE_CHECKING:
    from tenantgate.identity.hsm_keys import KeyHmac

__all__ = ["HASH_SCHEME", "HSM_HASH_SCHEME", "IssuedKey", "KeyIssuer"]

HASH_SCHEME = "hmac-sha256"


@dataclass(frozen=True, slots=True)
class IssuedKey:
    secret: str
    """The key itself: shown once, at creation, and never stored."""
    row: NewKeyRow


class KeyIssuer:
    """Makes keys for one environment (`live` or `test`) under one pepper."""

    def __init__(self, hasher: KeyHasher, *, env: str = "live", hsm: KeyHmac | None = None) -> None:
        self._hasher = hasher
        self._env = env
        self._hsm = hsm

    @property
    def has_hsm(self) -> bool:
        """Whether an HSM is configured (HSM keys can be issued)."""
        return self._hsm is not None

    async def issue_key(
        self,
        *,
        hsm: bool,
        name: str | None,
        expires_at: datetime | None,
        scopes: Sequence[str] = ALL_SCOPES,
        allowed_cidrs: Sequence[str] = (),
    ) -> IssuedKey:
        """An ordinary key, or with ``hsm`` an HSM key (422 when no HSM is configured; 503,
        :class:`~tenantgate.errors.HsmUnavailableError`, when it fails)."""
        issued = self.issue(
            name=name, expires_at=expires_at, scopes=scopes, allowed_cidrs=allowed_cidrs
        )
        if not hsm:
            return issued
        if self._hsm is None:
            raise InvalidInputError("hsm keys need an HSM, and none is configured")
        digest = await self._hsm.digest(issued.secret.encode())
        row = dataclasses.replace(issued.row, digest=digest, hash_scheme=HSM_HASH_SCHEME)
        return IssuedKey(secret=issued.secret, row=row)

    def issue(
        self,
        *,
        name: str | None,
        expires_at: datetime | None,
        scopes: Sequence[str] = ALL_SCOPES,
        allowed_cidrs: Sequence[str] = (),
    ) -> IssuedKey:
        secret = generate_key(self._env)
        row = NewKeyRow(
            id=uuid4(),
            name=name,
            digest=self._hasher.hash(secret),
            hash_scheme=HASH_SCHEME,
            prefix=parse_key(secret).display_prefix,
            expires_at=expires_at,
            scopes=tuple(scopes),
            allowed_cidrs=tuple(allowed_cidrs),
        )
        return IssuedKey(secret=secret, row=row)
