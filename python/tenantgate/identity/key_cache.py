"""The key cache: the native `Verifier` and what happens on a miss.

The verifier holds one record per key digest for a short time (its ``ttl_seconds``, the bound
on how late a change made through another instance is seen). On a miss, :meth:`KeyCache.resolve`
looks the digest up with the lookup function it was given and caches the answer — the key's
record, or a refusal — so the middleware's second native call decides. Concurrent misses for
one digest share one lookup, which runs as a task of its own: a requester that goes away
(its client disconnected, its task cancelled) does not cancel it for the others. At most
:data:`MAX_LOOKUPS_IN_FLIGHT` lookups run at once per instance; a miss that cannot start one
within :data:`LOOKUP_QUEUE_SECONDS` is a 503, so a flood of unknown keys cannot queue work
without bound.

A usable key's id is noted when it is looked up (at most once per record lifetime) and handed
over in batches (:meth:`KeyCache.take_used`) for ``last_used_at``: nothing is written on a
request's path, and a refused key costs exactly the read an unknown one costs.

With an HSM configured, a digest PostgreSQL does not know may still be an HSM key's (whose
stored digest only the HSM computes): the :class:`~tenantgate.identity.hsm_keys.HsmKeyMatcher`
then finds it by the presented key's display prefix and the HSM. When the HSM fails, nothing is
cached (the request gets the uniform 403, the next one tries again), the failure is counted in
:attr:`KeyCache.hsm_unavailable` and logged; keys PostgreSQL finds never wait for the HSM.
An HSM key found usable within :data:`KNOWN_GOOD_SECONDS` (its pepper digest is then
remembered with its key id, as the guessing brake remembers it) is still accepted while the
HSM is down, with its record read fresh from PostgreSQL (so revocation, expiry and suspension
still apply): the same pepper digest is the same key, which the HSM vouched for. Each such use
counts as a new one, so a key in steady use rides out an outage of any length.

A usable key's record is trusted for the verifier's TTL (one second), or for
``trusted_seconds`` while ``live()`` says every announced change provably reaches this instance
(:mod:`tenantgate.identity.liveness`) and no change was announced while the record was being
read (a record read before a revocation committed but cached after its announcement was applied
must not outlive the TTL). :meth:`KeyCache.shorten` cuts every longer-trusted record back to
within the TTL when that proof lapses. Refusals keep their own lifetime.

A record's payload is a :class:`KeyEntry`: the caller's identity together with what the
middleware needs to render the rate-limit headers, all computed once per lookup, none of it
per request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Final
from uuid import UUID

from tenantgate.errors import HsmUnavailableError, ServiceUnavailableError
from tenantgate.identity.context import TenantIdentity
from tenantgate.identity.counts import DecisionCounts
from tenantgate.identity.hsm_keys import HsmKeyMatcher, bearer_key
from tenantgate.identity.plans import Plans
from tenantgate.identity.source import KeyRecord, PlanRecord
from tenantgate.keys import Miss, Verifier
from tenantgate.limits import Quota
from tenantgate.naming import TenantNames
from tenantgate.scopes import scope_mask

__all__ = [
    "LOOKUP_QUEUE_SECONDS",
    "MAX_LOOKUPS_IN_FLIGHT",
    "SUNSET_NOTICE",
    "KeyCache",
    "KeyEntry",
    "KeyLookup",
    "sunset_headers",
]

MAX_LOOKUPS_IN_FLIGHT = 16
"""Key lookups (PostgreSQL reads) one instance runs at once."""

LOOKUP_QUEUE_SECONDS = 2.0
"""How long a miss waits for a lookup slot before its answer is a 503."""

KNOWN_GOOD_SECONDS = 600.0
"""How long a key found usable stays "known good" for the guessing brake after its record
(trusted one second) expired."""

KNOWN_GOOD_CAPACITY = 100_000
"""Known-good key digests remembered, at most (the least recently confirmed go first)."""

_logger = logging.getLogger("tenantgate.identity")

KeyLookup = Callable[[bytes], Awaitable[KeyRecord | None]]
"""Find the key stored under a digest (:meth:`IdentitySource.find_key
<tenantgate.identity.source.IdentitySource.find_key>`)."""


SUNSET_NOTICE: Final = timedelta(days=7)
"""How long before a key expires its responses say so (``Deprecation``, ``Sunset``)."""


def sunset_headers(
    expires_at: datetime | None, now: datetime | None = None
) -> list[tuple[bytes, bytes]]:
    """``Deprecation`` (RFC 9745: since when, ``@`` Unix seconds) and ``Sunset`` (RFC 8594: when,
    an HTTP date) for a key that expires within :data:`SUNSET_NOTICE`; else no header. Worked
    out when the key's record is cached (a record lives a second, or up to a minute while
    the subscription is live: the headers may start that much late), not per request."""
    if expires_at is None:
        return []
    now = now if now is not None else datetime.now(UTC)
    if expires_at - now > SUNSET_NOTICE:
        return []
    deprecated_since = int((expires_at - SUNSET_NOTICE).timestamp())
    return [
        (b"deprecation", b"@%d" % deprecated_since),
        (b"sunset", format_datetime(expires_at.astimezone(UTC), usegmt=True).encode()),
    ]


class KeyEntry:
    """The verifier's payload for one key: who is calling, and its plan's quota. A key's
    scopes and networks are cached in the native record beside it (see :meth:`KeyCache._cache`)
    and checked there, before the tenant's bucket is charged."""

    __slots__ = (
        "bucket",
        "counts",
        "identity",
        "networks",
        "policy_name",
        "quota",
        "scope_mask",
        "scopes",
        "sunset_headers",
    )

    def __init__(
        self,
        identity: TenantIdentity,
        quota: Quota,
        counts: list[int] | None = None,
        expires_at: datetime | None = None,
        scopes: Sequence[str] | None = None,
        allowed_cidrs: Sequence[str] = (),
    ) -> None:
        self.identity = identity
        self.bucket = str(identity.tenant_id)
        """The tenant's rate-limit bucket id (its id as text: a str hashes once and caches
        it, a UUID hashes in Python on every dict lookup)."""
        self.quota = quota
        """The plan's shared quota (the limiter charges the tenant's bucket against it)."""
        self.policy_name = identity.plan.encode()
        """The plan's name as the rate-limit headers quote it."""
        self.counts = counts if counts is not None else [0, 0]
        """The plan's ``[limited, allowed]`` decisions (shared by the plan's records)."""
        self.sunset_headers = sunset_headers(expires_at)
        """``Deprecation`` and ``Sunset`` for a key that expires soon, else empty."""
        self.scope_mask = scope_mask(scopes)
        """The native record's scope mask; None for every scope (the common case)."""
        self.scopes = None if self.scope_mask is None else frozenset(scopes or ())
        """What the key may do, for a route that decides its scope late (``require_scope``);
        None for everything."""
        self.networks = tuple(allowed_cidrs)
        """Where the key may be used from (CIDRs, parsed by the native record); empty for
        anywhere."""


