"""API keys: format, hashing and the per-request verifier cache.

Everything here is the core itself (:mod:`tenantgate._native`, or its twin: see
:mod:`tenantgate.core`), re-exported with no
wrapper in between, so a call costs one native call.

A key is ``tg_<env>_`` (``env`` is ``live`` or ``test``), 30 random base62 characters (30 to 64
accepted), then a 6-character base62 CRC32 of everything before it, so that typos are caught
before any lookup. Keys are stored only as HMAC-SHA-256 digests under a server-side pepper.

- :func:`generate_key` — a new key from the OS random source.
- :func:`parse_key` — a :class:`ParsedKey` or :class:`~tenantgate.errors.KeyFormatError`
  (whose message never contains the key).
- :func:`key_checksum` — the checksum of a key body; :func:`constant_time_eq`.
- :class:`KeyHasher` — the keyed digest a key is stored and looked up by.
- :class:`Verifier` — ``verify(authorization, host)`` answers the cached payload, ``None``
  (refuse: malformed, revoked, expired, unusable, cached refusal, or a key of another tenant on
  a bound custom domain) or a :class:`Miss` carrying the digest to look up and
  :meth:`~Verifier.insert`. ``verify_and_acquire`` also charges the record's bucket, after
  checking its scopes and networks (a :class:`Restricted` when they stop the request).
"""

from __future__ import annotations

from tenantgate.core import implementation as _core

KeyHasher = _core.KeyHasher
Miss = _core.Miss
ParsedKey = _core.ParsedKey
Restricted = _core.Restricted
Verifier = _core.Verifier
constant_time_eq = _core.constant_time_eq
generate_key = _core.generate_key
key_checksum = _core.key_checksum
parse_key = _core.parse_key

__all__ = [
    "KeyHasher",
    "Miss",
    "ParsedKey",
    "Restricted",
    "Verifier",
    "constant_time_eq",
    "generate_key",
    "key_checksum",
    "parse_key",
]
