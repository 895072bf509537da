"""Key records are trusted long only while the announcements subscription is provably live, and
cut back to the short TTL the moment that proof lapses (a driven clock, no servers: the
listener's side is in test_revocation_across_instances.py)."""

from __future__ import annotations

import hmac
import uuid

import pytest

from tenantgate._native import ManualClock, Verifier
from tenantgate.identity import IdentityCache
from tenantgate.identity.liveness import (
    PING_INTERVAL_SECONDS,
    PING_PREFIX,
    STALL_SECONDS,
    WINDOW_SECONDS,
    SubscriptionLiveness,
)

PEPPER = b"0123456789abcdef0123456789abcdef"


def _ping_answered(liveness: SubscriptionLiveness) -> None:
    payload = liveness.next_ping()
    assert payload is not None
    liveness.heard(payload)


def test_live_only_while_the_latest_answered_ping_is_recent() -> None:
    clock = ManualClock()
    losses: list[float] = []
    liveness = SubscriptionLiveness(lambda: losses.append(clock.monotonic()), clock.monotonic)
    assert not liveness.live(), "nothing proven before the first pong"

    payload = liveness.next_ping()
    assert payload is not None
    assert payload.startswith(PING_PREFIX)
    assert liveness.next_ping() is None, "one ping per interval"
    assert not liveness.live(), "a ping without its pong proves nothing"
    clock.advance(0.1)
    liveness.heard(payload)
    assert liveness.live()
    assert liveness.next_ping() is None, "one ping per interval, answered or not"

    clock.advance(WINDOW_SECONDS - 0.1 - 0.001)
    assert liveness.live()
    clock.advance(0.001)
    assert not liveness.live(), "the ping answered was sent a whole window ago"
    liveness.check()
    assert losses == [clock.monotonic()], "records were trusted on it: cut them back"
    liveness.check()
    assert len(losses) == 1, "one loss, not one per check"


def test_a_late_pong_proves_only_what_its_ping_was_sent_after() -> None:
    clock = ManualClock()
    liveness = SubscriptionLiveness(lambda: None, clock.monotonic)
    early = liveness.next_ping()
    clock.advance(WINDOW_SECONDS)
    assert early is not None
    liveness.heard(early)  # Redis (or the connection) was a second behind
    assert not liveness.live()


def test_no_loss_is_reported_when_nothing_was_trusted_on_it() -> None:
    clock = ManualClock()
    losses: list[int] = []
    liveness = SubscriptionLiveness(lambda: losses.append(1), clock.monotonic)
    _ping_answered(liveness)
    assert liveness.proven()  # looking is not trusting
    clock.advance(5.0)
    liveness.check()
    liveness.lose()
    assert losses == []


def test_a_new_subscription_proves_nothing_until_its_own_pong() -> None:
    clock = ManualClock()
    losses: list[int] = []
    liveness = SubscriptionLiveness(lambda: losses.append(1), clock.monotonic)
    stale = liveness.next_ping()
    assert stale is not None
    liveness.heard(stale)
    assert liveness.live()
    clock.advance(PING_INTERVAL_SECONDS)
    in_flight = liveness.next_ping()
    assert in_flight is not None

    liveness.lose()  # the connection failed, or redis-py reconnected and subscribed again
    assert losses == [1]
    assert not liveness.live()
    liveness.heard(in_flight)  # a pong of the connection given up: proves nothing now
    assert not liveness.live()
    _ping_answered(liveness)
    assert liveness.live()


def test_a_ping_unanswered_for_long_means_a_stuck_connection() -> None:
    clock = ManualClock()
    liveness = SubscriptionLiveness(lambda: None, clock.monotonic)
    assert liveness.next_ping() is not None
    clock.advance(STALL_SECONDS - 0.01)
    assert not liveness.stalled()
    clock.advance(0.01)
    assert liveness.stalled()
    liveness.lose()
    assert not liveness.stalled()


def test_pongs_that_are_not_ours_are_ignored() -> None:
    clock = ManualClock()
    liveness = SubscriptionLiveness(lambda: None, clock.monotonic)
    assert liveness.next_ping() is not None
    for payload in ("redis-py-health-check", "", f"{PING_PREFIX}x", f"{PING_PREFIX}99"):
        liveness.heard(payload)
        assert not liveness.live()


def _insert(cache: IdentityCache, key: str, ttl_seconds: float | None) -> None:
    cache.keys.verifier.insert(
        hmac.digest(PEPPER, key.encode(), "sha256"),
        tenant_id=str(uuid.uuid4()),
        key_id=str(uuid.uuid4()),
        expires_at=None,
        usable=True,
        payload=key,
        ttl_seconds=ttl_seconds,
    )


@pytest.fixture
def identity_cache() -> tuple[ManualClock, IdentityCache]:
    clock = ManualClock()
    verifier = Verifier(PEPPER, ttl_seconds=1.0, clock=clock)
    cache = IdentityCache(
        verifier, ttl_seconds=1.0, trusted_seconds=60.0, monotonic=clock.monotonic
    )
    return clock, cache


def test_a_lapse_cuts_every_long_trusted_record_back_to_within_the_ttl(
    identity_cache: tuple[ManualClock, IdentityCache],
) -> None:
    from tenantgate.keys import generate_key

    clock, cache = identity_cache
    keys = [generate_key() for _ in range(40)]
    _ping_answered(cache.liveness)
    assert cache.liveness.live()
    for key in keys:
        _insert(cache, key, 60.0)
    clock.advance(0.5)
    assert all(cache.keys.verifier.verify(f"Bearer {k}") == k for k in keys)

    clock.advance(WINDOW_SECONDS)  # no pong since: the subscription may be missing changes
    cache.liveness.check()
    assert cache.liveness.losses == 1
    clock.advance(1.0)
    missed = [k for k in keys if cache.keys.verifier.verify(f"Bearer {k}") != k]
    assert missed == keys, "every record trusted on the lapsed proof is looked up again"
