"""Checking the audit log against its seals: what no recomputation of hashes can fake.

With an HSM configured, each digest's signature is checked first
(:mod:`tenantgate.audit.seal_signer`): the digests' links need no secret, so a digest added
after the last real one by someone who can write to the bucket is caught only by it.

The digests are read in order and must form a chain of their own (each names the SHA-256 of
the one before; numbers without a gap — only the oldest may be missing, once their retention
has expired and they were deleted). Then the newest sealed head of every chain must still be
in the log, as the same record with the same hash. That one check covers all of the chain
before it: the head's hash commits to every earlier record, and the chains are recomputed
before this runs. So a chain rewritten from some record on, with every hash after it
recomputed (which the chains alone cannot catch), is found, as is a chain cut short or
removed — as far as the last seal: what was written after it is the window sealing leaves.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final
from uuid import UUID

import anyio.to_thread

from tenantgate.audit.digest import ChainHead, DigestError, decode_digest, seq_of_key, sha256_hex

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tenantgate.audit.seal import SealedDigest, SignatureChecker
    from tenantgate.db.database import Database

__all__ = ["SealCheck", "check_seals"]

_SEALED_RECORDS: Final = """
SELECT sealed.chain, sealed.seq, a.id, a.hash
  FROM unnest($1::text[], $2::bigint[]) AS sealed(chain, seq)
  LEFT JOIN public.audit_log a ON a.chain = sealed.chain AND a.seq = sealed.seq
"""

_logger = logging.getLogger("tenantgate.audit")


@dataclass(frozen=True, slots=True)
class SealCheck:
    ok: bool
    seals_checked: int
    first_bad: UUID | None = None
    problem: str | None = None


async def check_seals(
    database: Database,
    digests: Sequence[SealedDigest],
    signatures: SignatureChecker | None = None,
) -> SealCheck:
    """Check the digests' own chain (and, with ``signatures``, each digest's signature), then
    the log against the newest sealed heads."""
    newest: dict[str, tuple[ChainHead, str]] = {}
    previous: tuple[int, str] | None = None
    checked = 0
    for sealed in digests:
        key = sealed.stored.key
        if sealed.stored.later_versions:
            _logger.warning(
                "audit seal %s: %d later versions or delete markers were laid on it (ignored: "
                "its first version is the seal)",
                key,
                sealed.stored.later_versions,
            )
        seq = seq_of_key(key)
        if seq is None:
            continue
        checked += 1
        try:
            digest = decode_digest(sealed.body)
        except DigestError as exc:
            return SealCheck(False, checked, None, f"seal {key}: {exc}")
        if digest.seq != seq:
            return SealCheck(False, checked, None, f"seal {key} says it is digest {digest.seq}")
        if signatures is not None:
            problem = await _signature_problem(signatures, sealed)
            if problem is not None:
                return SealCheck(False, checked, None, f"seal {key}: {problem}")
        if previous is None:
            if seq == 1 and digest.prev_digest_sha256 is not None:
                return SealCheck(False, checked, None, f"seal {key}: the first names a previous")
        else:
            previous_seq, previous_hash = previous
            if seq != previous_seq + 1:
                return SealCheck(False, checked, None, f"seal {previous_seq + 1} is missing")
            if digest.prev_digest_sha256 != previous_hash:
                return SealCheck(
                    False, checked, None, f"seal {key} does not name the previous seal's hash"
                )
        previous = (seq, sha256_hex(sealed.body))
        for head in digest.chains:
            newest[head.chain] = (head, key)
    return await _check_heads(database, newest, checked)


async def _signature_problem(signatures: SignatureChecker, sealed: SealedDigest) -> str | None:
    """What is wrong with the digest's signature, or None."""
    signature_hex = sealed.metadata.get("signature")
    if signature_hex is None:
        return "it is not signed"
    key_name = sealed.metadata.get("signature-key")
    if key_name != signatures.key_name:
        return f"it is signed with the key {key_name!r}, not {signatures.key_name!r}"
    try:
        signature = bytes.fromhex(signature_hex)
    except ValueError:
        return "its signature is not hex"
    if not await anyio.to_thread.run_sync(signatures.verify, sealed.body, signature):
        return "its signature does not verify (forged or altered)"
    return None


async def _check_heads(
    database: Database, newest: dict[str, tuple[ChainHead, str]], checked: int
) -> SealCheck:
    chains = sorted(newest)
    rows = await database.fetch(
        _SEALED_RECORDS, chains, [newest[chain][0].count for chain in chains]
    )
    found = {row["chain"]: row for row in rows}
    for chain in chains:
        head, key = newest[chain]
        row = found.get(chain)
        if row is None or row["id"] is None:
            problem = f"chain {chain!r}: record {head.count}, sealed in {key}, is gone"
            return SealCheck(False, checked, head.last_record_id, problem)
        if row["id"] != head.last_record_id or bytes(row["hash"]).hex() != head.head_hash:
            problem = (
                f"chain {chain!r}: record {head.count} is not the one sealed in {key} (the chain"
                " was rewritten and its hashes recomputed)"
            )
            return SealCheck(False, checked, head.last_record_id, problem)
    return SealCheck(True, checked)
