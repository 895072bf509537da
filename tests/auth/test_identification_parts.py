"""The parts of identification, each on its own, without servers: what a handler receives,
the one 403 and where rate-limit headers go, custom domains and plans with one writer each,
and one lookup per missed key at a time."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import pytest
from auth_helpers import FORBIDDEN
from litestar import Litestar, get
from litestar.testing import TestClient

from tenantgate.errors import ServiceUnavailableError, TenantGoneError
from tenantgate.http.problems import DEFAULT_EXCEPTION_HANDLERS
from tenantgate.http.request_id import RequestIdMiddleware, attach_request_id
from tenantgate.identity import (
    IdentityCache,
    KeyRecord,
    PlanRecord,
    TenantIdentificationMiddleware,
    TenantIdentity,
)
from tenantgate.identity.domains import Domains
from tenantgate.identity.hsm_keys import bearer_key
from tenantgate.identity.key_cache import KeyCache
from tenantgate.identity.plans import Plans
from tenantgate.identity.source import HsmCandidate
from tenantgate.keys import Miss, Verifier, generate_key
from tenantgate.limits import Limiter

pytestmark = pytest.mark.anyio

PEPPER = b"identification-parts-pepper-0123456789"
RATE_LIMIT_HEADERS = {
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
    "ratelimit-policy",
    "ratelimit",
}


def _record(tenant_id: uuid.UUID | None = None, plan: str = "pro", **fields: Any) -> KeyRecord:
    values: dict[str, Any] = {
        "key_id": uuid.uuid4(),
        "key_status": "active",
        "expires_at": None,
        "tenant_id": tenant_id or uuid.uuid4(),
        "tenant_name": "acme",
        "tenant_status": "active",
        "plan": plan,
        "tier": "standard",
        "rate_per_second": 100.0,
        "burst": 200,
    }
    return KeyRecord(**(values | fields))


@dataclasses.dataclass
class FakeSource:
    """An IdentitySource held in memory; counts key lookups."""

    keys: dict[bytes, KeyRecord] = dataclasses.field(default_factory=dict)
    plans: list[PlanRecord] = dataclasses.field(default_factory=list)
    domains: dict[str, uuid.UUID] = dataclasses.field(default_factory=dict)
    used: list[uuid.UUID] = dataclasses.field(default_factory=list)
    lookups: int = 0

    def add_key(self, record: KeyRecord) -> str:
        key = generate_key()
        self.keys[Verifier(PEPPER).hash(key)] = record
        return key

    async def find_key(self, digest: bytes) -> KeyRecord | None:
        self.lookups += 1
        return self.keys.get(digest)

    async def find_hsm_candidates(self, display_prefix: str) -> Sequence[HsmCandidate]:
        return []  # no HSM keys here

    async def mark_used(self, key_ids: Sequence[uuid.UUID]) -> None:
        self.used.extend(key_ids)

    async def load_plans(self) -> Sequence[PlanRecord]:
        return list(self.plans)

    async def load_custom_domains(self) -> Mapping[str, uuid.UUID]:
        return dict(self.domains)


class Stalled:
    """A loader whose first call reads the source at once and answers only when released:
    a refresh that read the state just before a change and is slow to apply it."""

    def __init__(self, read: Callable[[], Any]) -> None:
        self._read = read
        self.release = asyncio.Event()
        self.first_read = asyncio.Event()
        self.calls = 0

    async def __call__(self) -> Any:
        self.calls += 1
        snapshot = self._read()
        if self.calls == 1:
            self.first_read.set()
            await self.release.wait()
        return snapshot


# -- what handlers receive -----------------------------------------------------------------


def test_the_identity_handlers_receive_is_the_tenant_and_its_key() -> None:
    names = {field.name for field in dataclasses.fields(TenantIdentity)}

    assert names == {"tenant_id", "key_id", "name", "plan", "tier", "names", "redis_database"}


# -- the one 403, and where rate-limit headers go --------------------------------------------


@get("/ok", sync_to_thread=False)
def _ok() -> dict[str, str]:
    return {"ok": "yes"}


@get("/gone", sync_to_thread=False)
def _gone() -> None:
    raise TenantGoneError("deleted elsewhere")


def _app(source: FakeSource) -> Litestar:
    """The tenant middleware and tenantgate's exception handlers over ``source``."""
    identity = IdentityCache(Verifier(PEPPER, ttl_seconds=60.0))
    return Litestar(
        route_handlers=[_ok, _gone],
        middleware=[
            RequestIdMiddleware(),
            TenantIdentificationMiddleware(identity.keys, Limiter(), identity.domains),
        ],
        exception_handlers=DEFAULT_EXCEPTION_HANDLERS,
        before_send=[attach_request_id],
        lifespan=[lambda app: identity.serving(source)],
    )


