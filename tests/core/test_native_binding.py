"""The PyO3 binding itself: types, error mapping, argument handling, and threads.

The behaviour of keys, the verifier and the limiter is specified (and compared with the pure
Python reference) elsewhere; these tests pin what only the binding decides.
"""

from __future__ import annotations

import gc
import hmac
import math
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor

import pytest

from tenantgate import _native as native
from tenantgate.errors import KeyFormatError, TenantgateError

PEPPER = b"0123456789abcdef0123456789abcdef"


def header(key: str) -> bytes:
    return f"Bearer {key}".encode()


def test_module_surface() -> None:
    expected = {
        "Decision",
        "KeyHasher",
        "Limiter",
        "ManualClock",
        "Miss",
        "ParsedKey",
        "Quota",
        "Verifier",
        "constant_time_eq",
        "generate_key",
        "key_checksum",
        "parse_key",
    }
    assert expected <= set(dir(native))
    for name in expected:
        obj = getattr(native, name)
        if isinstance(obj, type):
            assert obj.__module__ == "tenantgate._native"


def test_generate_and_parse() -> None:
    for env in ("live", "test"):
        key = native.generate_key(env)
        assert isinstance(key, str)
        assert key.startswith(f"tg_{env}_")
        assert len(key) == 8 + 30 + 6
        for form in (key, key.encode()):
            parsed = native.parse_key(form)
            assert isinstance(parsed, native.ParsedKey)
            assert parsed.env == env
            assert parsed.random == key[8:-6]
            assert parsed.checksum == key[-6:]
            assert parsed.display_prefix == key[:14]
            assert native.key_checksum(key[:-6]) == key[-6:]
    assert native.generate_key().startswith("tg_live_")


def test_generate_key_rejects_unknown_env() -> None:
    with pytest.raises(ValueError, match="live"):
        native.generate_key("prod")


@pytest.mark.parametrize(
    ("mangle", "part"),
    [
        (lambda k: "xx" + k[2:], "tg_"),
        (lambda k: k[:3] + "prod" + k[7:], "environment"),
        (lambda k: k[:-1], "length"),
        (lambda k: k[:20] + "-" + k[21:], "0-9A-Za-z"),
        (lambda k: k[:20] + ("a" if k[20] != "a" else "b") + k[21:], "checksum"),
    ],
)
def test_parse_errors_are_key_format_errors_that_do_not_echo(mangle, part: str) -> None:
    bad = mangle(native.generate_key())
    with pytest.raises(KeyFormatError, match=part) as info:
        native.parse_key(bad)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, TenantgateError)
    assert bad not in str(info.value)
    assert bad[8:30] not in str(info.value)


def test_parse_key_odd_inputs() -> None:
    with pytest.raises(TypeError):
        native.parse_key(123)  # type: ignore[arg-type]
    with pytest.raises(KeyFormatError):
        native.parse_key("tg_live_\ud800" + "a" * 40)
    with pytest.raises(KeyFormatError):
        native.parse_key("")


def test_repr_never_shows_the_secret() -> None:
    key = native.generate_key()
    assert key[14:] not in repr(native.parse_key(key))
    v = native.Verifier(PEPPER)
    miss = v.verify(header(key))
    assert isinstance(miss, native.Miss)
    assert key[14:] not in repr(miss)
    assert "KeyHasher" in repr(native.KeyHasher(PEPPER))


def test_key_hasher_matches_hmac() -> None:
    hasher = native.KeyHasher(PEPPER)
    key = native.generate_key()
    digest = hasher.hash(key)
    assert isinstance(digest, bytes)
    assert digest == hmac.digest(PEPPER, key.encode(), "sha256")
    assert hasher.hash(key.encode()) == digest
    assert native.Verifier(PEPPER).hash(key) == digest
    for n in range(0, 200, 7):
        assert hasher.hash(b"x" * n) == hmac.digest(PEPPER, b"x" * n, "sha256")
    with pytest.raises(ValueError, match="16 bytes"):
        native.KeyHasher(b"short")
    with pytest.raises(TypeError):
        hasher.hash(1)  # type: ignore[arg-type]


