"""Sealing the audit chains: their heads, every so often, into a bucket nobody can rewrite.

The chains alone cannot catch someone who rewrites the log *and* recomputes every hash after
the change (the hashes need no secret). A seal can: :meth:`AuditSealer.seal` reads every
chain's head and writes a :class:`~tenantgate.audit.digest.Digest` (linked to the previous one
by its SHA-256) into the audit bucket under S3 Object Lock in compliance mode, where nobody —
the bucket's owner included — can delete or replace it before its retain-until date; ``audit
verify`` then checks that each sealed head is still in its chain, with the same hash
(:mod:`tenantgate.audit.seal_check`).

One instance seals at a time: the sealer takes a PostgreSQL advisory lock (trying, not
waiting: whoever holds it is sealing now) and keeps the lock's transaction open while it
writes, so digest numbers never fork. ``audit_seals`` remembers the digests written (the
previous digest's hash for the next one); a digest written to S3 whose row was lost (the
process died between the two) is found at its key next time and adopted, not overwritten.

A ``signer`` may sign each digest's bytes; the signature goes into the object's metadata
(``signature``, ``signature-key``), as CloudTrail's does. With an HSM configured the service
signs with an HMAC key in the token (:mod:`tenantgate.audit.seal_signer`), and a signer that can
also check (:class:`SignatureChecker`) makes ``audit verify`` check every digest's signature.

A periodic seal that fails (S3 or PostgreSQL down, the HSM failing, a bucket problem) is
logged and counted (:class:`SealCounts`, ``tenantgate_audit_seal_failures_total``),
and tried again a quarter of the interval later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

import anyio.to_thread

from tenantgate.audit.digest import (
    DIGEST_FORMAT,
    DIGEST_PREFIX,
    ChainHead,
    Digest,
    decode_digest,
    digest_key,
    encode_digest,
    sha256_hex,
)
from tenantgate.errors import ConflictError
from tenantgate.storage.locked_bucket import (
    LockedBucketError,
    LockedObject,
    ensure_locked_bucket,
    first_versions,
    put_locked,
    read_version,
)

if TYPE_CHECKING:
    from tenantgate.db.database import Database
    from tenantgate.db.types import Connection
    from tenantgate.settings import AuditSettings
    from tenantgate.storage import StorageService

__all__ = [
    "AuditSealer",
    "SealCounts",
    "SealError",
    "Sealed",
    "SealedDigest",
    "SignatureChecker",
    "Signer",
    "describe",
]

_SEAL_LOCK: Final = (0x7467_7365, 0)  # "tgse": one sealer at a time, across instances
_TRY_LOCK: Final = "SELECT pg_try_advisory_xact_lock($1, $2)"
_LAST: Final = (
    "SELECT seq, sealed_at, digest_sha256 FROM public.audit_seals ORDER BY seq DESC LIMIT 1"
)
_REMEMBER: Final = """
INSERT INTO public.audit_seals (seq, sealed_at, object_key, version_id, digest_sha256, chains)
VALUES ($1, $2, $3, $4, $5, $6)
"""
# Every chain's last record, by a loose index scan over (chain, seq): one index probe per
# chain, not a read of the whole log.
_HEADS: Final = """
WITH RECURSIVE chains(chain) AS (
    (SELECT chain FROM public.audit_log ORDER BY chain LIMIT 1)
  UNION ALL
    SELECT (SELECT a.chain FROM public.audit_log a WHERE a.chain > c.chain
            ORDER BY a.chain LIMIT 1)
      FROM chains c WHERE c.chain IS NOT NULL
)
SELECT head.chain, head.seq, head.id, head.hash
  FROM chains c
 CROSS JOIN LATERAL (SELECT a.chain, a.seq, a.id, a.hash FROM public.audit_log a
                      WHERE a.chain = c.chain ORDER BY a.seq DESC LIMIT 1) head
 WHERE c.chain IS NOT NULL
"""

_logger = logging.getLogger("tenantgate.audit")


class SealError(LockedBucketError):
    """The audit bucket holds something that is not this deployment's next digest."""