def _headers(answer: Any) -> list[tuple[str, str]]:
    """Every header as (name, value), the request id's value left out."""
    return sorted(
        (name.lower(), "" if name.lower() == "x-request-id" else value)
        for name, value in answer.headers.multi_items()
    )


def test_a_tenant_gone_inside_a_route_gets_the_very_403_of_a_refused_key() -> None:
    source = FakeSource()
    key = source.add_key(_record())
    with TestClient(_app(source)) as client:
        ok = client.get("/ok", headers={"Authorization": f"Bearer {key}"})
        gone = client.get("/gone", headers={"Authorization": f"Bearer {key}"})
        refused = client.get("/gone", headers={"Authorization": f"Bearer {generate_key()}"})

    assert set(ok.headers) >= RATE_LIMIT_HEADERS  # the key was identified and charged
    assert gone.status_code == refused.status_code == 403
    assert gone.content == refused.content == FORBIDDEN
    assert _headers(gone) == _headers(refused)
    assert not RATE_LIMIT_HEADERS & set(gone.headers)


def test_a_refused_request_is_not_charged_and_an_empty_bucket_is_a_429() -> None:
    source = FakeSource()
    key = source.add_key(_record(rate_per_second=0.001, burst=2))
    with TestClient(_app(source)) as client:
        answers = [client.get("/ok", headers={"Authorization": f"Bearer {key}"}) for _ in range(3)]

    assert [a.status_code for a in answers] == [200, 200, 429]
    assert int(answers[2].headers["retry-after"]) >= 1
    assert answers[2].headers["ratelimit-remaining"] == "0"


# -- custom domains: one writer ------------------------------------------------------------


async def test_a_reload_that_read_before_a_change_never_applies_after_it() -> None:
    verifier = Verifier(PEPPER)
    truth: dict[str, uuid.UUID] = {}
    load = Stalled(lambda: dict(truth))
    domains = Domains(verifier, load)
    owner = uuid.uuid4()

    refresh = asyncio.create_task(domains.reload())  # reads "no domains", then stalls
    await load.first_read.wait()
    truth["api.acme.example"] = owner  # the operator's change is stored
    after_change = asyncio.create_task(domains.reload())  # what the admin use case awaits
    await asyncio.sleep(0.01)
    load.release.set()
    await asyncio.gather(refresh, after_change)

    assert domains.tenant_of("api.acme.example") == owner


async def test_the_verifier_holds_exactly_the_domains_of_the_last_reload() -> None:
    verifier = Verifier(PEPPER, ttl_seconds=60.0)
    source = FakeSource()
    owner, other = uuid.uuid4(), uuid.uuid4()
    key = generate_key()
    verifier.insert(
        verifier.hash(key),
        tenant_id=str(other),
        key_id=str(uuid.uuid4()),
        expires_at=None,
        usable=True,
        payload="other",
    )
    domains = Domains(verifier, source.load_custom_domains)
    authorization = f"Bearer {key}"

    source.domains = {"a.example": owner, "b.example": owner}
    await domains.reload()
    assert verifier.verify(authorization, "a.example") is None
    assert verifier.verify(authorization, "b.example") is None

    source.domains = {"b.example": other}
    await domains.reload()
    assert verifier.verify(authorization, "a.example") == "other"
    assert verifier.verify(authorization, "b.example") == "other"


# -- plans: one writer ---------------------------------------------------------------------