def test_constant_time_eq() -> None:
    assert native.constant_time_eq(b"abc", b"abc")
    assert not native.constant_time_eq(b"abc", b"abd")
    assert not native.constant_time_eq(b"abc", b"abcd")
    assert native.constant_time_eq(b"", b"")


def test_frozen_classes_refuse_attribute_writes() -> None:
    q = native.Quota(1.0, 1)
    with pytest.raises(AttributeError):
        q.burst = 5  # type: ignore[misc]
    parsed = native.parse_key(native.generate_key())
    with pytest.raises(AttributeError):
        parsed.env = "test"  # type: ignore[misc]


def test_manual_clock() -> None:
    c = native.ManualClock()
    assert c.unix_time() == 1_700_000_000.0
    assert c.monotonic() == 0.0
    c.advance(1.5)
    assert c.monotonic() == 1.5
    assert c.unix_time() == 1_700_000_001.5
    c.set_unix_time(10.0)
    assert c.unix_time() == 10.0
    assert c.monotonic() == 1.5
    with pytest.raises(ValueError):
        c.advance(-1)
    with pytest.raises(ValueError):
        c.set_unix_time(math.nan)
    assert native.ManualClock(5.0).unix_time() == 5.0


def test_verifier_round_trip_returns_the_same_payload_object() -> None:
    clock = native.ManualClock()
    v = native.Verifier(PEPPER, capacity=100, ttl_seconds=30, negative_ttl_seconds=5, clock=clock)
    key = native.generate_key()
    miss = v.verify(header(key))
    assert isinstance(miss, native.Miss)
    assert miss.digest == v.hash(key)
    assert miss.display_prefix == key[:14]
    payload = {"tenant": "t1"}
    v.insert(
        miss.digest, tenant_id="t1", key_id="k1", expires_at=None, usable=True, payload=payload
    )
    assert len(v) == 1
    assert v.verify(header(key)) is payload
    assert v.verify(f"Bearer {key}") is payload
    assert v.verify(header(key), "api.example.com:443") is payload
    clock.advance(30)
    assert isinstance(v.verify(header(key)), native.Miss)


def test_verifier_refusals_are_none() -> None:
    v = native.Verifier(PEPPER, clock=native.ManualClock())
    key = native.generate_key()
    assert v.verify(None) is None
    assert v.verify(b"") is None
    assert v.verify(f"Basic {key}") is None
    assert v.verify("Bearer \ud800") is None
    assert v.verify(header(key), "\ud800") is None
    v.insert_refusal(v.hash(key))
    assert v.verify(header(key)) is None
    with pytest.raises(TypeError):
        v.verify(42)  # type: ignore[arg-type]


def test_verifier_argument_errors() -> None:
    with pytest.raises(ValueError):
        native.Verifier(b"short")
    with pytest.raises(ValueError):
        native.Verifier(PEPPER, capacity=0)
    with pytest.raises(ValueError):
        native.Verifier(PEPPER, ttl_seconds=0)
    with pytest.raises(ValueError):
        native.Verifier(PEPPER, negative_ttl_seconds=math.inf)
    with pytest.raises(TypeError):
        native.Verifier(PEPPER, 10)  # type: ignore[misc]
    v = native.Verifier(PEPPER)
    with pytest.raises(ValueError, match="32 bytes"):
        v.insert(b"x", tenant_id="t", key_id="k", expires_at=None, usable=True, payload=1)
    with pytest.raises(ValueError, match="32 bytes"):
        v.insert_refusal(b"")
    with pytest.raises(ValueError):
        v.insert(b"x" * 32, tenant_id="t", key_id="k", expires_at=math.nan, usable=True, payload=1)
    with pytest.raises(TypeError):
        v.insert(b"x" * 32, "t", "k", None, True, 1)  # type: ignore[misc]
    with pytest.raises(ValueError):
        v.bind_domain("", "t")