class Signer(Protocol):
    """Signs a digest's bytes (called in a worker thread: it may block, as an HSM does)."""

    @property
    def key_name(self) -> str:
        """Which key signs: written beside the signature, so a verifier knows which to use."""
        ...

    def sign(self, data: bytes) -> bytes: ...


class SealCounts:
    """What periodic sealing came to, for ``/metrics`` (kept by the application across the
    sealers of its lifespans)."""

    __slots__ = ("failures",)

    def __init__(self) -> None:
        self.failures = 0
        """Periodic seals that failed."""


@runtime_checkable
class SignatureChecker(Protocol):
    """A :class:`Signer` that can also check a signature (called in a worker thread)."""

    @property
    def key_name(self) -> str: ...

    def sign(self, data: bytes) -> bytes: ...

    def verify(self, data: bytes, signature: bytes) -> bool: ...


@dataclass(frozen=True, slots=True)
class Sealed:
    """One digest written."""

    seq: int
    key: str
    version_id: str
    sealed_at: datetime
    retain_until: datetime
    chains: int
    digest_sha256: str


@dataclass(frozen=True, slots=True)
class SealedDigest:
    """A digest read back from the audit bucket (the first version of its key)."""

    stored: LockedObject
    body: bytes
    metadata: dict[str, str]


