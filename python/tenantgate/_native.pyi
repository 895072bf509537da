"""Type stubs for ``tenantgate._native``, the Rust core's PyO3 binding.

Kept honest by ``python -m mypy.stubtest tenantgate._native``.
"""

from collections.abc import Sequence
from typing import Self, final

from typing_extensions import Buffer

__all__ = [
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

def generate_key(env: str = "live") -> str:
    """A new random key ``tg_<env>_<30 base62><6 base62 checksum>``; ValueError for env
    other than ``"live"``/``"test"``."""

def parse_key(key: str | bytes) -> ParsedKey:
    """Check prefix, environment, length, alphabet and checksum.

    Raises ``tenantgate.errors.KeyFormatError`` (a ValueError) naming the part that is wrong.
    """

def key_checksum(body: str) -> str:
    """The 6-character base62 CRC32 (IEEE) of ``body``."""

def constant_time_eq(a: bytes, b: bytes) -> bool:
    """Compare in time that depends only on the lengths."""

def audit_record_hash(previous: bytes, fields: list[str | None]) -> bytes:
    """The hash of an audit record with ``fields`` (in the log's fixed order) that follows
    the record hashed ``previous`` (32 bytes; 32 zero bytes for a chain's first record):
    SHA-256 of ``previous`` and the record's canonical encoding. ``ValueError`` when
    ``previous`` is not 32 bytes."""

@final
class ParsedKey:
    """The parts of a well-formed key."""

    @property
    def env(self) -> str: ...
    @property
    def random(self) -> str: ...
    @property
    def checksum(self) -> str: ...
    @property
    def display_prefix(self) -> str: ...

@final
class KeyHasher:
    """HMAC-SHA-256 under a pepper of at least 16 bytes (ValueError otherwise)."""

    def __new__(cls, pepper: bytes) -> Self: ...
    def hash(self, key: str | bytes) -> bytes:
        """The 32-byte HMAC-SHA-256 of ``key`` (a str is hashed as UTF-8)."""

@final
class ManualClock:
    """A clock that moves only when told to. Monotonic time starts at 0.0."""

    def __new__(cls, unix_time: float = 1_700_000_000.0) -> Self: ...
    def advance(self, seconds: float) -> None:
        """Move monotonic and Unix time forward together (ValueError if negative)."""
    def set_unix_time(self, unix_time: float) -> None:
        """Set the Unix time; monotonic time is unaffected."""
    def unix_time(self) -> float: ...
    def monotonic(self) -> float: ...

@final
class Miss:
    """A cache miss: look ``digest`` up, insert the record or a refusal, verify again."""

    @property
    def digest(self) -> bytes: ...
    @property
    def display_prefix(self) -> str: ...

@final
class Restricted:
    """``verify_and_acquire``'s hit on a key restricted by scope or network, stopped before
    anything was charged."""

    @property
    def payload(self) -> object: ...
    @property
    def check(self) -> str | None:
        """``"scope"``, ``"source address"``, or None when the call lacked the request's
        scope or address (call again with both)."""

@final
class Verifier:
    """The in-process cache of key records and the one-call ``verify`` hot path."""

    def __new__(
        cls,
        pepper: bytes,
        *,
        capacity: int = 1_000_000,
        ttl_seconds: float = 30.0,
        negative_ttl_seconds: float = 5.0,
        clock: ManualClock | None = None,
    ) -> Self: ...
    def verify(
        self, authorization: bytes | str | None, host: bytes | str | None = None
    ) -> object | Miss | None:
        """The payload on a hit, ``Miss`` on a cache miss, ``None`` when refused."""
    def verify_and_acquire(
        self,
        authorization: bytes | str | None,
        host: bytes | str | None,
        limiter: Limiter,
        cost: int = 1,
        scope: int | None = None,
        address: str | None = None,
    ) -> Decision | Restricted | Miss | None:
        """``verify``, then on a hit check the record's scopes and networks (if it was
        inserted with any) against ``scope`` (the bit of the scope the request needs, 0 for
        none) and ``address`` (the request's source address), then
        ``limiter.try_acquire(bucket, quota, cost)`` with the bucket and quota the record was
        inserted with: on a hit, a ``Decision`` whose ``payload`` is the record's (a record
        without a quota gets an allowed Decision with ``limit == 0``, having charged nothing)
        or a ``Restricted`` (a check stopped it; nothing charged); ``Miss``; or ``None``. An
        unrestricted record never reads ``scope`` nor ``address``."""
    def hash(self, key: str | bytes) -> bytes: ...
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
        networks: Sequence[str] = ...,
        ttl_seconds: float | None = None,
    ) -> None:
        """Cache a record for ``ttl_seconds`` (default: the verifier's TTL); ``scopes`` is a
        mask of scope bits (None: every scope), ``networks`` IPv4/IPv6 CIDRs or addresses
        (parsed now; ValueError for one that does not parse)."""
    def insert_refusal(self, digest: bytes) -> None: ...
    def invalidate_key(self, key_id: str) -> bool: ...
    def invalidate_tenant(self, tenant_id: str) -> int: ...
    def bind_domain(self, domain: str, tenant_id: str) -> None: ...
    def unbind_domain(self, domain: str) -> None: ...
    def clear(self) -> None: ...
    def shorten(self, within_seconds: float) -> int:
        """Make every record that would stay fresh longer than ``within_seconds`` go stale
        within them, each at its own point of that span (spread by its digest); refusals
        stay. How many were shortened."""
    def __len__(self) -> int: ...

@final
class Quota:
    """A rate and burst shared by every bucket that uses it."""

    def __new__(cls, rate_per_second: float, burst: int) -> Self: ...
    @property
    def rate_per_second(self) -> float: ...
    @property
    def burst(self) -> int: ...
    def update(self, rate_per_second: float, burst: int) -> None:
        """Replace rate and burst atomically; applies to every bucket on its next call."""

@final
class Decision:
    """The outcome of ``Limiter.try_acquire`` and ``Verifier.verify_and_acquire``."""

    @property
    def payload(self) -> object:
        """The key record's payload from ``verify_and_acquire``; ``None`` from ``try_acquire``."""
    @property
    def allowed(self) -> bool: ...
    @property
    def limit(self) -> int: ...
    @property
    def remaining(self) -> int: ...
    @property
    def reset_after(self) -> float: ...
    @property
    def retry_after(self) -> float:
        """0.0 when allowed; ``inf`` if the cost exceeds the burst."""

@final
class Limiter:
    """GCRA token buckets keyed by id, each checked against the quota passed in."""

    def __new__(cls, *, capacity: int = 1_000_000, clock: ManualClock | None = None) -> Self: ...
    @staticmethod
    def shared(memory: Buffer, *, clock: ManualClock | None = None) -> Limiter:
        """A limiter whose buckets live in ``memory`` (a writable buffer such as an
        ``mmap.mmap`` of ``shared_size(slots)`` bytes, all zero when new), shared with every
        limiter over the same memory, in this process or another."""

    @staticmethod
    def shared_size(slots: int) -> int:
        """The bytes of shared memory a table of at least ``slots`` buckets needs."""

    def try_acquire(self, id: str, quota: Quota, cost: int = 1) -> Decision: ...
    @property
    def capacity(self) -> int:
        """The most buckets this limiter holds."""

    @property
    def is_shared(self) -> bool:
        """Whether the buckets are in shared memory."""

    def __len__(self) -> int: ...
