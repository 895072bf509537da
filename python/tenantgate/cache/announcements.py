"""Changes to keys and tenants, announced to every instance over Redis pub/sub.

When an operator revokes or rotates a key, or suspends, changes or deletes a tenant, the
instance that did it tells the others on :data:`CHANNEL`; each drops the key's (or tenant's)
cached records at once. An announcement Redis does not take (Redis down or unreachable from
the announcing instance) is kept by the :class:`Announcer` and sent again every
:data:`RESEND_INTERVAL_SECONDS` until Redis takes it.

The listener also proves that its subscription is live (see
:mod:`tenantgate.identity.liveness`): it pings on the subscribed connection and reports each
pong, and the key cache trusts records long only while that proof is fresh. A listener that
subscribed again (after a failure, or a reconnection redis-py made by itself: each shows as a
``subscribe`` confirmation) may have missed announcements, so it calls ``on_subscribed`` (which
drops every cached record) on every confirmation.

The service's management user needs ``&tenantgate:identity +publish +subscribe +ping`` for
this (see the README); tenants' users cannot read or write this channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

import redis.asyncio
import redis.exceptions

from tenantgate.cache.errors import translating
from tenantgate.errors import ServiceUnavailableError
from tenantgate.identity.liveness import PING_INTERVAL_SECONDS
from tenantgate.naming import ANNOUNCEMENTS_CHANNEL

if TYPE_CHECKING:
    from tenantgate.cache.connections import RedisClient
    from tenantgate.identity.liveness import SubscriptionLiveness

__all__ = ["CHANNEL", "RESEND_INTERVAL_SECONDS", "Announcer", "listen", "publish"]

_logger = logging.getLogger("tenantgate.cache")

CHANNEL: Final = ANNOUNCEMENTS_CHANNEL
"""Where changes to keys and tenants are announced."""

_RETRY_SECONDS: Final = 1.0


RESEND_INTERVAL_SECONDS: Final = 0.25
"""How often announcements Redis did not take are sent again."""


class _Stalled(Exception):
    """The subscribed connection stopped answering pings."""


async def publish(client: RedisClient, message: str) -> None:
    """Announce ``message`` to every instance (Redis down: ServiceUnavailableError)."""
    with translating():
        await client.publish(CHANNEL, message)


class Announcer:
    """Announces changes; keeps what Redis did not take and sends it until Redis takes it."""

    __slots__ = ("_client", "_unsent")

    def __init__(self, client: RedisClient) -> None:
        self._client = client
        self._unsent: dict[str, float] = {}
        """Announcements not taken yet (in order) → when they were first made."""

    @property
    def unsent(self) -> int:
        """Announcements waiting for Redis (a gauge for ``/metrics``)."""
        return len(self._unsent)

    async def announce(self, message: str) -> None:
        """Send ``message`` (after any still waiting); kept for later if Redis is down."""
        self._unsent.setdefault(message, time.monotonic())
        if not await self.flush():
            _logger.warning(
                "Redis unavailable: announcement %s kept and sent again every %.2f s; other "
                "instances apply it when it gets through, or when their subscription lapses",
                message,
                RESEND_INTERVAL_SECONDS,
            )

    async def flush(self) -> bool:
        """Send every waiting announcement, in order; whether none is left."""
        while self._unsent:
            message, since = next(iter(self._unsent.items()))
            try:
                await publish(self._client, message)
            except ServiceUnavailableError:
                return False
            if self._unsent.pop(message, None) is not None and time.monotonic() - since > 0.5:
                _logger.warning(
                    "announcement %s sent %.1f s late", message, time.monotonic() - since
                )
        return True

    async def resend_forever(self) -> None:
        """Send what Redis did not take, every :data:`RESEND_INTERVAL_SECONDS`."""
        while True:
            await asyncio.sleep(RESEND_INTERVAL_SECONDS)
            if self._unsent:
                await self.flush()


async def listen(
    client: RedisClient,
    on_message: Callable[[str], None],
    on_subscribed: Callable[[], None],
    liveness: SubscriptionLiveness,
) -> None:
    """Hand every announcement to ``on_message``, forever, subscribing again after a failure;
    ping the subscribed connection and tell ``liveness`` about each pong."""
    while True:
        pubsub = client.pubsub()
        try:
            if isinstance(client, redis.asyncio.RedisCluster):
                await client.initialize()  # its pub/sub routes by the slot table it reads
            await pubsub.subscribe(CHANNEL)
            while True:
                message = await pubsub.get_message(timeout=PING_INTERVAL_SECONDS)
                if message is not None:
                    _handle(message, on_message, on_subscribed, liveness)
                liveness.check()
                if liveness.stalled():
                    raise _Stalled("no answer to a ping")
                ping = liveness.next_ping()
                if ping is not None:
                    await pubsub.ping(ping)
        except (redis.exceptions.RedisError, OSError, _Stalled) as exc:
            _logger.warning("announcements: %s; subscribing again in %.0f s", exc, _RETRY_SECONDS)
        except Exception:
            _logger.exception("announcements failed; subscribing again in %.0f s", _RETRY_SECONDS)
        finally:
            liveness.lose()
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
        await asyncio.sleep(_RETRY_SECONDS)


def _handle(
    message: dict[str, object],
    on_message: Callable[[str], None],
    on_subscribed: Callable[[], None],
    liveness: SubscriptionLiveness,
) -> None:
    kind = message.get("type")
    data = message.get("data")
    text = data.decode() if isinstance(data, bytes) else str(data)
    if kind == "message":
        on_message(text)
    elif kind == "pong":
        liveness.heard(text)
    elif kind == "subscribe":
        # Also after a reconnection redis-py made on its own: announcements may have been
        # missed meanwhile, and pongs of the old connection prove nothing about them.
        liveness.lose()
        on_subscribed()
