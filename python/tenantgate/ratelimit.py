"""Rate-limit answers: the `RateLimit-*` headers on every tenant response, and the 429.

The decision itself is native (`Verifier.verify_and_acquire` takes the token in the same call
that identifies the key); this module only renders it. Headers follow both generations of the
IETF draft: `RateLimit-Limit` / `-Remaining` / `-Reset` (drafts ≤ -06, what Kong, Envoy and
Litestar send) and the structured `RateLimit-Policy` / `RateLimit` fields (draft -07 on).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from litestar.types import Message, Send

    from tenantgate.limits import Decision

__all__ = ["rate_limit_headers", "send_too_many_requests", "with_rate_limit_headers"]


def _whole_seconds(seconds: float) -> int:
    if not math.isfinite(seconds):  # a cost above the burst can never be served
        return 86_400
    return 0 if seconds <= 0 else math.ceil(seconds)


def rate_limit_headers(
    decision: Decision, policy: bytes, rate_per_second: float
) -> list[tuple[bytes, bytes]]:
    """The five headers describing `decision` under the plan named `policy`."""
    reset = _whole_seconds(decision.reset_after)
    window = max(1, math.ceil(decision.limit / rate_per_second))
    return [
        (b"ratelimit-limit", b"%d" % decision.limit),
        (b"ratelimit-remaining", b"%d" % decision.remaining),
        (b"ratelimit-reset", b"%d" % reset),
        (b"ratelimit-policy", b'"%s";q=%d;w=%d' % (policy, decision.limit, window)),
        (b"ratelimit", b'"%s";r=%d;t=%d' % (policy, decision.remaining, reset)),
    ]


def with_rate_limit_headers(send: Send, headers: list[tuple[bytes, bytes]]) -> Send:
    """`send`, adding `headers` to the response start."""

    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), *headers]
        await send(message)

    return send_with_headers


async def send_too_many_requests(
    send: Send, decision: Decision, headers: list[tuple[bytes, bytes]]
) -> None:
    """429 problem+json with `Retry-After` (whole seconds, at least 1)."""
    retry_after = max(1, _whole_seconds(decision.retry_after))
    body = msgspec.json.encode(
        {
            "type": "about:blank",
            "title": "Too Many Requests",
            "status": 429,
            "detail": f"rate limit exceeded; retry after {retry_after} s",
        }
    )
    await send(
        {
            "type": "http.response.start",
            "status": 429,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", b"%d" % len(body)),
                (b"retry-after", b"%d" % retry_after),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})
