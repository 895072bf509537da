"""The brake on key guessing: failed identifications are limited per source address.

Anyone can make keys with valid checksums, and each unknown one costs a PostgreSQL lookup. So
every *failed* lookup (an unknown, revoked or expired key, found so in PostgreSQL) takes a
token from a bucket of the request's source address (a second native limiter, GCRA like the
plans'): :data:`FAILURES_BURST` failures at once, then :data:`FAILURES_PER_SECOND`. Once an
address's bucket is empty, a key that is not already known-good in this instance's key cache is
refused with the one 403 *without* a lookup, until the bucket has a token again. Keys already
cached as valid never meet the brake: customers behind one NAT address keep working while a
guesser on the same address is braked. Only failures are charged, so many tenants' keys behind
one address cost nothing.

The source address is the socket peer, or — when the peer is one of
``TENANTGATE_TRUSTED_PROXIES`` — the nearest address in ``X-Forwarded-For`` that is not itself a
trusted proxy. Never a header from anyone else.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import TYPE_CHECKING, Final

from tenantgate.limits import Limiter, Quota

if TYPE_CHECKING:
    from collections.abc import Sequence

    from litestar.types import Scope

__all__ = [
    "FAILURES_BURST",
    "FAILURES_PER_SECOND",
    "TRACKED_ADDRESSES",
    "GuessingBrake",
    "source_address",
]

FAILURES_BURST: Final = 20
"""Failed identifications one address may make at once before the brake holds."""

FAILURES_PER_SECOND: Final = 2.0
"""Failed identifications per second an address may go on making."""

TRACKED_ADDRESSES: Final = 100_000
"""Addresses whose failures are remembered (the limiter's bound; the idlest go first)."""

_UNKNOWN: Final = "unknown"


class GuessingBrake:
    """Per-address buckets of failed identifications."""

    __slots__ = ("_braked", "_limiter", "_quota")

    def __init__(
        self,
        *,
        burst: int = FAILURES_BURST,
        per_second: float = FAILURES_PER_SECOND,
        capacity: int = TRACKED_ADDRESSES,
    ) -> None:
        self._limiter = Limiter(capacity=capacity)
        self._quota = Quota(per_second, burst)
        self._braked = 0

    @property
    def braked(self) -> int:
        """Requests refused by the brake so far (a counter for ``/metrics``)."""
        return self._braked

    def holds(self, address: str) -> bool:
        """Whether ``address`` may not have an unknown key looked up now (counts it if so)."""
        decision = self._limiter.try_acquire(address, self._quota, 0)
        if decision.remaining >= 1:
            return False
        self._braked += 1
        return True

    def failed(self, address: str) -> None:
        """``address`` presented a key PostgreSQL refused: one token from its bucket."""
        self._limiter.try_acquire(address, self._quota)


def source_address(scope: Scope, trusted_proxies: Sequence[IPv4Network | IPv6Network] = ()) -> str:
    """The address a request is attributed to (see the module docstring)."""
    client = scope.get("client")
    peer = client[0] if client else _UNKNOWN
    if not trusted_proxies or not _trusted(peer, trusted_proxies):
        return peer
    forwarded: list[str] = []
    for name, value in scope["headers"]:
        if name == b"x-forwarded-for":
            forwarded.extend(part.strip() for part in value.decode("latin-1").split(","))
    for hop in reversed(forwarded):
        if not _trusted(hop, trusted_proxies):
            return hop if _parses(hop) else peer
    return peer


def _parses(text: str) -> bool:
    try:
        ip_address(text)
    except ValueError:
        return False
    return True


def _trusted(text: str, networks: Sequence[IPv4Network | IPv6Network]) -> bool:
    try:
        address: IPv4Address | IPv6Address = ip_address(text)
    except ValueError:
        return False
    return any(address in network for network in networks)
