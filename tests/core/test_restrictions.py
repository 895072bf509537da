"""A key record's scopes and networks, checked inside ``verify_and_acquire``: the native core
and its pure-Python twin agree on every answer (scope, then source address, then the charge),
and a request either check stops charges nothing."""

from __future__ import annotations

import ipaddress
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tenantgate import _native as native
from tenantgate import reference as ref
from tenantgate.scopes import ALL_SCOPES, SCOPE_BITS, scope_bit, scope_mask

IMPLS = pytest.mark.parametrize("impl", [native, ref], ids=["native", "reference"])
PEPPER = b"restriction-test-pepper-32-bytes"
KEY = "tg_live_" + "R" * 30 + native.key_checksum("tg_live_" + "R" * 30)
EVERY_SCOPE = (1 << len(ALL_SCOPES)) - 1

# Addresses and networks where the two parsers or the families could part ways.
TRICKY_ADDRESSES = [
    "10.0.0.1", "10.255.255.255", "11.0.0.0", "0.0.0.0", "255.255.255.255", "127.0.0.1",
    "::", "::1", "::2", "2001:db8::1", "2001:db9::", "fe80::1",
    "::ffff:10.0.0.1", "::ffff:a00:1", "::FFFF:10.0.0.1", "::ffff:11.0.0.1", "::ffff:0:0",
    "::10.0.0.1", "64:ff9b::10.0.0.1",
    "", " ", "10.0.0", "10.0.0.1.", "10.0.0.256", "010.0.0.1", "10.0.0.01", "1e.0.0.1",
    "10.0.0.1 ", " 10.0.0.1", "10.0.0.1/32", "10.0.0.1:80", "[::1]", "::1%lo", "fe80::1%1",
    "1::2::3", ":::", "12345::", "::g", "2001:db8::1:2:3:4:5:6:7", "ffff", "unknown",
    "\u0661\u0660.0.0.1", "10.0.0.1\n",
]  # fmt: skip
TRICKY_NETWORKS = [
    "10.0.0.0/8", "10.1.2.3/8", "10.0.0.1/32", "10.0.0.1", "0.0.0.0/0", "127.0.0.0/8",
    "::/0", "::1/128", "::1", "2001:db8::/32", "::ffff:10.0.0.0/104", "::ffff:0:0/96",
    "::ffff:0:0/80", "::ffff:10.0.0.1/128", "fe80::/10",
]  # fmt: skip
BAD_NETWORKS = [
    "", "/8", "10.0.0.0/", "10.0.0.0/33", "::/129", "10.0.0.0/+8", "10.0.0.0/-1",
    "10.0.0.0/8/8", "10.0.0.0/ 8", "10.0.0.0/\u0668", "10.0.0.0/0008", "x/8", "10.0.0.0/255.0.0.0",
    " 10.0.0.0/8", "fe80::%1/64", "10.0.0.256/8",
]  # fmt: skip


def verifier_with(impl: ModuleType, scopes: int | None, networks: list[str]) -> Any:
    verifier = impl.Verifier(PEPPER, ttl_seconds=3600.0)
    verifier.insert(
        verifier.hash(KEY),
        tenant_id="t",
        key_id="k",
        expires_at=None,
        usable=True,
        payload="p",
        quota=impl.Quota(1.0, 1_000),
        scopes=scopes,
        networks=networks,
    )
    return verifier


def outcome(impl: ModuleType, verifier: Any, limiter: Any, scope: int | None, address: Any) -> Any:
    answer = verifier.verify_and_acquire(f"Bearer {KEY}", None, limiter, 1, scope, address)
    if type(answer) is impl.Restricted:
        assert answer.payload == "p"
        assert repr(answer) == f"Restricted(check={answer.check!r})"
        return ("restricted", answer.check)
    assert type(answer) is impl.Decision, answer
    return ("charged", answer.allowed, answer.limit, answer.remaining)


def both(scopes: int | None, networks: list[str], scope: int | None, address: Any) -> Any:
    answers = []
    for impl in (native, ref):
        limiter = impl.Limiter()
        answers.append(
            outcome(impl, verifier_with(impl, scopes, networks), limiter, scope, address)
        )
        if answers[-1][0] == "restricted":
            assert len(limiter) == 0, "a stopped request charged its bucket"
    assert answers[0] == answers[1], (scopes, networks, scope, address)
    return answers[0]


@pytest.mark.parametrize("address", TRICKY_ADDRESSES)
def test_both_cores_agree_on_tricky_addresses(address: str) -> None:
    for network in TRICKY_NETWORKS:
        both(None, [network], 0, address)


