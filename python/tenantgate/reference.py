"""Pure-Python reference implementation of :mod:`tenantgate._native`.

This module exists for the benchmarks and the differential tests, **not for production**:
the service always uses the native core. It mirrors the native API name for name and is written
as the fastest plain Python we know for the same logic (precomputed HMAC pads, ``dict`` tables,
one ``threading.Lock`` per limiter, table-driven base62), so that the ratio the benches report
is an honest one. The differential tests in ``tests/core`` hold both implementations to the
same observable behaviour.

Semantics shared with the native core:

- A key is ``tg_<env>_`` (``env`` is ``live`` or ``test``), then 30 to 64 random base62
  characters (30 when generated), then a 6-character base62 rendering (fixed width,
  big-endian, left-padded with ``0``) of ``zlib.crc32`` of everything before it.
- ``Verifier.verify`` accepts ``Bearer <key>`` (scheme case-insensitive), keys the table by
  HMAC-SHA-256(pepper, key), and answers the cached payload, ``None`` (refused) or a
  :class:`Miss` (look the digest up and :meth:`Verifier.insert` the result).
- ``Limiter.try_acquire`` is GCRA: emission interval ``T = 1 / rate``, tolerance ``burst * T``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import secrets
import threading
import time
import zlib
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

from tenantgate.errors import KeyFormatError

__all__ = [
    "Clock",
    "Decision",
    "KeyHasher",
    "Limiter",
    "ManualClock",
    "Miss",
    "ParsedKey",
    "Quota",
    "Restricted",
    "Verifier",
    "audit_record_hash",
    "constant_time_eq",
    "generate_key",
    "key_checksum",
    "parse_key",
]

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
RANDOM_LENGTH = 30
MIN_RANDOM_LENGTH = 30
MAX_RANDOM_LENGTH = 64
CHECKSUM_LENGTH = 6
_PREFIX_LENGTH = len("tg_live_")
_MIN_KEY_LENGTH = _PREFIX_LENGTH + MIN_RANDOM_LENGTH + CHECKSUM_LENGTH
_MAX_KEY_LENGTH = _PREFIX_LENGTH + MAX_RANDOM_LENGTH + CHECKSUM_LENGTH
_DISPLAY_LENGTH = _PREFIX_LENGTH + 6
_ENVS = {"tg_live_": "live", "tg_test_": "test"}
_crc32 = zlib.crc32
# Every pair of base62 digits, so that a 6-digit rendering takes three table look-ups.
_PAIRS = tuple(a + b for a in ALPHABET for b in ALPHABET)
_PAIR_BASE = 62 * 62
_RANDOM_SPACE = 62**RANDOM_LENGTH
# "Bearer" in every letter case, followed by a space or a tab.
_BEARER_PREFIXES = frozenset(
    "".join(c.upper() if mask >> i & 1 else c for i, c in enumerate("bearer")) + ws
    for mask in range(64)
    for ws in " \t"
)
_GAP = " \t"
_TRAILING_WS = " \t\r\n\x0b\x0c"
_MAX_DOMAIN_LENGTH = 255
_SHA256_BLOCK = 64
_INF = math.inf
_NS_PER_SECOND = 1_000_000_000
_MAX_WINDOW_NS = 1 << 56
_U32_MAX = 0xFFFF_FFFF
_U64 = (1 << 64) - 1
# A bucket word: the TAT in the low 58 bits, the tag of the quota that wrote it above.
_TAT_BITS = 58
_TAT_MASK = (1 << _TAT_BITS) - 1
_TAGS = 62


def _quota_tag(interval_ns: int, burst: int) -> int:
    """A quota's tag, 1..62: splitmix64's finaliser over its interval and burst, as in the
    native core."""
    x = interval_ns ^ ((burst << 32) | burst)
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _U64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _U64
    x ^= x >> 31
    return 1 + x % _TAGS


def _base62_6(n: int) -> str:
    q, r0 = divmod(n, _PAIR_BASE)
    q, r1 = divmod(q, _PAIR_BASE)
    return _PAIRS[q] + _PAIRS[r1] + _PAIRS[r0]


def key_checksum(body: str) -> str:
    """The 6-character base62 CRC32 of ``body`` (the key up to its checksum)."""
    return _base62_6(zlib.crc32(body.encode("utf-8")))


def generate_key(env: str = "live") -> str:
    """A new key for ``env`` (``live`` or ``test``): 30 unbiased random base62 characters."""
    if env != "live" and env != "test":
        raise ValueError("env must be 'live' or 'test'")
    # One uniform draw below 62**30 is exactly 30 uniform base62 digits.
    n = secrets.randbelow(_RANDOM_SPACE)
    pairs = []
    for _ in range(RANDOM_LENGTH // 2):
        n, r = divmod(n, _PAIR_BASE)
        pairs.append(_PAIRS[r])
    body = f"tg_{env}_" + "".join(pairs)
    return body + _base62_6(zlib.crc32(body.encode("ascii")))


class ParsedKey:
    """The parts of a well-formed key."""

    __slots__ = ("checksum", "display_prefix", "env", "random")

    def __init__(self, env: str, random: str, checksum: str, display_prefix: str) -> None:
        self.env = env
        self.random = random
        self.checksum = checksum
        self.display_prefix = display_prefix

    def __repr__(self) -> str:
        return f"ParsedKey(env={self.env!r}, display_prefix={self.display_prefix!r})"


_BASE62_BYTES = frozenset(ALPHABET.encode())


def _key_error(key: str) -> str | None:
    """Why ``key`` is not well-formed, or ``None``. Never echoes the key.

    Checks prefix, environment, length, alphabet and checksum, in that order (as the native
    core does); only used to word the error once the fast path in parse_key has failed.
    """
    raw = key.encode("utf-8", "surrogatepass")
    if raw[:3] != b"tg_":
        return "key must start with 'tg_'"
    if raw[3:_PREFIX_LENGTH] not in (b"live_", b"test_"):
        return "key environment must be 'live' or 'test'"
    if not _MIN_KEY_LENGTH <= len(raw) <= _MAX_KEY_LENGTH:
        return "key has the wrong length"
    if not _BASE62_BYTES.issuperset(raw[_PREFIX_LENGTH:]):
        return "key contains characters outside the base62 alphabet"
    if _base62_6(zlib.crc32(raw[:-CHECKSUM_LENGTH])).encode() != raw[-CHECKSUM_LENGTH:]:
        return "key checksum does not match"
    return None


def parse_key(key: str | bytes) -> ParsedKey:
    """Split a well-formed key into its parts; :class:`KeyFormatError` otherwise."""
    if type(key) is not str:
        if not isinstance(key, bytes) or not key.isascii():
            raise KeyFormatError("key contains characters outside the base62 alphabet")
        key = key.decode("ascii")
    # The checks of _key_error, inlined: this is the hot path the benches measure.
    env = _ENVS.get(key[:_PREFIX_LENGTH])
    n = len(key)
    if (
        env is None
        or n < _MIN_KEY_LENGTH
        or n > _MAX_KEY_LENGTH
        or not key.isascii()
        or not key[_PREFIX_LENGTH:].isalnum()
    ):
        raise KeyFormatError(_key_error(key) or "key is malformed")
    q, r0 = divmod(_crc32(key[:-CHECKSUM_LENGTH].encode()), _PAIR_BASE)
    q, r1 = divmod(q, _PAIR_BASE)
    checksum = key[-CHECKSUM_LENGTH:]
    if _PAIRS[q] + _PAIRS[r1] + _PAIRS[r0] != checksum:
        raise KeyFormatError("key checksum does not match")
    return ParsedKey(env, key[_PREFIX_LENGTH:-CHECKSUM_LENGTH], checksum, key[:_DISPLAY_LENGTH])


_AUDIT_DOMAIN = b"tenantgate/audit-record/v1\x00"


def audit_record_hash(previous: bytes, fields: list[str | None]) -> bytes:
    """SHA-256 of ``previous`` and the canonical encoding of ``fields``."""
    if len(previous) != 32:
        raise ValueError("the previous audit hash must be 32 bytes")
    encoded = bytearray(_AUDIT_DOMAIN)
    for field in fields:
        if field is None:
            encoded.append(0)
        else:
            data = field.encode()
            encoded += b"\x01" + len(data).to_bytes(4, "big") + data
    return hashlib.sha256(bytes(previous) + bytes(encoded)).digest()


def constant_time_eq(a: bytes, b: bytes) -> bool:
    """``a == b`` in time independent of where they differ."""
    return secrets.compare_digest(a, b)


class _Hmac:
    """HMAC-SHA-256 with the pepper's inner and outer pads hashed once (RFC 2104).

    Copying two precomputed SHA-256 states per call is the fastest stdlib route we measured
    (about 0.55 µs against 0.95 µs for ``hmac.new(...).copy()`` and 1.3 µs for ``hmac.digest``).
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, pepper: bytes) -> None:
        if len(pepper) > _SHA256_BLOCK:
            pepper = hashlib.sha256(pepper).digest()
        pepper = pepper.ljust(_SHA256_BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in pepper))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in pepper))

    def pads(self) -> tuple[hashlib._Hash, hashlib._Hash]:
        """The SHA-256 states after the inner and the outer pad, for callers that inline."""
        return self._inner, self._outer

    def digest(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


def _check_pepper(pepper: bytes) -> bytes:
    if len(pepper) < 16:
        raise ValueError("pepper must be at least 16 bytes")
    return bytes(pepper)


class KeyHasher:
    """HMAC-SHA-256 of keys under a secret pepper (at least 16 bytes)."""

    __slots__ = ("_hmac",)

    def __init__(self, pepper: bytes) -> None:
        self._hmac = _Hmac(_check_pepper(pepper))

    def hash(self, key: str | bytes) -> bytes:
        """The 32-byte digest of ``key``."""
        return self._hmac.digest(key.encode("utf-8") if isinstance(key, str) else key)


class Clock(Protocol):
    """What the verifier and limiter read time from."""

    def unix_time(self) -> float: ...

    def monotonic(self) -> float: ...


class ManualClock:
    """A clock that only moves when told to. Monotonic time starts at 0.

    Like the native clock, monotonic time is kept in whole nanoseconds (``advance`` rounds to
    the nearest one); wall time is a float that ``advance`` adds to.
    """

    __slots__ = ("_lock", "_monotonic_ns", "_unix")

    def __init__(self, unix_time: float = 1_700_000_000.0) -> None:
        if not math.isfinite(unix_time):
            raise ValueError("unix_time must be finite")
        self._lock = threading.Lock()
        self._unix = float(unix_time)
        self._monotonic_ns = 0

    def advance(self, seconds: float) -> None:
        """Move both readings forward by ``seconds`` (finite, not negative)."""
        if not math.isfinite(seconds) or seconds < 0.0:
            raise ValueError("seconds must be finite and not negative")
        with self._lock:
            self._monotonic_ns += round(seconds * _NS_PER_SECOND)
            self._unix += seconds

    def set_unix_time(self, unix_time: float) -> None:
        """Set the wall clock; the monotonic reading does not move."""
        if not math.isfinite(unix_time):
            raise ValueError("unix_time must be finite")
        with self._lock:
            self._unix = float(unix_time)

    def unix_time(self) -> float:
        return self._unix

    def monotonic(self) -> float:
        return self._monotonic_ns / _NS_PER_SECOND

    def monotonic_ns(self) -> int:
        return self._monotonic_ns


def _monotonic_ns_of(clock: Clock | None) -> Callable[[], int]:
    """A nanosecond monotonic reader for ``clock`` (the system clock when ``None``)."""
    if clock is None:
        return time.monotonic_ns
    reader: Callable[[], int] | None = getattr(clock, "monotonic_ns", None)
    if reader is not None:
        return reader
    monotonic = clock.monotonic
    return lambda: round(monotonic() * _NS_PER_SECOND)


class Miss:
    """The key is well-formed but not cached: look ``digest`` up and insert the answer."""

    __slots__ = ("digest", "display_prefix")

    def __init__(self, digest: bytes, display_prefix: str) -> None:
        self.digest = digest
        self.display_prefix = display_prefix

    def __repr__(self) -> str:
        return f"Miss(display_prefix={self.display_prefix!r})"


def _host_name(host: str | bytes) -> str | None:
    """The name a Host header value is bound by, as the native core normalises it.

    Drops ``:port`` (and the brackets of ``[ipv6]:port``; a value with two or more colons is a
    bare IPv6 address), drops one trailing dot, folds ASCII case. ``None`` when that leaves
    nothing, more than 255 bytes, or an unclosed bracket. The native core compares bytes; the
    name here is those bytes as Latin-1, so plain ASCII host strings take a short path.
    """
    if type(host) is str and host.isascii() and host[:1] != "[":
        name, colon, port = host.partition(":")
        if colon and ":" in port:
            name = host
        if name[-1:] == ".":
            name = name[:-1]
        return name.lower() if 0 < len(name) <= _MAX_DOMAIN_LENGTH else None
    raw = host.encode("utf-8", "surrogatepass") if isinstance(host, str) else host
    if raw[:1] == b"[":
        end = raw.find(b"]")
        if end == -1:
            return None
        raw = raw[1:end]
    elif raw.count(b":") == 1:
        raw = raw[: raw.index(b":")]
    if raw[-1:] == b".":
        raw = raw[:-1]
    if not raw or len(raw) > _MAX_DOMAIN_LENGTH:
        return None
    return raw.lower().decode("latin-1")  # bytes.lower() folds ASCII letters only


def _ttl_ns(seconds: float, name: str) -> int:
    if not math.isfinite(seconds) or seconds <= 0.0:
        raise ValueError(f"{name} must be finite and positive")
    return max(1, math.ceil(seconds * _NS_PER_SECOND))


# An address as the restriction checks compare it: (IPv4?, its bits left-aligned in 128).
_Address = tuple[bool, int]
# A network: (IPv4?, its bits with the host bits cleared, left-aligned; prefix length).
_Network = tuple[bool, int, int]
# A record's restriction: (scope mask, None for every scope; networks, empty for anywhere).
_Restriction = tuple[int | None, tuple[_Network, ...]]
_ALL_128 = (1 << 128) - 1

# A cache entry: (stale at, in monotonic ns; tenant_id; key_id; expires_at, in Unix seconds,
# infinite for never; usable; payload; quota; bucket; restriction, None for none). A cached
# refusal has tenant_id and key_id None.
_Entry = tuple[
    int, str | None, str | None, float, bool, object, "Quota | None", str, _Restriction | None
]


def _prefix_mask(prefix: int) -> int:
    return _ALL_128 ^ (_ALL_128 >> prefix)


def _address(text: str) -> _Address | None:
    """``text`` as an address (an IPv4-mapped IPv6 address is its IPv4 one); None if it is
    not one in the usual text form (no zone, no brackets, no port), as the native parser has
    it."""
    if "%" in text:
        return None
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        mapped = ip.ipv4_mapped
        if mapped is None:
            return (False, int(ip))
        ip = mapped
    return (True, int(ip) << 96)


def _network(text: str) -> _Network:
    """``address[/prefix]`` as a network, host bits cleared; ValueError for anything else."""
    bad = ValueError("a network is an IP address with an optional /prefix")
    address_text, slash, prefix_text = text.partition("/")
    if "%" in address_text:
        raise bad
    try:
        ip = ipaddress.ip_address(address_text)
    except ValueError:
        raise bad from None
    width: int = ip.max_prefixlen
    if not slash:
        prefix: int = width
    elif 1 <= len(prefix_text) <= 3 and prefix_text.isascii() and prefix_text.isdigit():
        prefix = int(prefix_text)
    else:
        raise bad
    if prefix > width:
        raise bad
    v4, bits = _address(address_text)  # type: ignore[misc]  # it parsed above
    if isinstance(ip, ipaddress.IPv6Address) and v4:
        if prefix < 96:  # reaches past the IPv4 mapping: an IPv6 network
            return (False, int(ip) & _prefix_mask(prefix), prefix)
        prefix -= 96
    return (v4, bits & _prefix_mask(prefix), prefix)


def _restriction(scopes: int | None, networks: Sequence[str]) -> _Restriction | None:
    if scopes is not None and not 0 <= scopes <= 0xFFFF:
        raise OverflowError("scopes must fit in 16 bits")
    if isinstance(networks, str):
        raise TypeError("networks must be a sequence of str, not a str")
    parsed = tuple(_network(n) for n in networks)
    if scopes is None and not parsed:
        return None
    return (scopes, parsed)


def _check(restriction: _Restriction, scope: int | None, address: str | None) -> str | None:
    """The check ``restriction`` stops a request at: ``""`` when a needed input is missing,
    ``"scope"``, ``"source address"``; None when it passes."""
    mask, networks = restriction
    if mask is not None:
        if scope is None:
            return ""
        if scope & ~mask:
            return "scope"
    if networks:
        if address is None:
            return ""
        parsed = _address(address)
        if parsed is None:
            return "source address"
        v4, bits = parsed
        if not any(
            n_v4 == v4 and (bits ^ n_bits) & _prefix_mask(prefix) == 0
            for n_v4, n_bits, prefix in networks
        ):
            return "source address"
    return None


class Restricted:
    """A hit of :meth:`Verifier.verify_and_acquire` on a key restricted by scope or network,
    stopped before anything was charged: ``check`` names the check that failed (``"scope"`` or
    ``"source address"``), or is None when the call lacked the request's scope or address."""

    __slots__ = ("check", "payload")

    def __init__(self, payload: object, check: str | None) -> None:
        self.payload = payload
        self.check = check

    def __repr__(self) -> str:
        return f"Restricted(check={self.check!r})"


class Verifier:
    """Cache of key digests to payloads, consulted once per request.

    ``verify`` answers the payload, ``None`` (refuse, never saying why) or a :class:`Miss`
    (look ``digest`` up, :meth:`insert` or :meth:`insert_refusal` the answer, verify again).
    """

    __slots__ = (
        "_capacity",
        "_domains",
        "_entries",
        "_hmac",
        "_inner",
        "_lock",
        "_monotonic_ns",
        "_negative_ttl_ns",
        "_outer",
        "_ttl_ns",
        "_unix_time",
    )

    def __init__(
        self,
        pepper: bytes,
        *,
        capacity: int = 1_000_000,
        ttl_seconds: float = 30.0,
        negative_ttl_seconds: float = 5.0,
        clock: Clock | None = None,
    ) -> None:
        self._hmac = _Hmac(_check_pepper(pepper))
        self._inner, self._outer = self._hmac.pads()
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._capacity = capacity
        self._ttl_ns = _ttl_ns(ttl_seconds, "ttl_seconds")
        self._negative_ttl_ns = _ttl_ns(negative_ttl_seconds, "negative_ttl_seconds")
        self._monotonic_ns = _monotonic_ns_of(clock)
        self._unix_time: Callable[[], float] = time.time if clock is None else clock.unix_time
        self._entries: dict[bytes, _Entry] = {}
        self._domains: dict[str, str] = {}
        self._lock = threading.Lock()

    def verify(
        self, authorization: bytes | str | None, host: bytes | str | None = None
    ) -> object | Miss | None:
        """The payload for the key in ``authorization``, ``None`` to refuse, or a Miss.

        ``authorization`` is ``Bearer`` (any case), one or more spaces or tabs, and the key;
        trailing whitespace is ignored. A malformed header is refused without hashing.
        """
        found = self._find(authorization, host)
        return found[5] if type(found) is tuple else found

    def verify_and_acquire(
        self,
        authorization: bytes | str | None,
        host: bytes | str | None,
        limiter: Limiter,
        cost: int = 1,
        scope: int | None = None,
        address: str | None = None,
    ) -> Decision | Restricted | Miss | None:
        """``verify``, then on a hit check the record's scopes and networks against ``scope``
        (the bit of the scope the request needs, 0 for none) and ``address``, and if they pass
        take ``cost`` from the record's bucket under its quota.

        On a hit, a :class:`Decision` whose ``payload`` is the record's (a record without a
        quota gets an allowed Decision with ``limit == 0``, having charged nothing) or a
        :class:`Restricted`; a :class:`Miss` on a miss; ``None`` if refused.
        """
        if cost < 0:
            raise ValueError("cost must not be negative")
        if scope is not None and not 0 <= scope <= 0xFFFF:
            raise OverflowError("scope must fit in 16 bits")
        found = self._find(authorization, host)
        if found is None or isinstance(found, Miss):
            return found
        restriction = found[8]
        if restriction is not None:
            stopped = _check(restriction, scope, address)
            if stopped is not None:
                return Restricted(found[5], stopped or None)
        quota = found[6]
        if quota is None:
            return Decision(True, 0, 0, 0.0, 0.0, found[5])
        decision = limiter.try_acquire(found[7], quota, cost)
        decision.payload = found[5]
        return decision

    def _find(
        self, authorization: bytes | str | None, host: bytes | str | None
    ) -> _Entry | Miss | None:
        """The entry a hit would answer with, a Miss, or None (refused)."""
        # Header parsing, parse_key and the HMAC inlined: this is the per-request hot path.
        if type(authorization) is not str:
            if not isinstance(authorization, bytes) or not authorization.isascii():
                return None
            authorization = authorization.decode("ascii")
        if authorization[:7] not in _BEARER_PREFIXES:
            return None
        key = authorization[7:].lstrip(_GAP).rstrip(_TRAILING_WS)
        n = len(key)
        if (
            key[:_PREFIX_LENGTH] not in _ENVS
            or n < _MIN_KEY_LENGTH
            or n > _MAX_KEY_LENGTH
            or not key.isascii()
            or not key[_PREFIX_LENGTH:].isalnum()
        ):
            return None
        raw = key.encode()
        q, r0 = divmod(_crc32(raw[:-CHECKSUM_LENGTH]), _PAIR_BASE)
        q, r1 = divmod(q, _PAIR_BASE)
        if _PAIRS[q] + _PAIRS[r1] + _PAIRS[r0] != key[-CHECKSUM_LENGTH:]:
            return None
        inner = self._inner.copy()
        inner.update(raw)
        outer = self._outer.copy()
        outer.update(inner.digest())
        digest = outer.digest()
        entry = self._entries.get(digest)
        if entry is None or entry[0] <= self._monotonic_ns():
            return Miss(digest, key[:_DISPLAY_LENGTH])
        if not entry[4] or entry[3] <= self._unix_time():
            return None
        if host is not None and self._domains:
            bound = self._domains.get(_host_name(host))  # type: ignore[arg-type]
            if bound is not None and bound != entry[1]:
                return None
        return entry

    def hash(self, key: str | bytes) -> bytes:
        """HMAC-SHA-256(pepper, key): the digest ``verify`` looks up."""
        return self._hmac.digest(key.encode("utf-8") if isinstance(key, str) else key)

    def _put(self, digest: bytes, entry: _Entry) -> None:
        if len(digest) != 32:
            raise ValueError("digest must be 32 bytes")
        with self._lock:
            entries = self._entries
            entries.pop(digest, None)
            if len(entries) >= self._capacity:
                self._evict()
            entries[digest] = entry

    def _evict(self) -> None:
        """Make room: drop stale entries, then those closest to going stale, down to 7/8."""
        entries = self._entries
        now = self._monotonic_ns()
        for d in [d for d, e in entries.items() if e[0] <= now]:
            del entries[d]
        keep = self._capacity - max(1, self._capacity // 8)
        if len(entries) > keep:
            by_age = sorted(entries, key=lambda d: entries[d][0])
            for d in by_age[: len(entries) - keep]:
                del entries[d]

    def insert(
        self,
        digest: bytes,
        *,
        tenant_id: str,
        key_id: str,
        expires_at: float | None,
        usable: bool,
        payload: object,
        quota: Quota | None = None,
        bucket: str | None = None,
        scopes: int | None = None,
        networks: Sequence[str] = (),
        ttl_seconds: float | None = None,
    ) -> None:
        """Cache the answer for ``digest`` for ``ttl_seconds`` (default: the verifier's).

        ``quota`` and ``bucket`` (default: the tenant id), ``scopes`` (a mask of scope bits;
        None for every scope) and ``networks`` (CIDRs; empty for anywhere) are only used by
        verify_and_acquire.
        """
        ttl_ns = self._ttl_ns if ttl_seconds is None else _ttl_ns(ttl_seconds, "ttl_seconds")
        restriction = _restriction(scopes, networks)
        if expires_at is None:
            expiry = _INF
        elif math.isnan(expires_at):
            raise ValueError("expires_at must not be NaN")
        else:
            expiry = float(expires_at)
        stale_at = self._monotonic_ns() + ttl_ns
        if bucket is None:
            bucket = tenant_id
        entry = (
            stale_at, tenant_id, key_id, expiry, bool(usable), payload, quota, bucket, restriction
        )  # fmt: skip
        self._put(digest, entry)

    def insert_refusal(self, digest: bytes) -> None:
        """Cache "no such key" for ``digest`` for ``negative_ttl_seconds``."""
        stale_at = self._monotonic_ns() + self._negative_ttl_ns
        self._put(digest, (stale_at, None, None, _INF, False, None, None, "", None))

    def invalidate_key(self, key_id: str) -> bool:
        """Forget the cached record of ``key_id``; whether there was one."""
        with self._lock:
            doomed = [d for d, e in self._entries.items() if e[2] == key_id]
            for d in doomed:
                del self._entries[d]
        return bool(doomed)

    def invalidate_tenant(self, tenant_id: str) -> int:
        """Forget every cached record of ``tenant_id``; how many there were."""
        with self._lock:
            doomed = [d for d, e in self._entries.items() if e[1] == tenant_id]
            for d in doomed:
                del self._entries[d]
        return len(doomed)

    def bind_domain(self, domain: str, tenant_id: str) -> None:
        """Requests whose Host is ``domain`` only accept keys of ``tenant_id``."""
        name = _host_name(domain)
        if name is None:
            raise ValueError("domain must be a non-empty host name of at most 255 bytes")
        self._domains[name] = tenant_id

    def unbind_domain(self, domain: str) -> None:
        """Remove a binding (no error if there was none)."""
        name = _host_name(domain)
        if name is not None:
            self._domains.pop(name, None)

    def clear(self) -> None:
        """Forget every cached entry (domain bindings stay)."""
        with self._lock:
            self._entries.clear()

    def shorten(self, within_seconds: float) -> int:
        """Make every record that would stay fresh longer than ``within_seconds`` go stale
        within them, each at its own point of that span (spread by its digest); refusals
        stay. How many were shortened."""
        within = _ttl_ns(within_seconds, "within_seconds")
        shortened = 0
        with self._lock:
            now = self._monotonic_ns()
            entries = self._entries
            for digest, entry in entries.items():
                if entry[1] is None or entry[0] <= now + within:
                    continue
                spread = 1 + int.from_bytes(digest[16:24], "little") % within
                entries[digest] = (now + spread, *entry[1:])
                shortened += 1
        return shortened

    def __len__(self) -> int:
        return len(self._entries)


class Quota:
    """A rate (tokens per second) and a burst (bucket size); shared and updatable.

    As in the native core, the emission interval is ``ceil(1e9 / rate)`` whole nanoseconds
    (at least 1, at most 2**56) and the tolerance ``interval * burst`` (at most 2**56). An
    update remembers the values it replaced, so that buckets last charged under them are
    read in the new values' terms (see :class:`Limiter`).
    """

    __slots__ = ("_value",)

    def __init__(self, rate_per_second: float, burst: int) -> None:
        self.update(rate_per_second, burst)

    def update(self, rate_per_second: float, burst: int) -> None:
        """Change the quota; the next ``try_acquire`` with it sees the change."""
        rate = float(rate_per_second)
        if not math.isfinite(rate) or rate <= 0.0:
            raise ValueError("rate_per_second must be finite and greater than 0")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        if burst > _U32_MAX:
            raise OverflowError("burst must fit in 32 bits")
        interval = _NS_PER_SECOND / rate
        interval_ns = _MAX_WINDOW_NS if interval >= _MAX_WINDOW_NS else max(1, math.ceil(interval))
        burst = int(burst)
        old = getattr(self, "_value", None)
        previous = None
        if old is not None:
            if (old[0], old[1]) == (rate, burst):
                return
            previous = (old[2], old[4], rate > old[0] and burst >= old[1])
        # One attribute, replaced whole: a reader sees the old quota or the new one, never
        # the new rate with the old burst (the native core keeps it behind a seqlock).
        self._value = (
            rate,
            burst,
            interval_ns,
            min(interval_ns * burst, _MAX_WINDOW_NS),
            _quota_tag(interval_ns, burst),
            previous,
        )

    @property
    def rate_per_second(self) -> float:
        return self._value[0]

    @property
    def burst(self) -> int:
        return self._value[1]

    def __repr__(self) -> str:
        return f"Quota(rate_per_second={self.rate_per_second!r}, burst={self.burst!r})"


class Decision:
    """The limiter's answer: allowed, and the numbers for the rate-limit headers.

    From :meth:`Verifier.verify_and_acquire` it also carries the key record's ``payload``
    (``None`` from :meth:`Limiter.try_acquire`).
    """

    __slots__ = ("allowed", "limit", "payload", "remaining", "reset_after", "retry_after")

    def __init__(
        self,
        allowed: bool,
        limit: int,
        remaining: int,
        reset_after: float,
        retry_after: float,
        payload: object = None,
    ) -> None:
        self.allowed = allowed
        self.limit = limit
        self.remaining = remaining
        self.reset_after = reset_after
        self.retry_after = retry_after
        self.payload = payload

    def __repr__(self) -> str:
        return (
            f"Decision(allowed={self.allowed}, limit={self.limit}, remaining={self.remaining}, "
            f"reset_after={self.reset_after!r}, retry_after={self.retry_after!r})"
        )


class Limiter:
    """Per-id GCRA token buckets; a theoretical arrival time (TAT, in ns) is all the state.

    With interval ``T`` and tolerance ``tau``, a request of ``cost`` is allowed when
    ``max(TAT, now) + T * cost - now <= tau``, which then becomes the new TAT. ``cost == 0``
    only reports; ``cost > burst`` is never allowed (``retry_after`` is infinite).

    Each TAT is stored tagged with its quota's values; a bucket tagged with the values a
    quota had before its last update has its debt forgiven if the update raised the quota
    (a higher rate, a burst no lower), else converted to the new interval; then, as for any
    other bucket, capped at the new tolerance.
    """

    __slots__ = ("_capacity", "_lock", "_now_ns", "_tats")

    def __init__(self, *, capacity: int = 1_000_000, clock: Clock | None = None) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._capacity = capacity
        self._tats: dict[str, int] = {}
        self._lock = threading.Lock()
        self._now_ns = _monotonic_ns_of(clock)

    def try_acquire(self, id: str, quota: Quota, cost: int = 1) -> Decision:
        """Take ``cost`` tokens from ``id``'s bucket if they are there."""
        if cost < 0 or cost > _U32_MAX:
            raise OverflowError("cost must fit in 32 bits and not be negative")
        with self._lock:
            # Read under the lock: a decision must not apply a quota older than the one the
            # decision before it saw (that would re-inflate a bucket whose debt a shrinking
            # quota just capped).
            _rate, burst, interval, tau, tag, previous = quota._value
            now = self._now_ns()
            tats = self._tats
            word = tats.get(id)
            if word is None:
                if len(tats) >= self._capacity:
                    self._evict(now)
                tats[id] = word = 0
            tat, word_tag = word & _TAT_MASK, word >> _TAT_BITS
            used = tat - now if tat > now else 0
            if used and word_tag not in (0, tag) and previous and previous[1] == word_tag:
                # Written under the values this quota had before its last update.
                used = 0 if previous[2] else -(-used * interval // previous[0])
            if used > tau or word_tag not in (0, tag):
                # The quota changed since: the bucket is empty, no emptier.
                used = min(used, tau)
                tats[id] = (tag << _TAT_BITS) | min(now + used, _TAT_MASK)
            increment = interval * cost
            after = used + increment
            if after <= tau and cost <= burst:
                if cost:
                    tats[id] = (tag << _TAT_BITS) | min(now + after, _TAT_MASK)
                remaining = (tau - after) // interval
                return Decision(
                    True, burst, remaining if remaining < burst else burst, after / 1e9, 0.0
                )
        remaining = (tau - used) // interval if used < tau else 0
        retry_after = _INF if cost > burst or increment > tau else (after - tau) / 1e9
        return Decision(
            False, burst, remaining if remaining < burst else burst, used / 1e9, retry_after
        )

    def _evict(self, now: int) -> None:
        """Make room: drop full buckets (they carry no state), else the oldest one."""
        tats = self._tats
        full = [i for i, t in tats.items() if t & _TAT_MASK <= now]
        for i in full:
            del tats[i]
        if len(tats) >= self._capacity:
            del tats[next(iter(tats))]

    def __len__(self) -> int:
        return len(self._tats)
