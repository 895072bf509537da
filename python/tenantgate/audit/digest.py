"""A seal's digest: every chain's head at one moment, linked to the previous digest.

In the manner of CloudTrail's digest files: a digest names the time range it closes (from the
previous digest's ``to``), each chain's head (chain, its number of records, the last record's
id and hash), and the SHA-256 of the previous digest's bytes, so digests form a chain of their
own. Its bytes are canonical JSON (keys sorted, no spaces, UTF-8): anyone can recompute its
SHA-256 from the object alone, and a digest read back is the digest written.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Final
from uuid import UUID

import msgspec

__all__ = [
    "DIGEST_FORMAT",
    "ChainHead",
    "Digest",
    "DigestError",
    "decode_digest",
    "digest_key",
    "encode_digest",
    "sha256_hex",
]

DIGEST_FORMAT: Final = "tenantgate.audit-seal/1"
DIGEST_PREFIX: Final = "digests/"
_SEQ_DIGITS: Final = 12


class DigestError(ValueError):
    """Bytes that are not a digest of ours."""


class ChainHead(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    chain: str
    """The tenant id, or ``-`` for the operator's chain."""
    count: int
    """How many records the chain held: its last record's ``seq``."""
    last_record_id: UUID
    head_hash: str
    """The last record's ``hash``, hex."""


class Digest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    format: str
    seq: int
    """1 for the first digest, then one more each time."""
    from_: datetime | None = msgspec.field(name="from")
    """The previous digest's ``to``; ``None`` for the first."""
    to: datetime
    """When the heads were read: every record committed before is covered."""
    prev_digest_sha256: str | None
    """SHA-256 of the previous digest's bytes, hex; ``None`` for the first."""
    chains: list[ChainHead]
    """Every chain's head, by chain."""


_encoder = msgspec.json.Encoder(order="sorted")
_decoder = msgspec.json.Decoder(Digest)


def encode_digest(digest: Digest) -> bytes:
    """The digest's canonical bytes (what is stored, and what its SHA-256 is of)."""
    return _encoder.encode(digest)


def decode_digest(body: bytes) -> Digest:
    """The digest in ``body``; :class:`DigestError` when it is not one of ours."""
    try:
        digest = _decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise DigestError(f"not a sealed digest: {exc}") from None
    if digest.format != DIGEST_FORMAT:
        raise DigestError(f"unknown digest format {digest.format!r}")
    return digest


def sha256_hex(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def digest_key(seq: int) -> str:
    """The object key of digest ``seq``: zero-padded, so keys sort in sealing order."""
    return f"{DIGEST_PREFIX}{seq:0{_SEQ_DIGITS}d}.json"


def seq_of_key(key: str) -> int | None:
    """The sequence number a digest key names, or ``None`` for another key."""
    name = key.removeprefix(DIGEST_PREFIX).removesuffix(".json")
    if key == name or len(name) != _SEQ_DIGITS or not name.isdigit():
        return None
    return int(name)


def utc_now() -> datetime:
    return datetime.now(UTC)
