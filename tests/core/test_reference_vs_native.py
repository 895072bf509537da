"""The native core and the pure-Python reference are two implementations of one specification.

Hypothesis drives both with the same inputs (and, for the stateful parts, the same operations
under one shared ``ManualClock``) and requires the same observable answers: key format and
checksums, parse results and rejections, keyed digests (also against the standard library's
``hmac``), verifier verdicts, and limiter decisions. A handful of worked examples pin the
specification itself, so that both implementations cannot drift the same way unnoticed.
"""

from __future__ import annotations

import hmac
import math
import zlib

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from tenantgate import _native as native
from tenantgate import reference as ref
from tenantgate.errors import KeyFormatError

IMPLS = pytest.mark.parametrize("impl", [native, ref], ids=["native", "reference"])
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
FLOAT_TOLERANCE = 1e-6

base62 = st.sampled_from(ALPHABET)
envs = st.sampled_from(["live", "test"])


def make_key(env: str, random: str) -> str:
    """A well-formed key, built from the specification rather than from either implementation."""
    body = f"tg_{env}_{random}"
    crc = zlib.crc32(body.encode())
    digits = []
    for _ in range(6):
        crc, r = divmod(crc, 62)
        digits.append(ALPHABET[r])
    return body + "".join(reversed(digits))


@st.composite
def valid_keys(draw: st.DrawFn, min_random: int = 30, max_random: int = 64) -> str:
    random = draw(st.text(base62, min_size=min_random, max_size=max_random))
    return make_key(draw(envs), random)


def parse_outcome(impl: object, key: str | bytes) -> tuple[str, ...] | str:
    """What ``impl.parse_key`` answers, in a form two implementations can be compared by."""
    try:
        parsed = impl.parse_key(key)
    except KeyFormatError as exc:
        message = str(exc)
        text = key if isinstance(key, str) else key.decode("latin-1")
        if len(text) >= 8:
            assert text not in message, "a KeyFormatError message must never echo the key"
        return "KeyFormatError"
    return (parsed.env, parsed.random, parsed.checksum, parsed.display_prefix)


def assert_same_parse(key: str | bytes) -> tuple[str, ...] | str:
    expected = parse_outcome(ref, key)
    assert parse_outcome(native, key) == expected
    return expected


# --- key format ---------------------------------------------------------------------------


@IMPLS
@pytest.mark.parametrize("env", ["live", "test"])
def test_generated_keys_have_the_documented_shape_and_parse_in_both(impl: object, env: str):
    for _ in range(200):
        key = impl.generate_key(env)
        assert key.startswith(f"tg_{env}_")
        assert len(key) == len("tg_live_") + 30 + 6
        assert set(key[8:]) <= set(ALPHABET)
        assert key == make_key(env, key[8:-6])
        assert assert_same_parse(key) == (env, key[8:-6], key[-6:], key[:14])


@IMPLS
def test_generated_keys_default_to_live_and_refuse_other_envs(impl: object):
    assert impl.generate_key().startswith("tg_live_")
    for env in ["prod", "LIVE", "", "live_"]:
        with pytest.raises(ValueError):
            impl.generate_key(env)


@IMPLS
def test_generated_random_parts_use_the_whole_alphabet_evenly(impl: object):
    counts = dict.fromkeys(ALPHABET, 0)
    for _ in range(2000):
        for c in impl.generate_key()[8:-6]:
            counts[c] += 1
    expected = 2000 * 30 / 62
    # 60,000 draws: each count is within 6 standard deviations (~±57) of 968 unless biased.
    assert all(abs(n - expected) < 6 * math.sqrt(expected) for n in counts.values()), counts


@given(st.text())
def test_checksums_agree_on_any_text(body: str):
    assert native.key_checksum(body) == ref.key_checksum(body)


@given(envs, st.text(base62, min_size=30, max_size=64))
def test_checksum_is_six_base62_digits_of_crc32(env: str, random: str):
    body = f"tg_{env}_{random}"
    checksum = native.key_checksum(body)
    assert len(checksum) == 6
    value = 0
    for c in checksum:
        value = value * 62 + ALPHABET.index(c)
    assert value == zlib.crc32(body.encode())


