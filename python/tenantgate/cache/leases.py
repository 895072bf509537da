"""The cluster rate-limit tier's one Redis operation: lease up to N tokens from a tenant's
GCRA bucket, atomically, in one round trip (a Lua script).

The bucket is a hash at ``tg:rl:{<tenant id>}`` (:func:`~tenantgate.naming.ratelimit_key`)
holding its theoretical arrival time ``tat`` and the ``interval`` and ``burst`` that last
charged it, all in microseconds and tokens, as integers (Lua 5.1 prints a number with 14
significant digits, so every number is written with ``%.0f``). With ``tau = interval *
burst`` and ``debt = max(tat - now, 0)``, ``floor((tau - debt) / interval)`` tokens are there;
the script takes ``min(want, that)`` and moves ``tat`` on by as many intervals. Nothing there:
it takes none and says when one will be (``debt + interval - tau``).

Time is the server's (``TIME``): every instance then charges against one clock, whatever its
own says. A test may pass ``now_us`` to drive it.

A plan change is read as the host tier reads it (:mod:`tenantgate.limits`): the bucket was
charged under other values; if the new plan is a raise (a shorter interval, a burst no lower)
the old debt is forgiven — the new plan would have refilled the bucket faster, and forgiving
refuses nothing it would allow; otherwise the tokens still owed are owed at the new interval.
The debt is then capped at the new tolerance. The key expires once the bucket is full again
(plus a second), so idle tenants leave nothing behind.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from tenantgate.cache.errors import translating
from tenantgate.naming import ratelimit_key

if TYPE_CHECKING:
    from tenantgate.cache.connections import RedisClient

__all__ = ["LEASE_SCRIPT", "MAX_INTERVAL_US", "Grant", "interval_us", "take_tokens"]

MAX_INTERVAL_US: Final = 2**40
"""The longest emission interval the script is given (about 12.7 days): the product with a
burst stays within a double's exact integers for any burst a plan may have."""

LEASE_SCRIPT: Final = """
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local now
if ARGV[4] ~= "" then
  now = tonumber(ARGV[4])
else
  local t = redis.call("TIME")
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local tau = interval * burst
local state = redis.call("HMGET", KEYS[1], "tat", "interval", "burst")
local debt = math.max((tonumber(state[1]) or now) - now, 0)
local old_interval = tonumber(state[2])
local old_burst = tonumber(state[3])
if old_interval and (old_interval ~= interval or old_burst ~= burst) then
  if interval < old_interval and burst >= old_burst then
    debt = 0
  else
    debt = math.ceil(debt * interval / old_interval)
  end
end
debt = math.min(debt, tau)
local taken = math.min(want, math.floor((tau - debt) / interval))
if taken < 1 then
  return {0, string.format("%.0f", debt + interval - tau)}
end
debt = debt + taken * interval
redis.call("HSET", KEYS[1], "tat", string.format("%.0f", now + debt),
  "interval", string.format("%.0f", interval), "burst", string.format("%.0f", burst))
redis.call("PEXPIRE", KEYS[1], string.format("%.0f", math.ceil(debt / 1000) + 1000))
return {taken, "0"}
"""


@dataclass(frozen=True, slots=True)
class Grant:
    """What one lease round trip got."""

    tokens: int
    """Tokens taken (0 to the number asked for)."""

    retry_after: float
    """When ``tokens`` is 0: seconds until the bucket has one token; else 0."""


def interval_us(rate_per_second: float) -> int:
    """A plan's emission interval in whole microseconds (rounded up: never faster)."""
    return max(1, min(math.ceil(1_000_000 / rate_per_second), MAX_INTERVAL_US))


async def take_tokens(
    client: RedisClient,
    bucket: str,
    *,
    rate_per_second: float,
    burst: int,
    want: int,
    now_us: int | None = None,
) -> Grant:
    """Take up to ``want`` tokens from ``bucket``'s cluster bucket under the plan
    (``rate_per_second``, ``burst``), in one round trip.

    Raises:
        ServiceUnavailableError: Redis did not answer (in time).
    """
    with translating():
        taken, retry_us = await client.eval(
            LEASE_SCRIPT,
            1,
            ratelimit_key(bucket),
            interval_us(rate_per_second),
            burst,
            want,
            "" if now_us is None else now_us,
        )
    return Grant(int(taken), int(retry_us) / 1_000_000)