class AuditSealer:
    """Writes seals (:meth:`seal`, and every ``settings.seal_interval_seconds`` while
    :meth:`running`) and reads them back (:meth:`read_all`)."""

    def __init__(
        self,
        database: Database,
        storage: StorageService,
        settings: AuditSettings,
        *,
        signer: Signer | None = None,
        counts: SealCounts | None = None,
    ) -> None:
        self._database = database
        self._storage = storage
        self._settings = settings
        self._signer = signer
        self.bucket: Final = storage.buckets.audit
        self._bucket_ready = False
        self.counts = counts if counts is not None else SealCounts()

    @property
    def signature_checker(self) -> SignatureChecker | None:
        """What checks the digests' signatures (the signer, if it can check); None: they
        are not checked."""
        signer = self._signer
        return signer if isinstance(signer, SignatureChecker) else None

    # -- writing ---------------------------------------------------------------------------

    async def seal(self, *, only_if_due: bool = False) -> Sealed | None:
        """Seal every chain's head now; ``None`` when another instance holds the lock or (with
        ``only_if_due``) the last seal is younger than the interval."""
        async with self._database.transaction() as connection:
            if not await connection.fetchval(_TRY_LOCK, *_SEAL_LOCK):
                return None
            last = await connection.fetchrow(_LAST)
            now: datetime = await connection.fetchval("SELECT clock_timestamp()")
            interval = timedelta(seconds=self._settings.seal_interval_seconds)
            if only_if_due and last is not None and now - last["sealed_at"] < interval:
                return None
            heads = await connection.fetch(_HEADS)
            await self._ensure_bucket()
            seq, previous_hash, previous_to = 1, None, None
            if last is not None:
                seq, previous_hash = last["seq"] + 1, last["digest_sha256"]
                previous_to = last["sealed_at"]
            while (orphan := await self._orphan(seq, previous_hash)) is not None:
                await self._remember(connection, orphan)
                seq, previous_hash, previous_to = seq + 1, orphan.digest_sha256, orphan.sealed_at
            digest = Digest(
                format=DIGEST_FORMAT,
                seq=seq,
                from_=previous_to,
                to=now,
                prev_digest_sha256=previous_hash,
                chains=sorted(
                    (
                        ChainHead(row["chain"], row["seq"], row["id"], bytes(row["hash"]).hex())
                        for row in heads
                    ),
                    key=lambda head: head.chain,
                ),
            )
            sealed = await self._write(digest, now)
            await self._remember(connection, sealed)
        _logger.info("audit sealed: digest %d, %d chains, %s", seq, sealed.chains, sealed.key)
        return sealed

    async def seal_now(self) -> Sealed:
        """:meth:`seal`, or :class:`ConflictError` when another instance is sealing."""
        sealed = await self.seal()
        if sealed is None:
            raise ConflictError("another instance is sealing the audit log right now; try again")
        return sealed

    async def _ensure_bucket(self) -> None:
        if not self._bucket_ready:
            storage = self._storage
            region = storage.s3_settings.region
            try:
                await storage.blocking.run(ensure_locked_bucket, storage.s3, self.bucket, region)
            except LockedBucketError as exc:
                _logger.error("cannot seal the audit log: %s", exc)
                raise
            self._bucket_ready = True

    async def _write(self, digest: Digest, now: datetime) -> Sealed:
        body = encode_digest(digest)
        digest_sha256 = sha256_hex(body)
        metadata = {"digest-sha256": digest_sha256}
        if self._signer is not None:
            signature = await anyio.to_thread.run_sync(self._signer.sign, body)
            metadata |= {"signature": signature.hex(), "signature-key": self._signer.key_name}
        retain_until = now + timedelta(days=self._settings.retention_days)
        key = digest_key(digest.seq)
        storage = self._storage
        version_id = await storage.blocking.run(
            put_locked, storage.s3, self.bucket, key, body, retain_until, metadata
        )
        return Sealed(
            digest.seq, key, version_id, now, retain_until, len(digest.chains), digest_sha256
        )

    async def _orphan(self, seq: int, previous_hash: str | None) -> Sealed | None:
        """The digest already at ``seq``'s key (written by a sealer that died before it could
        remember it), when it follows ``previous_hash``; :class:`SealError` for anything else
        there (another deployment's, or forged)."""
        key = digest_key(seq)
        storage = self._storage
        found = await storage.blocking.run(first_versions, storage.s3, self.bucket, key)
        stored = next((item for item in found if item.key == key), None)
        if stored is None:
            return None
        body, _ = await storage.blocking.run(
            read_version, storage.s3, self.bucket, key, stored.version_id
        )
        digest = decode_digest(body)
        if digest.seq != seq or digest.prev_digest_sha256 != previous_hash:
            reason = (
                f"{self.bucket}/{key} is not this deployment's digest {seq}: is another "
                "deployment using the same bucket prefix?"
            )
            _logger.error("cannot seal the audit log: %s", reason)
            raise SealError(reason)
        _logger.warning("audit seal %s was written but not remembered: adopted", key)
        return Sealed(
            seq, key, stored.version_id, digest.to, digest.to, len(digest.chains), sha256_hex(body)
        )

    @staticmethod
    async def _remember(connection: Connection, sealed: Sealed) -> None:
        await connection.execute(
            _REMEMBER,
            sealed.seq,
            sealed.sealed_at,
            sealed.key,
            sealed.version_id,
            sealed.digest_sha256,
            sealed.chains,
        )

    # -- periodically ----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Seal every interval in the background while the block runs (nothing when the
        interval is 0). Each instance looks four times per interval; the advisory lock and
        the last seal's time make one of them seal."""
        interval = self._settings.seal_interval_seconds
        if interval == 0:
            yield
            return
        task = asyncio.create_task(self._every(max(interval / 4, 1.0)))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _every(self, period: float) -> None:
        while True:
            await asyncio.sleep(period)
            try:
                await self.seal(only_if_due=True)
            except Exception:  # S3, PostgreSQL or the HSM down, or a bucket problem: try again
                self.counts.failures += 1
                _logger.exception(
                    "sealing the audit log failed (%d failures so far); trying again in %g s",
                    self.counts.failures,
                    period,
                )

    # -- reading ---------------------------------------------------------------------------

    async def read_all(self) -> list[SealedDigest]:
        """Every digest in the audit bucket, first versions only, in sealing order."""
        storage = self._storage
        stored = await storage.blocking.run(first_versions, storage.s3, self.bucket, DIGEST_PREFIX)
        digests = []
        for item in stored:
            body, metadata = await storage.blocking.run(
                read_version, storage.s3, self.bucket, item.key, item.version_id
            )
            digests.append(SealedDigest(item, body, metadata))
        return digests


def describe(sealed: Sealed) -> dict[str, Any]:
    """``sealed`` as the JSON the CLI prints."""
    return {
        "seq": sealed.seq,
        "key": sealed.key,
        "version_id": sealed.version_id,
        "sealed_at": sealed.sealed_at.isoformat(),
        "retain_until": sealed.retain_until.isoformat(),
        "chains": sealed.chains,
        "digest_sha256": sealed.digest_sha256,
    }