def test_checksum_is_left_padded_with_zeros():
    # crc32(b"") == 0 and crc32(b"a") == 0xE8B7BE43: both render at the fixed width of 6.
    assert native.key_checksum("") == ref.key_checksum("") == "000000"
    assert native.key_checksum("a") == ref.key_checksum("a") == "4GEHKN"


@given(valid_keys())
def test_well_formed_keys_parse_identically_as_str_and_bytes(key: str):
    expected = (key[3:7], key[8:-6], key[-6:], key[:14])
    assert assert_same_parse(key) == expected
    assert assert_same_parse(key.encode()) == expected


@given(st.one_of(st.text(), st.binary(), st.text(base62 | st.sampled_from("_-tg"), max_size=90)))
def test_arbitrary_strings_get_the_same_answer(text: str | bytes):
    assert_same_parse(text)


@given(envs, st.integers(0, 120))
def test_random_parts_from_30_to_64_characters_are_accepted_and_no_others(env: str, n: int):
    key = make_key(env, ("0aZ9" * 40)[:n])
    outcome = assert_same_parse(key)
    assert (outcome != "KeyFormatError") == (30 <= n <= 64)


@given(valid_keys(), st.data())
def test_any_single_character_change_is_rejected_by_both(key: str, data: st.DataObject):
    i = data.draw(st.integers(0, len(key) - 1), label="index")
    c = data.draw(st.characters(codec="utf-8") | base62, label="replacement")
    assume(c != key[i])
    mutated = key[:i] + c + key[i + 1 :]
    # Outside the alphabet, in the prefix, or inside it: CRC32 detects every error burst of up
    # to 32 bits, so every single-character substitution is caught.
    assert assert_same_parse(mutated) == "KeyFormatError"


@given(valid_keys(), st.data())
def test_truncations_and_extensions_are_rejected_by_both(key: str, data: st.DataObject):
    cut = data.draw(st.integers(0, len(key) - 1), label="cut")
    assert assert_same_parse(key[:cut]) == "KeyFormatError"
    assert_same_parse(key + data.draw(st.text(base62, min_size=1, max_size=3)))


@given(
    st.sampled_from(
        [
            "tg_prod_",
            "TG_live_",
            "tg_LIVE_",
            "tg-live_",
            "tg_live-",
            "xg_live_",
            "tg__",
            "tg_live",
            "tglive_",
            "tg_test",
            "tk_test_",
            " tg_live_",
        ]
    ),
    st.text(base62, min_size=30, max_size=64),
)
def test_wrong_prefixes_and_envs_are_rejected_even_with_a_matching_checksum(
    prefix: str, random: str
):
    body = prefix + random
    key = body + ref.key_checksum(body)
    assert assert_same_parse(key) == "KeyFormatError"


# --- hashing ------------------------------------------------------------------------------


@given(st.binary(min_size=16, max_size=200), st.binary(max_size=200))
def test_digests_agree_with_each_other_and_with_stdlib_hmac(pepper: bytes, key: bytes):
    expected = hmac.digest(pepper, key, "sha256")
    assert native.KeyHasher(pepper).hash(key) == expected
    assert ref.KeyHasher(pepper).hash(key) == expected
    assert native.Verifier(pepper).hash(key) == expected
    assert ref.Verifier(pepper).hash(key) == expected


@given(st.binary(min_size=16, max_size=80), st.text(max_size=100))
def test_str_keys_are_hashed_as_utf8(pepper: bytes, key: str):
    expected = hmac.digest(pepper, key.encode(), "sha256")
    assert native.KeyHasher(pepper).hash(key) == ref.KeyHasher(pepper).hash(key) == expected


@IMPLS
@given(pepper=st.binary(max_size=15))
def test_peppers_shorter_than_16_bytes_are_refused(impl: object, pepper: bytes):
    with pytest.raises(ValueError):
        impl.KeyHasher(pepper)
    with pytest.raises(ValueError):
        impl.Verifier(pepper)


@given(st.binary(max_size=40), st.binary(max_size=40))
def test_constant_time_eq_is_equality(a: bytes, b: bytes):
    assert native.constant_time_eq(a, b) == ref.constant_time_eq(a, b) == (a == b)
    assert native.constant_time_eq(a, a)
    assert ref.constant_time_eq(b, b)


# --- clock --------------------------------------------------------------------------------