async def test_a_plan_reload_that_read_before_a_change_never_applies_after_it() -> None:
    truth = {"pro": PlanRecord("pro", 100.0, 200)}
    load = Stalled(lambda: list(truth.values()))
    plans = Plans(load)
    quota = plans.quota(truth["pro"])

    refresh = asyncio.create_task(plans.reload())
    await load.first_read.wait()
    truth["pro"] = PlanRecord("pro", 1000.0, 2000)
    after_change = asyncio.create_task(plans.reload())
    await asyncio.sleep(0.01)
    load.release.set()
    await asyncio.gather(refresh, after_change)

    assert (quota.rate_per_second, quota.burst) == (1000.0, 2000)


async def test_a_key_lookup_never_changes_a_known_plans_limits() -> None:
    source = FakeSource(plans=[PlanRecord("pro", 1000.0, 2000)])
    plans = Plans(source.load_plans)
    await plans.reload()
    # A key lookup that read the plan's limits before they changed.
    quota = plans.quota(PlanRecord("pro", 100.0, 200))

    assert (quota.rate_per_second, quota.burst) == (1000.0, 2000)
    assert plans.quota(PlanRecord("pro", 1.0, 1)) is quota


# -- key cache: one lookup per missed key at a time ----------------------------------------


def _key_cache(lookup: Callable[[bytes], Awaitable[KeyRecord | None]]) -> KeyCache:
    return KeyCache(Verifier(PEPPER, ttl_seconds=60.0), Plans(FakeSource().load_plans), lookup)


async def test_concurrent_misses_for_one_key_share_one_lookup() -> None:
    record = _record()
    source = FakeSource()
    key = source.add_key(record)
    release = asyncio.Event()

    async def slow_lookup(digest: bytes) -> KeyRecord | None:
        await release.wait()
        return await source.find_key(digest)

    keys = _key_cache(slow_lookup)
    miss = keys.verifier.verify(f"Bearer {key}")
    waiting = [asyncio.create_task(keys.resolve(miss)) for _ in range(10)]  # type: ignore[arg-type]
    await asyncio.sleep(0.01)
    release.set()
    await asyncio.gather(*waiting)

    assert source.lookups == 1
    entry: Any = keys.verifier.verify(f"Bearer {key}")
    assert entry.identity.tenant_id == record.tenant_id
    assert entry.identity.key_id == record.key_id


@pytest.mark.parametrize(
    ("live", "change_during_lookup", "trusted"),
    [(True, False, True), (False, False, False), (True, True, False)],
    ids=["live", "not-live", "changed-during-lookup"],
)
async def test_records_are_trusted_long_only_while_live_and_nothing_changed_meanwhile(
    live: bool, change_during_lookup: bool, trusted: bool
) -> None:
    """A record read while an announcement landed may predate that change: it gets the TTL."""
    from tenantgate._native import ManualClock

    clock = ManualClock()
    source = FakeSource()
    key = source.add_key(_record())

    async def lookup(digest: bytes) -> KeyRecord | None:
        record = await source.find_key(digest)
        if change_during_lookup:
            keys.forget_key(uuid.uuid4())  # any key's announcement, applied meanwhile
        return record

    keys = KeyCache(
        Verifier(PEPPER, ttl_seconds=1.0, clock=clock),
        Plans(FakeSource().load_plans),
        lookup,
        ttl_seconds=1.0,
        trusted_seconds=60.0,
        live=lambda: live,
    )
    miss = keys.verifier.verify(f"Bearer {key}")
    assert isinstance(miss, Miss)
    await keys.resolve(miss)
    clock.advance(30.0)
    hit = not isinstance(keys.verifier.verify(f"Bearer {key}"), Miss)
    assert hit is trusted
    assert keys.trusted_inserts == int(trusted)


async def test_a_failed_lookup_fails_every_waiter_and_the_next_miss_looks_up_again() -> None:
    source = FakeSource()
    key = source.add_key(_record())
    failures = 1
    release = asyncio.Event()

    async def flaky_lookup(digest: bytes) -> KeyRecord | None:
        nonlocal failures
        await release.wait()
        if failures:
            failures -= 1
            raise ServiceUnavailableError("postgres")
        return await source.find_key(digest)

    keys = _key_cache(flaky_lookup)
    miss: Any = keys.verifier.verify(f"Bearer {key}")
    waiting = [asyncio.create_task(keys.resolve(miss)) for _ in range(3)]
    await asyncio.sleep(0.01)
    release.set()
    outcomes = await asyncio.gather(*waiting, return_exceptions=True)

    assert all(isinstance(outcome, ServiceUnavailableError) for outcome in outcomes)
    await keys.resolve(miss)
    assert source.lookups == 1
    assert keys.verifier.verify(f"Bearer {key}") is not None


