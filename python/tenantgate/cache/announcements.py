"""Changes to keys and tenants, announced to every instance over Redis pub/sub.

When an operator revokes or rotates a key, or suspends, changes or deletes a tenant, the
instance that did it tells the others on :data:`CHANNEL`; each drops the key's (or tenant's)
cached records at once instead of trusting them until their TTL runs out. The TTL stays the
backstop: Redis unreachable, an announcement is lost and the change still applies everywhere
within the TTL. A listener that had to reconnect may have missed announcements, so it calls
``on_subscribed`` (which drops every cached record) each time it (re)subscribes.

The service's management user needs ``&tenantgate:identity +publish +subscribe`` for this (see
the README); tenants' users cannot read or write this channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

import redis.asyncio
import redis.exceptions

from tenantgate.cache.errors import translating
from tenantgate.naming import ANNOUNCEMENTS_CHANNEL

if TYPE_CHECKING:
    from tenantgate.cache.connections import RedisClient

__all__ = ["CHANNEL", "listen", "publish"]

_logger = logging.getLogger("tenantgate.cache")

CHANNEL: Final = ANNOUNCEMENTS_CHANNEL
"""Where changes to keys and tenants are announced."""

_RETRY_SECONDS: Final = 1.0


async def publish(client: RedisClient, message: str) -> None:
    """Announce ``message`` to every instance (Redis down: ServiceUnavailableError)."""
    with translating():
        await client.publish(CHANNEL, message)


async def listen(
    client: RedisClient,
    on_message: Callable[[str], None],
    on_subscribed: Callable[[], None],
) -> None:
    """Hand every announcement to ``on_message``, forever, subscribing again after a failure."""
    while True:
        pubsub = client.pubsub()
        try:
            if isinstance(client, redis.asyncio.RedisCluster):
                await client.initialize()  # its pub/sub routes by the slot table it reads
            await pubsub.subscribe(CHANNEL)
            on_subscribed()
            async for message in pubsub.listen():
                if message.get("type") == "message":
                    data = message.get("data")
                    on_message(data.decode() if isinstance(data, bytes) else str(data))
        except (redis.exceptions.RedisError, OSError) as exc:
            _logger.warning("announcements: %s; subscribing again in %.0f s", exc, _RETRY_SECONDS)
        except Exception:
            _logger.exception("announcements failed; subscribing again in %.0f s", _RETRY_SECONDS)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
        await asyncio.sleep(_RETRY_SECONDS)
