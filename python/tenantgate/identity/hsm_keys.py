"""HSM keys on a miss of the native key table (the design is in :mod:`tenantgate.hsm`).

The native table is keyed by the presented key's pepper digest, which is not stored for an
HSM key. So when PostgreSQL has no key under that digest and an HSM is configured, the HSM
keys sharing the presented key's display prefix are fetched; if there are any, the HSM
hashes the presented key once and the digest is compared, in constant time, with each. A
match is cached by :class:`~tenantgate.identity.key_cache.KeyCache` under the pepper digest
like any other record. An unknown key whose prefix no HSM key has never reaches the HSM, so
ordinary and unknown keys do not depend on it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol
from uuid import UUID

from tenantgate.errors import HsmUnavailableError
from tenantgate.identity.source import HsmCandidate, KeyRecord
from tenantgate.keys import constant_time_eq

__all__ = ["CandidateLookup", "HsmKeyMatcher", "KeyHmac", "bearer_key"]

CandidateLookup = Callable[[str], Awaitable[Sequence[HsmCandidate]]]
"""The HSM keys stored under a display prefix (:meth:`IdentitySource.find_hsm_candidates
<tenantgate.identity.source.IdentitySource.find_hsm_candidates>`)."""

_BEARER = b"bearer"
_GAP = b" \t"
_TRAILING = b" \t\r\n\x0b\x0c"


class KeyHmac(Protocol):
    """The HSM's keyed hash (:class:`tenantgate.hsm.Hsm`)."""

    async def digest(self, message: bytes) -> bytes: ...


def bearer_key(authorization: bytes | None) -> str | None:
    """The token of ``Authorization: Bearer <token>``, by the native parser's rule (scheme in
    any case, one or more spaces or tabs, trailing whitespace trimmed); None if there is none.
    Only a miss that may be an HSM key needs it, so it is not on the hot path."""
    if authorization is None or authorization[:6].lower() != _BEARER:
        return None
    rest = authorization[6:]
    token = rest.lstrip(_GAP)
    if len(token) == len(rest):
        return None
    token = token.rstrip(_TRAILING)
    try:
        return token.decode("ascii") or None
    except UnicodeDecodeError:
        return None


class HsmKeyMatcher:
    """Finds the HSM key a presented key is, through the HSM."""

    __slots__ = ("_candidates", "_hmac", "remembered_accepted")

    def __init__(self, hmac: KeyHmac, candidates: CandidateLookup) -> None:
        self._hmac = hmac
        self._candidates = candidates
        self.remembered_accepted = 0
        """Keys accepted while the HSM failed, because it had confirmed them recently."""

    async def match(
        self, key: str, display_prefix: str, remembered: UUID | None = None
    ) -> KeyRecord | None:
        """The record of the HSM key ``key`` is, or None. ``remembered``: the key id the HSM
        recently confirmed this key to be, accepted (with its fresh record) if the HSM fails
        now. Raises :class:`~tenantgate.errors.HsmUnavailableError` when a candidate exists
        and the HSM fails (and ``remembered`` is not among them),
        :class:`~tenantgate.errors.ServiceUnavailableError` when PostgreSQL does."""
        candidates = await self._candidates(display_prefix)
        if not candidates:
            return None
        try:
            digest = await self._hmac.digest(key.encode())
        except HsmUnavailableError:
            for candidate in candidates:
                if remembered is not None and candidate.record.key_id == remembered:
                    self.remembered_accepted += 1
                    return candidate.record
            raise
        found = None
        for candidate in candidates:  # all compared: the time does not say which matched
            if constant_time_eq(candidate.stored_digest, digest):
                found = candidate.record
        return found