@IMPLS
def test_manual_clock_moves_only_when_told(impl: object):
    clock = impl.ManualClock(1_000.0)
    m0 = clock.monotonic()
    assert clock.unix_time() == 1_000.0
    clock.advance(2.5)
    assert clock.unix_time() == 1_002.5
    assert clock.monotonic() - m0 == pytest.approx(2.5)
    clock.set_unix_time(5.0)
    assert clock.unix_time() == 5.0
    assert clock.monotonic() - m0 == pytest.approx(2.5), "setting wall time must not move monotonic"
    assert impl.ManualClock().unix_time() == 1_700_000_000.0


# --- verifier -----------------------------------------------------------------------------

PEPPER = b"differential-test-pepper-32bytes"
TTL = 2.0
NEGATIVE_TTL = 1.0
KEYS = [make_key("live", "A" * 29 + str(i)) for i in range(4)] + [make_key("test", "b" * 64)]
TENANTS = ["t1", "t2", "t3"]
DOMAINS = [
    "a.example",
    "B.Example",
    "c.example.",
    "xn--bcher-kva.example",
    "[::1]",
    "10.0.0.1",
    "BÜCHER.example",
    "a.example..",
]
HOSTS = [
    None,
    "a.example",
    "A.EXAMPLE",
    "a.example:8443",
    "a.example.",
    "a.example.:80",
    "b.example",
    "c.example",
    "C.EXAMPLE:1",
    "[::1]:8080",
    "[::1]",
    "10.0.0.1:80",
    "xn--bcher-kva.example",
    "unbound.example",
    b"a.example",
    b"B.EXAMPLE:443",
    "",
    "[::1",
    "::1",
    "a.example..",
    "a.example:80:80",
    ".",
    "b.example:",
    "bücher.example",
]
GARBAGE_HEADERS = [
    None,
    "",
    "Bearer",
    "Bearer ",
    "Basic dXNlcjpwYXNz",
    "Token " + KEYS[0],
    "Bearer" + KEYS[0],
    " Bearer " + KEYS[0],
    "Bearer " + KEYS[0][:-1],
    "Bearer " + KEYS[0] + "x",
    "Bearer " + KEYS[0].replace("tg_live_", "tg_test_"),
    "Bearer " + KEYS[0] + " junk",
    "Bearer " + KEYS[0][:-1] + "é",
    b"Bearer \xff" + KEYS[0].encode(),
    "Bearer\n" + KEYS[0],
    "Bearer\u00a0" + KEYS[0],
]


def header_forms(key: str) -> list[str | bytes]:
    return [
        f"Bearer {key}",
        f"bearer {key}",
        f"BEARER\t{key}",
        f"Bearer   {key}  ",
        f"bEaReR {key}\t",
        f"Bearer {key}".encode(),
        f"Bearer \t {key}\r\n",
    ]


def verdict(answer: object) -> object:
    """A verify answer in comparable form: payloads compare by identity of the shared object."""
    if answer is None:
        return None
    if isinstance(answer, (native.Miss, ref.Miss)):
        return ("miss", answer.digest, answer.display_prefix)
    return ("payload", id(answer))


expiries = st.sampled_from([None, -5.0, -0.5, 0.0, 0.5, 1.0, 3.0, 1e6])
advances = st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0, 3.0]) | st.floats(0, 10)


