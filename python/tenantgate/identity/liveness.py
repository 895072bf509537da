"""Whether this instance provably hears every announced change in time.

Key records may be trusted for a long time (``TENANTGATE_KEY_CACHE_TRUSTED_SECONDS``) only
while every revocation, rotation, suspension, change and deletion announced over Redis
pub/sub provably reaches this instance; otherwise for the short TTL (one second), the
contract that holds without Redis.

The proof: the announcements listener (:func:`tenantgate.cache.announcements.listen`) sends a
``PING`` on its *subscribed* connection every :data:`PING_INTERVAL_SECONDS`. Redis handles
commands one at a time and writes a connection's replies and pushed messages in order, so the
pong of a ping sent at time *s* comes after every announcement Redis took before *s*, and
the listener applies messages in the order they come. Having heard that pong, this instance
has applied every change announced before *s*. The subscription counts as **live** while the
latest ping answered was sent less than :data:`WINDOW_SECONDS` ago.

When the proof lapses (a pong overdue, the connection failed, the listener subscribed again),
``on_lost`` runs at once: the key cache cuts every longer-trusted record back to within the
short TTL (:meth:`KeyCache.shorten <tenantgate.identity.key_cache.KeyCache.shorten>`). So a
change announced while the subscription is lost is applied here at most about
``WINDOW_SECONDS + PING_INTERVAL_SECONDS + TTL`` (2.25 s) after it reached Redis; on a live
subscription, as soon as Redis delivers it.

The clock is injectable (a :class:`~tenantgate.clock.ManualClock`'s ``monotonic`` in tests).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

__all__ = [
    "PING_INTERVAL_SECONDS",
    "PING_PREFIX",
    "STALL_SECONDS",
    "WINDOW_SECONDS",
    "SubscriptionLiveness",
]

PING_INTERVAL_SECONDS: Final = 0.25
"""How often the listener pings its subscribed connection."""

WINDOW_SECONDS: Final = 1.0
"""How recent the latest answered ping must be for the subscription to count as live."""

STALL_SECONDS: Final = 5.0
"""A ping unanswered this long: the connection is stuck (say, half-open); subscribe anew."""

PING_PREFIX: Final = "tenantgate-live:"
"""The payload of our pings (redis-py's own health checks use another)."""

_MAX_UNANSWERED: Final = 64


class SubscriptionLiveness:
    """The proof that the announcements subscription is live, from its pings and pongs."""

    __slots__ = (
        "_clock",
        "_on_lost",
        "_pinged_at",
        "_proven_at",
        "_sent",
        "_sequence",
        "_vouched",
        "losses",
    )

    def __init__(
        self, on_lost: Callable[[], None], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._on_lost = on_lost
        self._clock = clock
        self._sent: OrderedDict[int, float] = OrderedDict()
        """Pings sent and not answered yet: sequence number → when."""
        self._sequence = 0
        self._pinged_at = float("-inf")
        self._proven_at: float | None = None
        """When the latest answered ping was sent: every change announced before is applied."""
        self._vouched = False
        """Whether :meth:`live` said yes since the last loss (records may be trusted long)."""
        self.losses = 0
        """Times the proof lapsed after records were trusted on it (a counter for metrics)."""

    def proven(self) -> bool:
        """Whether every change announced until a moment ago has provably been applied."""
        proven_at = self._proven_at
        return proven_at is not None and self._clock() - proven_at < WINDOW_SECONDS

    def live(self) -> bool:
        """:meth:`proven`, for a caller about to trust a record on it (so that a lapse then
        runs ``on_lost``)."""
        if not self.proven():
            return False
        self._vouched = True
        return True

    def next_ping(self) -> str | None:
        """The payload of a ping to send now, or None when the last one is recent enough."""
        now = self._clock()
        if now - self._pinged_at < PING_INTERVAL_SECONDS:
            return None
        self._pinged_at = now
        self._sequence += 1
        self._sent[self._sequence] = now
        while len(self._sent) > _MAX_UNANSWERED:
            self._sent.popitem(last=False)
        return f"{PING_PREFIX}{self._sequence}"

    def heard(self, payload: str) -> None:
        """A pong came back with ``payload``; pongs come in the order pings were sent."""
        if not payload.startswith(PING_PREFIX):
            return
        try:
            sequence = int(payload[len(PING_PREFIX) :])
        except ValueError:
            return
        sent_at = self._sent.get(sequence)
        if sent_at is None:
            return  # a ping of a connection given up since
        while self._sent:
            earliest, _ = self._sent.popitem(last=False)
            if earliest == sequence:
                break
        if self._proven_at is None or sent_at > self._proven_at:
            self._proven_at = sent_at

    def stalled(self) -> bool:
        """Whether a ping has gone unanswered for :data:`STALL_SECONDS`."""
        return bool(self._sent) and self._clock() - next(iter(self._sent.values())) >= (
            STALL_SECONDS
        )

    def check(self) -> None:
        """Run ``on_lost`` if the proof lapsed since records were last trusted on it."""
        if self._vouched and not self.proven():
            self._lost()

    def lose(self) -> None:
        """The subscription failed or was made anew: nothing is proven any more."""
        self._proven_at = None
        self._sent.clear()
        self._pinged_at = float("-inf")
        if self._vouched:
            self._lost()

    def _lost(self) -> None:
        self._vouched = False
        self.losses += 1
        self._on_lost()