def test_verifier_invalidation_and_domains() -> None:
    v = native.Verifier(PEPPER, clock=native.ManualClock())
    keys = [native.generate_key() for _ in range(4)]
    for i, key in enumerate(keys):
        v.insert(
            v.hash(key),
            tenant_id="a" if i < 3 else "b",
            key_id=f"k{i}",
            expires_at=None,
            usable=True,
            payload=i,
        )
    v.bind_domain("A.Example.COM", "a")
    assert v.verify(header(keys[0]), b"a.example.com") == 0
    assert v.verify(header(keys[3]), b"a.example.com:8443") is None
    v.unbind_domain("a.example.com")
    assert v.verify(header(keys[3]), b"a.example.com") == 3
    assert v.invalidate_key("k0") is True
    assert v.invalidate_key("k0") is False
    assert v.invalidate_tenant("a") == 2
    assert len(v) == 1
    v.clear()
    assert len(v) == 0


def test_verifier_releases_payloads() -> None:
    class Payload:
        pass

    v = native.Verifier(PEPPER, clock=native.ManualClock())
    p = Payload()
    ref = weakref.ref(p)
    v.insert(b"\x01" * 32, tenant_id="t", key_id="k", expires_at=None, usable=True, payload=p)
    del p
    gc.collect()
    assert ref() is not None
    v.invalidate_key("k")
    gc.collect()
    assert ref() is None


def test_payload_destructor_may_call_back_into_the_verifier() -> None:
    """Evicted payloads are dropped after the shard lock is released: no deadlock."""
    v = native.Verifier(PEPPER, capacity=1, clock=native.ManualClock())
    seen: list[int] = []

    class Payload:
        def __del__(self) -> None:
            seen.append(len(v))

    v.insert(
        b"\x01" * 32, tenant_id="t", key_id="k1", expires_at=None, usable=True, payload=Payload()
    )
    v.insert(
        b"\x02" * 32, tenant_id="t", key_id="k2", expires_at=None, usable=True, payload=Payload()
    )
    gc.collect()
    assert seen, "the first payload was evicted and dropped"
    assert len(v) == 1


def test_quota_and_decision_types() -> None:
    q = native.Quota(2.5, 3)
    assert q.rate_per_second == 2.5
    assert q.burst == 3
    q.update(0.1, 7)
    assert q.rate_per_second == 0.1
    assert q.burst == 7
    for rate, burst in [(0, 1), (-1, 1), (math.nan, 1), (math.inf, 1), (1, 0), (1, -5), (1, 2**32)]:
        with pytest.raises(ValueError):
            native.Quota(rate, burst)
        with pytest.raises(ValueError):
            q.update(rate, burst)
    assert (q.rate_per_second, q.burst) == (0.1, 7)

    lim = native.Limiter(capacity=10, clock=native.ManualClock())
    d = lim.try_acquire("t", q)
    assert isinstance(d, native.Decision)
    assert d.allowed is True
    assert isinstance(d.limit, int)
    assert d.limit == 7
    assert d.remaining == 6
    assert isinstance(d.reset_after, float)
    assert d.retry_after == 0.0
    assert len(lim) == 1
    assert "allowed=True" in repr(d)


def test_limiter_cost_edge_cases() -> None:
    lim = native.Limiter(clock=native.ManualClock())
    q = native.Quota(1.0, 3)
    d = lim.try_acquire("t", q, 4)
    assert not d.allowed
    assert d.retry_after == math.inf
    assert lim.try_acquire("t", q, 2**40).retry_after == math.inf
    assert lim.try_acquire("t", q, 0).remaining == 3
    with pytest.raises(ValueError):
        lim.try_acquire("t", q, -1)
    with pytest.raises(TypeError):
        lim.try_acquire("t", object())  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        native.Limiter(capacity=0)


