"""Issuing API keys: a fresh secret, its stored digest and its display prefix."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import uuid4

from tenantgate.db.keys import NewKeyRow
from tenantgate.keys import KeyHasher, generate_key, parse_key
from tenantgate.scopes import ALL_SCOPES

__all__ = ["HASH_SCHEME", "IssuedKey", "KeyIssuer"]

HASH_SCHEME = "hmac-sha256"


@dataclass(frozen=True, slots=True)
class IssuedKey:
    secret: str
    """The key itself: shown once, at creation, and never stored."""
    row: NewKeyRow


class KeyIssuer:
    """Makes keys for one environment (`live` or `test`) under one pepper."""

    def __init__(self, hasher: KeyHasher, *, env: str = "live") -> None:
        self._hasher = hasher
        self._env = env

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