async def test_an_unknown_key_is_cached_as_a_refusal() -> None:
    source = FakeSource()
    keys = _key_cache(source.find_key)
    key = generate_key()

    miss: Any = keys.verifier.verify(f"Bearer {key}")
    await keys.resolve(miss)

    assert keys.verifier.verify(f"Bearer {key}") is None
    assert source.lookups == 1


async def test_a_waiter_gone_away_does_not_cancel_the_lookup_of_the_others() -> None:
    record = _record()
    source = FakeSource()
    key = source.add_key(record)
    release = asyncio.Event()

    async def slow_lookup(digest: bytes) -> KeyRecord | None:
        await release.wait()
        return await source.find_key(digest)

    keys = _key_cache(slow_lookup)
    miss: Any = keys.verifier.verify(f"Bearer {key}")
    first = asyncio.create_task(keys.resolve(miss))  # starts the lookup
    await asyncio.sleep(0.01)
    others = [asyncio.create_task(keys.resolve(miss)) for _ in range(3)]
    await asyncio.sleep(0.01)
    first.cancel()  # its client went away
    await asyncio.sleep(0.01)
    release.set()

    await asyncio.gather(*others)
    assert first.cancelled()
    assert source.lookups == 1
    entry: Any = keys.verifier.verify(f"Bearer {key}")
    assert entry.identity.key_id == record.key_id


async def test_only_usable_keys_are_recorded_as_used_and_only_once_per_lookup() -> None:
    source = FakeSource()
    usable, revoked = _record(), _record(key_status="revoked")
    usable_key, revoked_key = source.add_key(usable), source.add_key(revoked)
    keys = _key_cache(source.find_key)
    for key in (usable_key, revoked_key, generate_key()):
        miss: Any = keys.verifier.verify(f"Bearer {key}")
        await keys.resolve(miss)
        keys.verifier.verify(f"Bearer {key}")  # hits record nothing

    assert keys.take_used() == [usable.key_id]
    assert keys.take_used() == []


@pytest.mark.parametrize(
    "template",
    [
        b"Bearer %s",
        b"bearer %s",
        b"BEARER\t%s",
        b"Bearer  \t %s \t\r\n",
        b"Bearer%s",
        b"Basic %s",
        b"Bearer %s extra",
        b" Bearer %s",
        b"Bearer \xff%s",
    ],
)
def test_the_hsm_path_reads_the_key_as_the_native_parser_does(template: bytes) -> None:
    # An HSM key is found by the key itself, re-read from the header in Python on a miss:
    # that must be the key the native call hashed, exactly when it hashed one.
    key = generate_key()
    header = template % key.encode()
    native_hashed_it = type(Verifier(PEPPER).verify(header, None)) is Miss
    assert (bearer_key(header) == key) is native_hashed_it


def test_a_record_gone_before_the_second_native_call_is_looked_up_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a loaded machine the loop can come back to a request after its freshly cached
    record's lifetime: the key is looked up again rather than refused."""
    from tenantgate.clock import ManualClock

    clock = ManualClock()
    source = FakeSource()
    key = source.add_key(_record())
    identity = IdentityCache(Verifier(PEPPER, ttl_seconds=1.0, clock=clock))
    starve_once = [True]
    cache = KeyCache._cache

    def cache_then_starve(self: KeyCache, *args: Any, **kwargs: Any) -> None:
        cache(self, *args, **kwargs)
        if starve_once:
            starve_once.pop()
            clock.advance(2.0)  # the record expires before the middleware looks again

    monkeypatch.setattr(KeyCache, "_cache", cache_then_starve)
    app = Litestar(
        route_handlers=[_ok],
        middleware=[TenantIdentificationMiddleware(identity.keys, Limiter(), identity.domains)],
        exception_handlers=DEFAULT_EXCEPTION_HANDLERS,
        lifespan=[lambda app: identity.serving(source)],
    )
    with TestClient(app) as client:
        answer = client.get("/ok", headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 200, answer.text
    assert source.lookups == 2