def test_limiter_with_manual_clock() -> None:
    clock = native.ManualClock()
    lim = native.Limiter(clock=clock)
    q = native.Quota(10.0, 2)
    assert lim.try_acquire("t", q).allowed
    assert lim.try_acquire("t", q).allowed
    d = lim.try_acquire("t", q)
    assert not d.allowed
    assert d.retry_after == pytest.approx(0.1)
    assert d.reset_after == pytest.approx(0.2)
    clock.advance(0.1)
    assert lim.try_acquire("t", q).allowed


def test_verify_and_acquire() -> None:
    clock = native.ManualClock()
    v = native.Verifier(PEPPER, clock=clock)
    lim = native.Limiter(clock=clock)
    q = native.Quota(1.0, 2)
    key, other = native.generate_key(), native.generate_key()
    payload = object()
    v.insert(
        v.hash(key),
        tenant_id="t",
        key_id="k",
        expires_at=None,
        usable=True,
        payload=payload,
        quota=q,
    )
    v.insert(v.hash(other), tenant_id="u", key_id="o", expires_at=None, usable=True, payload=1)
    got = v.verify_and_acquire(header(key), None, lim)
    assert isinstance(got, native.Decision)
    assert got.payload is payload
    assert got.allowed
    assert got.remaining == 1
    # The bucket defaults to the tenant id: the two-call path shares it.
    plain = lim.try_acquire("t", q)
    assert plain.remaining == 0
    assert plain.payload is None
    denied = v.verify_and_acquire(header(key), None, lim)
    assert isinstance(denied, native.Decision)
    assert not denied.allowed
    assert denied.payload is payload
    # No quota: allowed, limit 0, nothing charged.
    free = v.verify_and_acquire(header(other), None, lim)
    assert isinstance(free, native.Decision)
    assert (free.payload, free.allowed, free.limit, free.remaining) == (1, True, 0, 0)
    assert (free.reset_after, free.retry_after) == (0.0, 0.0)
    assert isinstance(v.verify_and_acquire(header(native.generate_key()), None, lim), native.Miss)
    assert v.verify_and_acquire(b"Bearer nope", None, lim) is None
    # A separate bucket, on a limiter with its own clock.
    v.insert(
        v.hash(key),
        tenant_id="t",
        key_id="k",
        expires_at=None,
        usable=True,
        payload=2,
        quota=q,
        bucket="b",
    )
    got = v.verify_and_acquire(header(key), "h", native.Limiter(), cost=2)
    assert isinstance(got, native.Decision)
    assert got.payload == 2
    assert got.allowed
    assert got.remaining == 0


def test_threads_share_one_limiter_without_over_granting() -> None:
    lim = native.Limiter(clock=native.ManualClock())
    q = native.Quota(1.0, 5_000)

    def take(_: int) -> int:
        return sum(lim.try_acquire(f"id{i % 4}", q).allowed for i in range(4_000))

    with ThreadPoolExecutor(max_workers=8) as pool:
        granted = sum(pool.map(take, range(8)))
    assert granted == 4 * 5_000


def test_threads_verify_insert_and_invalidate() -> None:
    clock = native.ManualClock()
    v = native.Verifier(PEPPER, capacity=64, clock=clock)
    keys = [native.generate_key() for _ in range(32)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def worker(n: int) -> None:
        try:
            barrier.wait()
            for round_ in range(200):
                for i, key in enumerate(keys):
                    got = v.verify(header(key))
                    if isinstance(got, native.Miss):
                        v.insert(
                            got.digest,
                            tenant_id=f"t{i % 3}",
                            key_id=f"k{i}",
                            expires_at=None,
                            usable=True,
                            payload=i,
                        )
                    elif got is not None:
                        assert got == i
                if round_ % 40 == n:
                    v.invalidate_tenant(f"t{n % 3}")
                    v.invalidate_key(f"k{n}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(v) <= 64
