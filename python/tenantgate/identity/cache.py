"""`IdentityCache`: what this instance knows of keys, plans and custom domains.

It puts the key cache, the plans and the domains together over one
:class:`~tenantgate.identity.source.IdentitySource`, keeps them fresh (plans and domains are
reloaded every second, key records expire after the verifier's TTL), records which keys were
used (``last_used_at``, in one statement per second), and is what the
operator's use cases tell about a change they made, so that it applies at once on this
instance:

======================================  ===============================================
after the operator changes...           call
======================================  ===============================================
a key (revoked, rotated)                ``await key_changed(key_id)``
a tenant (status, plan, name, deleted)  ``await tenant_changed(tenant_id)``
a custom domain (tenant created with    ``await reload_domains()``
one, domain set, changed or removed,
tenant deleted with one)
a plan (created or changed)             ``await reload_plans()``
======================================  ===============================================
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING
from uuid import UUID

from tenantgate.errors import ServiceUnavailableError
from tenantgate.identity.domains import Domains
from tenantgate.identity.hsm_keys import HsmKeyMatcher
from tenantgate.identity.key_cache import KeyCache
from tenantgate.identity.liveness import SubscriptionLiveness
from tenantgate.identity.plans import Plans

if TYPE_CHECKING:
    from tenantgate.identity.hsm_keys import KeyHmac
    from tenantgate.identity.source import HsmCandidate, IdentitySource, KeyRecord, PlanRecord
    from tenantgate.keys import Verifier

__all__ = ["REFRESH_INTERVAL_SECONDS", "IdentityCache"]

REFRESH_INTERVAL_SECONDS = 1.0
"""How often plans and custom domains are reloaded: the bound on how late a change made
through another instance applies here."""

_logger = logging.getLogger("tenantgate.identity")


class IdentityCache:
    """This instance's key cache, plans and domains, over one source of truth."""

    def __init__(
        self,
        verifier: Verifier,
        hsm: KeyHmac | None = None,
        *,
        ttl_seconds: float = 1.0,
        trusted_seconds: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """``ttl_seconds`` must be the verifier's TTL; ``trusted_seconds`` is how long a record
        is trusted while the announcements subscription is provably live (None: never
        longer than the TTL); ``monotonic`` is the clock liveness is judged by (the
        verifier's, in tests)."""
        self.announce: Callable[[str], Awaitable[None]] | None = None
        """Tells the other instances about a change (set by the plugin: Redis pub/sub)."""
        self._source: IdentitySource | None = None
        self.plans = Plans(self._load_plans)
        self.domains = Domains(verifier, self._load_custom_domains)
        matcher = HsmKeyMatcher(hsm, self._find_hsm_candidates) if hsm is not None else None
        self.liveness = SubscriptionLiveness(self._subscription_lost, monotonic)
        """Whether this instance provably hears every announced change (fed by the plugin's
        announcements listener)."""
        self.keys = KeyCache(
            verifier,
            self.plans,
            self._find_key,
            hsm=matcher,
            ttl_seconds=ttl_seconds,
            trusted_seconds=trusted_seconds,
            live=self.liveness.live,
        )

    @contextlib.asynccontextmanager
    async def serving(
        self, source: IdentitySource, *, refresh_interval: float = REFRESH_INTERVAL_SECONDS
    ) -> AsyncIterator[None]:
        """Use ``source`` and reload plans and domains from it every ``refresh_interval``
        seconds until the block ends."""
        self._source = source
        refresher = asyncio.create_task(self._refresh_forever(refresh_interval))
        try:
            yield
        finally:
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher
            with contextlib.suppress(Exception):
                await self._record_use()  # the last batch, best effort
            self._source = None

    # -- what the operator's use cases call after a change ------------------------------

    def forget_key(self, key_id: UUID) -> None:
        """The key changed: its next request here looks it up again."""
        self.keys.forget_key(key_id)

    def forget_tenant(self, tenant_id: UUID) -> None:
        """The tenant changed: the next request with any of its keys looks it up again."""
        self.keys.forget_tenant(tenant_id)

    async def key_changed(self, key_id: UUID) -> None:
        """The key was revoked or rotated: forget it here, and tell the other instances."""
        self.forget_key(key_id)
        await self._announce(f"key:{key_id}")

    async def tenant_changed(self, tenant_id: UUID) -> None:
        """The tenant changed: forget its keys here, and tell the other instances."""
        self.forget_tenant(tenant_id)
        await self._announce(f"tenant:{tenant_id}")

    def apply_announcement(self, message: str) -> None:
        """Another instance announced a change (``key:<id>`` or ``tenant:<id>``)."""
        kind, _, value = message.partition(":")
        try:
            target = UUID(value)
        except ValueError:
            _logger.warning("ignored a malformed announcement %r", message)
            return
        if kind == "key":
            self.forget_key(target)
        elif kind == "tenant":
            self.forget_tenant(target)

    def forget_everything(self) -> None:
        """Drop every cached key record (announcements may have been missed)."""
        self.keys.forget_all()

    def _subscription_lost(self) -> None:
        shortened = self.keys.shorten()
        _logger.warning(
            "announcements subscription not provably live: %d key records now trusted for "
            "the short TTL only",
            shortened,
        )

    async def _announce(self, message: str) -> None:
        if self.announce is None:
            return
        try:
            await self.announce(message)
        except Exception as exc:
            # Not the Redis outage the announcer keeps messages through: a bug. The change
            # is stored; other instances see it when their records expire.
            _logger.warning("announcing %s failed: %s", message, exc)

    async def reload_plans(self) -> None:
        """A plan changed: reload every plan now. An outage is logged, not raised (the
        change is stored; the next refresh applies it)."""
        await self._reload("plans", self.plans.reload)

    async def reload_domains(self) -> None:
        """A custom domain changed: reload every binding now. An outage is logged, not
        raised (the change is stored; the next refresh applies it)."""
        await self._reload("custom domains", self.domains.reload)

    # -- internals -----------------------------------------------------------------------

    async def _reload(self, what: str, reload: Callable[[], Awaitable[None]]) -> None:
        try:
            await reload()
        except ServiceUnavailableError as exc:
            _logger.warning("reloading %s: %s; the next refresh retries", what, exc)

    async def _refresh_forever(self, interval: float) -> None:
        while True:
            for what, reload in (
                ("plans", self.plans.reload),
                ("domains", self.domains.reload),
                ("keys' last use", self._record_use),
            ):
                try:
                    await reload()
                except ServiceUnavailableError:
                    pass  # waited out: the next round tries again
                except Exception:
                    _logger.exception("refreshing %s failed", what)
            await asyncio.sleep(interval)

    async def _record_use(self) -> None:
        """Hand the keys used since the last round to the source (``last_used_at``)."""
        used = self.keys.take_used()
        if not used:
            return
        try:
            await self._require_source().mark_used(used)
        except BaseException:
            self.keys.give_back_used(used)  # the next round tries again
            raise

    def _require_source(self) -> IdentitySource:
        if self._source is None:
            raise RuntimeError("IdentityCache used outside IdentityCache.serving()")
        return self._source

    async def _find_key(self, digest: bytes) -> KeyRecord | None:
        return await self._require_source().find_key(digest)

    async def _find_hsm_candidates(self, display_prefix: str) -> Sequence[HsmCandidate]:
        return await self._require_source().find_hsm_candidates(display_prefix)

    async def _load_plans(self) -> Sequence[PlanRecord]:
        return await self._require_source().load_plans()

    async def _load_custom_domains(self) -> Mapping[str, UUID]:
        return await self._require_source().load_custom_domains()