class KeyCache:
    """The native key table, filled on demand from ``lookup``."""

    def __init__(
        self,
        verifier: Verifier,
        plans: Plans,
        lookup: KeyLookup,
        counts: DecisionCounts | None = None,
        hsm: HsmKeyMatcher | None = None,
        *,
        ttl_seconds: float = 1.0,
        trusted_seconds: float | None = None,
        live: Callable[[], bool] | None = None,
    ) -> None:
        self.verifier = verifier
        self._ttl_seconds = ttl_seconds
        """The verifier's TTL: how long a record is trusted without proof of liveness."""
        self._trusted_seconds = (
            trusted_seconds
            if trusted_seconds is not None and trusted_seconds > ttl_seconds
            else None
        )
        self.live: Callable[[], bool] = live if live is not None else _never
        """Whether every announced change provably reaches this instance now."""
        self._changes = 0
        """Invalidations so far (announced changes, lapses): a lookup that saw one happen
        while it ran caches its answer for the TTL only."""
        self.trusted_inserts = 0
        """Records cached for ``trusted_seconds`` (a counter for ``/metrics``)."""
        self.counts = counts if counts is not None else DecisionCounts()
        """Decisions per plan, counted by the middleware."""
        """The native table and one-call check; the middleware calls it directly."""
        self._plans = plans
        self._lookup = lookup
        self.hsm = hsm
        """Finds HSM keys through the HSM (None: no HSM configured)."""
        self._pending: dict[bytes, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(MAX_LOOKUPS_IN_FLIGHT)
        self._used: set[UUID] = set()
        self._known_good: OrderedDict[bytes, float] = OrderedDict()
        self.lookups = 0
        """Lookups started so far (a counter for ``/metrics``)."""
        self.hsm_unavailable = 0
        """Misses refused because the HSM failed (a counter for ``/metrics``)."""
        self._hsm_logged_at = float("-inf")
        self._hsm_keys: dict[bytes, UUID] = {}
        """The HSM key each known-good digest was found to be: while the HSM is down, such a
        key is still accepted."""

    @property
    def lookups_in_flight(self) -> int:
        """Digests being looked up right now (a gauge for ``/metrics``)."""
        return len(self._pending)

    def known_good(self, digest: bytes) -> bool:
        """Whether ``digest`` was a usable key's within :data:`KNOWN_GOOD_SECONDS` (so the
        guessing brake lets its lookup through: a customer's key whose record merely expired
        is not a guess)."""
        seen = self._known_good.get(digest)
        return seen is not None and time.monotonic() - seen < KNOWN_GOOD_SECONDS

    def _remember_good(self, digest: bytes, hsm_key_id: UUID | None = None) -> None:
        self._known_good[digest] = time.monotonic()
        self._known_good.move_to_end(digest)
        if hsm_key_id is not None:
            self._hsm_keys[digest] = hsm_key_id
        while len(self._known_good) > KNOWN_GOOD_CAPACITY:
            forgotten, _ = self._known_good.popitem(last=False)
            self._hsm_keys.pop(forgotten, None)

    def take_used(self) -> list[UUID]:
        """The ids of usable keys looked up since the last call (for ``last_used_at``)."""
        used, self._used = list(self._used), set()
        return used

    def give_back_used(self, key_ids: list[UUID]) -> None:
        """Key ids :meth:`take_used` gave that could not be recorded: keep them for later."""
        self._used.update(key_ids)

    def forget_key(self, key_id: UUID) -> None:
        """Drop the key's record: its next request looks it up again."""
        self._changes += 1
        self.verifier.invalidate_key(str(key_id))

    def forget_tenant(self, tenant_id: UUID) -> None:
        """Drop the records of all the tenant's keys."""
        self._changes += 1
        self.verifier.invalidate_tenant(str(tenant_id))

    def forget_all(self) -> None:
        """Drop every record (announcements may have been missed)."""
        self._changes += 1
        self.verifier.clear()

    def shorten(self) -> int:
        """Cut every record trusted past the TTL back to within it (spread over the TTL, so
        the lookups that follow do not all come at once); how many."""
        self._changes += 1
        return self.verifier.shorten(self._ttl_seconds)

    async def resolve(self, miss: Miss, authorization: bytes | None = None) -> None:
        """Look the missed digest up and cache the answer; one lookup per digest at a time.
        ``authorization`` (the header the miss came from) is needed to find an HSM key."""
        digest = miss.digest
        lookup = self._pending.get(digest)
        if lookup is None:
            lookup = asyncio.get_running_loop().create_task(
                self._look_up(digest, miss.display_prefix, authorization)
            )
            self._pending[digest] = lookup
            lookup.add_done_callback(self._finished(digest))
        await asyncio.shield(lookup)

    def _finished(self, digest: bytes) -> Callable[[asyncio.Task[None]], None]:
        def finished(lookup: asyncio.Task[None]) -> None:
            if self._pending.get(digest) is lookup:
                del self._pending[digest]
            if not lookup.cancelled():
                lookup.exception()  # retrieved: a failure nobody waits for is not logged

        return finished

    async def _look_up(
        self, digest: bytes, display_prefix: str, authorization: bytes | None
    ) -> None:
        try:
            async with asyncio.timeout(LOOKUP_QUEUE_SECONDS):
                await self._slots.acquire()
        except TimeoutError:
            raise ServiceUnavailableError("postgresql") from None
        try:
            self.lookups += 1
            changes = self._changes
            record = await self._lookup(digest)
            via_hsm = False
            if record is None and self.hsm is not None:
                key = bearer_key(authorization)
                if key is not None:
                    remembered = self._hsm_keys.get(digest) if self.known_good(digest) else None
                    try:
                        record = await self.hsm.match(key, display_prefix, remembered)
                    except HsmUnavailableError as exc:
                        self._refused_by_hsm(display_prefix, exc)
                        return  # nothing cached: the next request asks the HSM again
                    via_hsm = record is not None
            self._cache(digest, record, via_hsm=via_hsm, unchanged=changes == self._changes)
        finally:
            self._slots.release()

    def _refused_by_hsm(self, display_prefix: str, exc: HsmUnavailableError) -> None:
        """Count the refusal; log it, at most once a second (an outage is not a log flood)."""
        self.hsm_unavailable += 1
        now = time.monotonic()
        if now - self._hsm_logged_at >= 1.0:
            self._hsm_logged_at = now
            _logger.warning(
                "refused an HSM key (%s…): %s; %d refused so far",
                display_prefix,
                exc,
                self.hsm_unavailable,
            )

    def _cache(
        self,
        digest: bytes,
        record: KeyRecord | None,
        *,
        via_hsm: bool = False,
        unchanged: bool = False,
    ) -> None:
        if record is None:
            self.verifier.insert_refusal(digest)
            return
        identity = TenantIdentity(
            tenant_id=record.tenant_id,
            key_id=record.key_id,
            name=record.tenant_name,
            plan=record.plan,
            tier=record.tier,
            names=TenantNames.of(record.tenant_id),
            redis_database=record.redis_database,
        )
        if record.usable:
            self._used.add(record.key_id)
            self._remember_good(digest, record.key_id if via_hsm else None)
        quota = self._plans.quota(PlanRecord(record.plan, record.rate_per_second, record.burst))
        tenant_id = str(record.tenant_id)
        entry = KeyEntry(
            identity,
            quota,
            self.counts.of(record.plan),
            record.expires_at,
            record.scopes,
            record.allowed_cidrs,
        )
        self.verifier.insert(
            digest,
            tenant_id=tenant_id,
            key_id=str(record.key_id),
            expires_at=record.expires_at.timestamp() if record.expires_at is not None else None,
            usable=record.usable,
            payload=entry,
            quota=quota,
            bucket=tenant_id,
            # Checked in the one native call before the bucket is charged, so a leaked key
            # used from the wrong place or for the wrong thing spends none of its tenant's
            # budget.
            scopes=entry.scope_mask,
            networks=entry.networks,
            ttl_seconds=self._trust_for(unchanged),
        )

    def _trust_for(self, unchanged: bool) -> float | None:
        """How long to trust a record just read: ``trusted_seconds`` if nothing changed while
        it was read and the subscription is live, else None (the verifier's TTL)."""
        if self._trusted_seconds is None or not unchanged or not self.live():
            return None
        self.trusted_inserts += 1
        return self._trusted_seconds


def _never() -> bool:
    return False