class VerifierAgreement(RuleBasedStateMachine):
    """Random sequences of cache operations give the same verdicts in both implementations."""

    @initialize()
    def start(self) -> None:
        self.clock = native.ManualClock(1_700_000_000.0)
        kwargs = {"ttl_seconds": TTL, "negative_ttl_seconds": NEGATIVE_TTL, "clock": self.clock}
        self.native = native.Verifier(PEPPER, **kwargs)
        self.ref = ref.Verifier(PEPPER, **kwargs)
        self.payloads = [("payload", i) for i in range(len(KEYS))]
        self.quotas = {native: native.Quota(2.0, 3), ref: ref.Quota(2.0, 3)}
        self.limiters = {
            native: native.Limiter(clock=self.clock),
            ref: ref.Limiter(clock=self.clock),
        }

    def digest(self, i: int) -> bytes:
        return hmac.digest(PEPPER, KEYS[i].encode(), "sha256")

    @rule(
        i=st.integers(0, len(KEYS) - 1),
        tenant=st.sampled_from(TENANTS),
        expires_in=expiries,
        usable=st.booleans(),
        with_quota=st.booleans(),
        bucket=st.sampled_from([None, "shared-bucket"]),
        ttl=st.sampled_from([None, None, 0.5, 60.0]),
    )
    def insert(
        self,
        i: int,
        tenant: str,
        expires_in: float | None,
        usable: bool,
        with_quota: bool,
        bucket: str | None,
        ttl: float | None,
    ) -> None:
        expires_at = None if expires_in is None else self.clock.unix_time() + expires_in
        for impl, verifier in ((native, self.native), (ref, self.ref)):
            verifier.insert(
                self.digest(i),
                tenant_id=tenant,
                key_id=f"key{i}",
                expires_at=expires_at,
                usable=usable,
                payload=self.payloads[i],
                quota=self.quotas[impl] if with_quota else None,
                bucket=bucket,
                ttl_seconds=ttl,
            )

    @rule(within=st.sampled_from([0.25, 1.0, 2.5]))
    def shorten(self, within: float) -> None:
        assert self.native.shorten(within) == self.ref.shorten(within)

    @rule(i=st.integers(0, len(KEYS) - 1))
    def insert_refusal(self, i: int) -> None:
        self.native.insert_refusal(self.digest(i))
        self.ref.insert_refusal(self.digest(i))

    @rule(i=st.integers(0, len(KEYS)))
    def invalidate_key(self, i: int) -> None:
        key_id = f"key{i}"
        assert self.native.invalidate_key(key_id) == self.ref.invalidate_key(key_id)

    @rule(tenant=st.sampled_from([*TENANTS, "nobody"]))
    def invalidate_tenant(self, tenant: str) -> None:
        assert self.native.invalidate_tenant(tenant) == self.ref.invalidate_tenant(tenant)

    @rule(domain=st.sampled_from(DOMAINS), tenant=st.sampled_from(TENANTS))
    def bind_domain(self, domain: str, tenant: str) -> None:
        self.native.bind_domain(domain, tenant)
        self.ref.bind_domain(domain, tenant)

    @rule(domain=st.sampled_from([*DOMAINS, "never.bound"]))
    def unbind_domain(self, domain: str) -> None:
        self.native.unbind_domain(domain)
        self.ref.unbind_domain(domain)

    @rule(seconds=advances)
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(offset=st.sampled_from([-100.0, -1.0, 1.0, 100.0]))
    def set_unix_time(self, offset: float) -> None:
        self.clock.set_unix_time(self.clock.unix_time() + offset)

    @precondition(lambda self: True)
    @rule()
    def clear(self) -> None:
        self.native.clear()
        self.ref.clear()

    @rule(i=st.integers(0, len(KEYS) - 1), form=st.integers(0, 6), host=st.sampled_from(HOSTS))
    def verify_key(self, i: int, form: int, host: str | bytes | None) -> None:
        header = header_forms(KEYS[i])[form]
        expected = verdict(self.ref.verify(header, host))
        assert verdict(self.native.verify(header, host)) == expected
        if expected is not None and expected[0] == "payload":
            assert self.native.verify(header, host) is self.payloads[i]

    @rule(
        i=st.integers(0, len(KEYS) - 1),
        form=st.integers(0, 6),
        host=st.sampled_from(HOSTS),
        cost=st.integers(0, 4),
    )
    def verify_and_acquire(self, i: int, form: int, host: str | bytes | None, cost: int) -> None:
        header = header_forms(KEYS[i])[form]
        got = self.native.verify_and_acquire(header, host, self.limiters[native], cost)
        expected = self.ref.verify_and_acquire(header, host, self.limiters[ref], cost)
        if isinstance(expected, ref.Decision):
            assert isinstance(got, native.Decision)
            assert got.payload is expected.payload is self.payloads[i]
            assert_same_decision(got, expected)
        else:
            assert verdict(got) == verdict(expected)

    @rule(header=st.sampled_from(GARBAGE_HEADERS), host=st.sampled_from(HOSTS))
    def verify_garbage(self, header: str | bytes | None, host: str | bytes | None) -> None:
        assert self.native.verify(header, host) is None
        assert self.ref.verify(header, host) is None

    @invariant()
    def same_size(self) -> None:
        if hasattr(self, "native"):
            assert len(self.native) == len(self.ref)
            assert len(self.limiters[native]) == len(self.limiters[ref])


