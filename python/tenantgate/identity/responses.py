"""The answers identification gives: the one 403, the 429, and the rate-limit headers.

**The 403.** Every refused authentication — on the tenant API and the admin API, before a
route runs (:func:`send_forbidden`) or from inside one (:func:`forbidden_response`, for a
tenant deleted on another instance since its key was cached) — is this one response: the
same bytes and the same headers, so nothing tells a caller why it was refused. It carries no
rate-limit headers: :func:`with_rate_limit_headers` leaves every 403 alone.

**The rate-limit headers** follow both generations of the IETF draft: `RateLimit-Limit` /
`-Remaining` / `-Reset` (drafts ≤ -06, what Kong, Envoy and Litestar send) and the structured
`RateLimit-Policy` / `RateLimit` fields (draft -07 on). The decision itself is native
(`Verifier.verify_and_acquire` takes the token in the same call that identifies the key);
this module only renders it. A refusal is a 429 with `Retry-After` (:func:`send_too_many_requests`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

import msgspec
from litestar import Response

if TYPE_CHECKING:
    from litestar.types import Message, Send

__all__ = [
    "FORBIDDEN_BODY",
    "ClusterRefusal",
    "RateDecision",
    "forbidden_response",
    "rate_limit_headers",
    "send_forbidden",
    "send_too_many_requests",
    "with_rate_limit_headers",
]


class RateDecision(Protocol):
    """What the headers and the 429 are rendered from: a native ``Decision`` or a
    :class:`ClusterRefusal`."""

    @property
    def limit(self) -> int: ...
    @property
    def remaining(self) -> int: ...
    @property
    def reset_after(self) -> float: ...
    @property
    def retry_after(self) -> float: ...


@dataclass(frozen=True, slots=True)
class ClusterRefusal:
    """The cluster tier's refusal (:mod:`tenantgate.cluster_limits`): its bucket is empty."""

    limit: int
    remaining: int
    reset_after: float
    retry_after: float


_PROBLEM_MEDIA_TYPE: Final = "application/problem+json"
_FORBIDDEN: Final = 403

FORBIDDEN_BODY: Final = b'{"type":"about:blank","title":"Forbidden","status":403}'
_PROBLEM_CONTENT_TYPE: Final = (b"content-type", _PROBLEM_MEDIA_TYPE.encode())
_FORBIDDEN_HEADERS: Final = (
    _PROBLEM_CONTENT_TYPE,
    (b"content-length", b"%d" % len(FORBIDDEN_BODY)),
)


async def send_forbidden(send: Send) -> None:
    """Send the one 403 (for middleware, before any route runs).

    Each call sends new message objects: whatever wraps ``send`` may change a message in place
    (the ``X-Request-ID`` hook sets its header list), so a message shared between requests
    would carry every earlier request's additions into the next response.
    """
    await send(
        {"type": "http.response.start", "status": _FORBIDDEN, "headers": list(_FORBIDDEN_HEADERS)}
    )
    await send({"type": "http.response.body", "body": FORBIDDEN_BODY, "more_body": False})


def forbidden_response() -> Response[bytes]:
    """The one 403 as a Litestar response (for exception handlers); the same bytes and
    headers as :func:`send_forbidden`."""
    return Response(FORBIDDEN_BODY, status_code=_FORBIDDEN, media_type=_PROBLEM_MEDIA_TYPE)


_MOST_SECONDS = 2**31 - 1
"""The most seconds a header states: a plan's rate may be as near zero as a double gets, and
its window past any integer (or infinite)."""


def _whole_seconds(seconds: float) -> int:
    if not math.isfinite(seconds):  # a cost above the burst can never be served
        return 86_400
    return 0 if seconds <= 0 else min(math.ceil(seconds), _MOST_SECONDS)


def rate_limit_headers(
    decision: RateDecision, policy: bytes, rate_per_second: float
) -> list[tuple[bytes, bytes]]:
    """The five headers describing `decision` under the plan named `policy`."""
    reset = _whole_seconds(decision.reset_after)
    window_seconds = decision.limit / rate_per_second
    window = _MOST_SECONDS if window_seconds > _MOST_SECONDS else max(1, math.ceil(window_seconds))
    return [
        (b"ratelimit-limit", b"%d" % decision.limit),
        (b"ratelimit-remaining", b"%d" % decision.remaining),
        (b"ratelimit-reset", b"%d" % reset),
        (b"ratelimit-policy", b'"%s";q=%d;w=%d' % (policy, decision.limit, window)),
        (b"ratelimit", b'"%s";r=%d;t=%d' % (policy, decision.remaining, reset)),
    ]


def with_rate_limit_headers(send: Send, headers: list[tuple[bytes, bytes]]) -> Send:
    """`send`, adding `headers` to the response start — of any response but a 403, which is
    the one refusal and looks the same whether or not the key was identified first."""

    async def send_with_headers(message: Message) -> None:
        # 403 as a literal: a constant load, not a global lookup, on every response.
        if message["type"] == "http.response.start" and message["status"] != 403:
            message["headers"] = [*message.get("headers", ()), *headers]
        await send(message)

    return send_with_headers


async def send_too_many_requests(
    send: Send, decision: RateDecision, headers: list[tuple[bytes, bytes]]
) -> None:
    """429 problem+json with `Retry-After` (whole seconds, at least 1) and `headers`."""
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
                _PROBLEM_CONTENT_TYPE,
                (b"content-length", b"%d" % len(body)),
                (b"retry-after", b"%d" % retry_after),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})