def test_the_families_and_the_ipv4_mapping() -> None:
    def allowed(network: str, address: str) -> bool:
        return both(None, [network], 0, address)[0] == "charged"

    assert allowed("10.0.0.0/8", "::ffff:10.1.2.3"), "an IPv4-mapped peer is its IPv4 address"
    assert allowed("::ffff:10.0.0.0/104", "10.1.2.3"), "an IPv4-mapped network is IPv4"
    assert not allowed("::/0", "127.0.0.1"), "IPv6 anywhere is not IPv4"
    assert not allowed("0.0.0.0/0", "::1"), "IPv4 anywhere is not IPv6"
    assert allowed("0.0.0.0/0", "203.0.113.7")
    assert allowed("::/0", "2001:db8::7")
    assert allowed("192.0.2.7/32", "192.0.2.7")
    assert not allowed("192.0.2.7/32", "192.0.2.6")
    assert allowed("2001:db8::7/128", "2001:db8::7")
    assert not allowed("2001:db8::7/128", "2001:db8::6")
    for malformed in ("", "not an address", "10.0.0.1:80", "::1%lo", "10.0.0.256"):
        assert both(None, ["0.0.0.0/0", "::/0"], 0, malformed) == ("restricted", "source address")


@IMPLS
@pytest.mark.parametrize("network", BAD_NETWORKS)
def test_malformed_networks_are_refused_at_insert(impl: ModuleType, network: str) -> None:
    with pytest.raises(ValueError, match="network"):
        verifier_with(impl, None, [network])


@IMPLS
def test_scope_then_network_then_the_charge(impl: ModuleType) -> None:
    mask = scope_mask(["items:read", "cache:read"])
    assert mask is not None
    verifier = verifier_with(impl, mask, ["10.0.0.0/8"])
    limiter = impl.Limiter()
    read, write = SCOPE_BITS["items:read"], SCOPE_BITS["items:write"]
    for _ in range(3):
        assert outcome(impl, verifier, limiter, None, None) == ("restricted", None)
        assert outcome(impl, verifier, limiter, read, None) == ("restricted", None)
        assert outcome(impl, verifier, limiter, write, "10.0.0.1") == ("restricted", "scope")
        assert outcome(impl, verifier, limiter, write, "8.8.8.8") == ("restricted", "scope")
        assert outcome(impl, verifier, limiter, read, "8.8.8.8") == ("restricted", "source address")
        assert outcome(impl, verifier, limiter, read, "garbage") == ("restricted", "source address")
    assert len(limiter) == 0, "nothing stopped was charged"
    assert outcome(impl, verifier, limiter, read, "10.1.1.1") == ("charged", True, 1000, 999)
    assert outcome(impl, verifier, limiter, 0, "10.1.1.1") == ("charged", True, 1000, 998)


@IMPLS
def test_an_unrestricted_record_never_reads_scope_nor_address(impl: ModuleType) -> None:
    verifier = verifier_with(impl, None, [])
    limiter = impl.Limiter()
    assert outcome(impl, verifier, limiter, None, None)[0] == "charged"
    assert outcome(impl, verifier, limiter, SCOPE_BITS["audit:read"], "nonsense")[0] == "charged"


def test_every_scope_is_no_restriction() -> None:
    assert scope_mask(ALL_SCOPES) is None
    assert scope_mask(None) is None
    assert scope_mask(["items:read"]) == 1
    assert scope_mask(["audit:read", "items:read"]) == 1 | 1 << 6


@IMPLS
def test_a_route_needing_a_name_that_is_no_scope_is_refused_to_a_restricted_key(
    impl: ModuleType,
) -> None:
    assert scope_bit(None) == 0
    assert scope_bit("items:write") == SCOPE_BITS["items:write"]
    limiter = impl.Limiter()
    every_scope_but_one = verifier_with(impl, EVERY_SCOPE ^ 1, [])
    for name in ("items:admin", "billing:read", ""):
        answer = outcome(impl, every_scope_but_one, limiter, scope_bit(name), None)
        assert answer == ("restricted", "scope"), name
    assert outcome(impl, verifier_with(impl, None, []), limiter, scope_bit("x:y"), None)[0] == (
        "charged"
    )


@st.composite
def addresses(draw: st.DrawFn) -> str:
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return str(ipaddress.IPv4Address(draw(st.integers(0, 2**32 - 1))))
    if kind == 1:
        return str(ipaddress.IPv6Address(draw(st.integers(0, 2**128 - 1))))
    if kind == 2:  # IPv4-mapped, in either spelling
        v4 = ipaddress.IPv4Address(draw(st.integers(0, 2**32 - 1)))
        return draw(st.sampled_from([f"::ffff:{v4}", str(ipaddress.IPv6Address(f"::ffff:{v4}"))]))
    return draw(st.text(st.sampled_from("0123456789abcdef.:/%ffff "), max_size=24))


@st.composite
def networks(draw: st.DrawFn) -> str:
    address = draw(addresses())
    if draw(st.booleans()):
        return address
    return f"{address}/{draw(st.integers(0, 130))}"


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(st.none(), st.integers(0, EVERY_SCOPE)),
    st.lists(networks(), max_size=3),
    st.one_of(st.none(), st.sampled_from([0, *SCOPE_BITS.values()])),
    st.one_of(st.none(), addresses()),
)
def test_both_cores_agree_on_any_record_and_request(
    scopes: int | None, nets: list[str], scope: int | None, address: str | None
) -> None:
    refused = []
    for impl in (native, ref):
        try:
            verifier_with(impl, scopes, nets)
        except ValueError:
            refused.append(impl)
    assert refused in ([], [native, ref]), (nets, refused)
    if not refused:
        both(scopes, nets, scope, address)