TestVerifierAgreement = VerifierAgreement.TestCase
TestVerifierAgreement.settings = settings(
    max_examples=300,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@IMPLS
@pytest.mark.parametrize("domain", ["", ".", "[::1", "[]:80", "x" * 256])
def test_binding_an_empty_or_overlong_domain_is_refused(impl: object, domain: str):
    verifier = impl.Verifier(PEPPER)
    with pytest.raises(ValueError):
        verifier.bind_domain(domain, "t1")


@IMPLS
@pytest.mark.parametrize(
    ("ttl", "negative_ttl"), [(0.0, 1.0), (1.0, 0.0), (-1.0, 1.0), (math.inf, 1.0), (1.0, math.nan)]
)
def test_ttls_must_be_finite_and_positive(impl: object, ttl: float, negative_ttl: float):
    with pytest.raises(ValueError):
        impl.Verifier(PEPPER, ttl_seconds=ttl, negative_ttl_seconds=negative_ttl)


@IMPLS
def test_a_record_trusted_longer_is_cut_back_by_shorten(impl: object):
    """A record inserted for longer than the TTL lives that long; ``shorten`` brings every such
    record within the given span (each at a point its digest picks), and leaves refusals."""
    clock = impl.ManualClock(1_000.0)
    verifier = impl.Verifier(PEPPER, ttl_seconds=1.0, negative_ttl_seconds=5.0, clock=clock)
    headers = [f"Bearer {key}" for key in KEYS]
    for i, key in enumerate(KEYS[:-1]):
        verifier.insert(
            hmac.digest(PEPPER, key.encode(), "sha256"),
            tenant_id="t",
            key_id=f"k{i}",
            expires_at=None,
            usable=True,
            payload=i,
            ttl_seconds=60.0,
        )
    verifier.insert_refusal(hmac.digest(PEPPER, KEYS[-1].encode(), "sha256"))
    clock.advance(30.0)
    assert [verifier.verify(h) for h in headers[:-1]] == list(range(len(KEYS) - 1))
    assert verifier.shorten(1.0) == len(KEYS) - 1
    clock.advance(1.0)
    assert all(isinstance(verifier.verify(h), impl.Miss) for h in headers[:-1])
    with pytest.raises(ValueError, match="within_seconds"):
        verifier.shorten(0.0)
    with pytest.raises(ValueError, match="ttl_seconds"):
        verifier.insert(
            b"d" * 32,
            tenant_id="t",
            key_id="k",
            expires_at=None,
            usable=True,
            payload=0,
            ttl_seconds=math.nan,
        )


@IMPLS
def test_verifier_lifecycle_of_one_key(impl: object):
    """The specification, step by step, for one key."""
    clock = impl.ManualClock(1_000.0)
    verifier = impl.Verifier(PEPPER, ttl_seconds=30.0, negative_ttl_seconds=5.0, clock=clock)
    key = KEYS[0]
    header = f"Bearer {key}"
    digest = hmac.digest(PEPPER, key.encode(), "sha256")

    miss = verifier.verify(header)
    assert (miss.digest, miss.display_prefix) == (digest, key[:14])

    verifier.insert_refusal(digest)
    assert verifier.verify(header) is None, "a cached refusal refuses"
    clock.advance(5.0)
    assert verifier.verify(header).digest == digest, "a refusal is cached for negative_ttl only"

    payload = {"tenant": "t1"}
    verifier.insert(
        digest, tenant_id="t1", key_id="k1", expires_at=1_100.0, usable=True, payload=payload
    )
    assert verifier.verify(header) is payload
    assert verifier.verify(header, "anything.example:443") is payload, "unbound hosts are fine"
    verifier.bind_domain("api.t2.example", "t2")
    assert verifier.verify(header, "API.T2.example.:8443") is None, "another tenant's domain"
    verifier.bind_domain("api.t1.example", "t1")
    assert verifier.verify(header, "api.t1.example") is payload
    verifier.unbind_domain("api.t2.example")
    assert verifier.verify(header, "api.t2.example") is payload

    clock.advance(29.0)
    assert verifier.verify(header) is payload
    clock.advance(1.0)
    assert verifier.verify(header).digest == digest, "records are cached for ttl only"

    verifier.insert(
        digest, tenant_id="t1", key_id="k1", expires_at=1_100.0, usable=True, payload=payload
    )
    clock.set_unix_time(1_100.0)
    assert verifier.verify(header) is None, "an expired key is refused"
    clock.set_unix_time(1_000.0)
    assert verifier.verify(header) is payload
    assert verifier.invalidate_key("k1") is True
    assert verifier.invalidate_key("k1") is False
    assert verifier.verify(header).digest == digest
    assert len(verifier) == 0


# --- limiter ------------------------------------------------------------------------------


def assert_same_decision(a: object, b: object) -> None:
    assert (a.allowed, a.limit, a.remaining) == (b.allowed, b.limit, b.remaining)
    assert a.reset_after == pytest.approx(b.reset_after, abs=FLOAT_TOLERANCE)
    assert a.retry_after == pytest.approx(b.retry_after, abs=FLOAT_TOLERANCE)


rates = st.sampled_from([0.5, 1.0, 3.0, 10.0, 100.0, 1000.0]) | st.floats(0.01, 1e5)
bursts = st.sampled_from([1, 2, 3, 20, 200]) | st.integers(1, 10_000)


class LimiterAgreement(RuleBasedStateMachine):
    """Random acquires, clock advances and quota updates give the same decisions."""

    @initialize(rate_a=rates, burst_a=bursts, rate_b=rates, burst_b=bursts)
    def start(self, rate_a: float, burst_a: int, rate_b: float, burst_b: int) -> None:
        self.clock = native.ManualClock()
        self.native = native.Limiter(clock=self.clock)
        self.ref = ref.Limiter(clock=self.clock)
        self.quotas = [
            (native.Quota(rate_a, burst_a), ref.Quota(rate_a, burst_a)),
            (native.Quota(rate_b, burst_b), ref.Quota(rate_b, burst_b)),
        ]

    @rule(
        id=st.sampled_from(["t1", "t2", "t3"]),
        q=st.integers(0, 1),
        cost=st.sampled_from([1, 1, 1, 0, 2, 5]) | st.integers(0, 300),
    )
    def acquire(self, id: str, q: int, cost: int) -> None:
        nq, rq = self.quotas[q]
        expected = self.ref.try_acquire(id, rq, cost)
        assert_same_decision(self.native.try_acquire(id, nq, cost), expected)

    @rule(seconds=st.sampled_from([0.0, 0.001, 0.1, 0.5, 1.0, 10.0]) | st.floats(0, 100))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(q=st.integers(0, 1), rate=rates, burst=bursts)
    def update(self, q: int, rate: float, burst: int) -> None:
        for quota in self.quotas[q]:
            quota.update(rate, burst)
        assert self.quotas[q][0].rate_per_second == self.quotas[q][1].rate_per_second == rate
        assert self.quotas[q][0].burst == self.quotas[q][1].burst == burst

    @invariant()
    def same_size(self) -> None:
        if hasattr(self, "native"):
            assert len(self.native) == len(self.ref)


TestLimiterAgreement = LimiterAgreement.TestCase
TestLimiterAgreement.settings = settings(
    max_examples=300,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@IMPLS
def test_gcra_worked_example(impl: object):
    """1 token per second, burst 3, on a frozen clock then a moving one."""
    clock = impl.ManualClock()
    limiter = impl.Limiter(clock=clock)
    quota = impl.Quota(1.0, 3)

    got = [limiter.try_acquire("t", quota) for _ in range(4)]
    assert [d.allowed for d in got] == [True, True, True, False]
    assert [d.remaining for d in got] == [2, 1, 0, 0]
    assert [d.limit for d in got] == [3, 3, 3, 3]
    assert [d.reset_after for d in got] == pytest.approx([1.0, 2.0, 3.0, 3.0])
    assert [d.retry_after for d in got] == pytest.approx([0.0, 0.0, 0.0, 1.0])

    clock.advance(1.0)
    d = limiter.try_acquire("t", quota)
    assert (d.allowed, d.remaining) == (True, 0)
    assert limiter.try_acquire("other", quota).remaining == 2, "buckets are per id"

    clock.advance(10.0)
    d = limiter.try_acquire("t", quota, 3)
    assert (d.allowed, d.remaining, d.reset_after) == (True, 0, pytest.approx(3.0))
    d = limiter.try_acquire("t", quota, 2)
    assert (d.allowed, d.remaining, d.retry_after) == (False, 0, pytest.approx(2.0))
    d = limiter.try_acquire("t", quota, 4)
    assert not d.allowed
    assert d.retry_after == math.inf, "a cost above the burst is never allowed"
    clock.advance(3.0)
    d = limiter.try_acquire("t", quota, 0)
    assert (d.allowed, d.remaining, d.reset_after) == (True, 3, 0.0), "cost 0 only reports"

    quota.update(2.0, 10)
    d = limiter.try_acquire("t", quota)
    assert d.allowed, "a quota update applies to the next acquire"
    assert d.limit == 10


@IMPLS
@pytest.mark.parametrize(
    ("rate", "burst"), [(0.0, 1), (-1.0, 1), (math.inf, 1), (math.nan, 1), (1.0, 0), (1.0, -5)]
)
def test_invalid_quotas_are_refused(impl: object, rate: float, burst: int):
    with pytest.raises(ValueError):
        impl.Quota(rate, burst)
    quota = impl.Quota(1.0, 1)
    with pytest.raises(ValueError):
        quota.update(rate, burst)
    assert (quota.rate_per_second, quota.burst) == (1.0, 1), "a refused update changes nothing"


def test_module_level_names_match():
    public = {n for n in dir(native) if not n.startswith("_")}
    assert set(ref.__all__) - {"Clock"} <= public, "the reference mirrors the native API"


@IMPLS
def test_verify_and_acquire_charges_the_bucket_inserted_with_the_record(impl):
    clock = impl.ManualClock()
    verifier = impl.Verifier(PEPPER, clock=clock)
    limiter = impl.Limiter(clock=clock)
    quota = impl.Quota(1.0, 2)
    digests = [hmac.digest(PEPPER, k.encode(), "sha256") for k in KEYS]
    # Keys 0 and 1: two tenants drawing on one bucket. Key 2: its tenant's own bucket.
    # Key 3: no quota.
    for i, (tenant, bucket) in enumerate([("t1", "org"), ("t2", "org"), ("t3", None)]):
        verifier.insert(
            digests[i],
            tenant_id=tenant,
            key_id=f"k{i}",
            expires_at=None,
            usable=True,
            payload=i,
            quota=quota,
            bucket=bucket,
        )
    verifier.insert(
        digests[3], tenant_id="t1", key_id="k3", expires_at=None, usable=True, payload=3
    )

    decision = verifier.verify_and_acquire(f"Bearer {KEYS[0]}", None, limiter)
    assert (decision.payload, decision.allowed, decision.remaining) == (0, True, 1)
    decision = verifier.verify_and_acquire(f"Bearer {KEYS[1]}", None, limiter)
    assert (decision.payload, decision.allowed, decision.remaining) == (1, True, 0), "same bucket"
    decision = verifier.verify_and_acquire(f"Bearer {KEYS[1]}", None, limiter)
    assert not decision.allowed
    assert decision.retry_after == pytest.approx(1.0)
    decision = verifier.verify_and_acquire(f"Bearer {KEYS[2]}", None, limiter, 2)
    assert (decision.allowed, decision.remaining) == (True, 0), "the tenant id is the default"
    assert limiter.try_acquire("t3", quota, 0).remaining == 0
    assert limiter.try_acquire("t3", quota, 0).payload is None
    decision = verifier.verify_and_acquire(f"Bearer {KEYS[3]}", None, limiter)
    assert (decision.payload, decision.allowed, decision.limit) == (3, True, 0), "no quota"
    miss = verifier.verify_and_acquire(f"Bearer {KEYS[4]}", None, limiter)
    assert miss.digest == digests[4]
    assert verifier.verify_and_acquire("Bearer nope", None, limiter) is None
    assert len(limiter) == 2


@given(
    st.binary(min_size=32, max_size=32),
    st.lists(st.none() | st.text(), max_size=14),
)
def test_audit_record_hashes_agree(previous: bytes, fields: list[str | None]):
    assert native.audit_record_hash(previous, fields) == ref.audit_record_hash(previous, fields)


@IMPLS
def test_an_audit_hash_needs_a_32_byte_previous_hash(impl: object):
    with pytest.raises(ValueError, match="32 bytes"):
        impl.audit_record_hash(b"short", [None])  # type: ignore[attr-defined]
