"""Who is calling: tenant identification for every request of the tenant API.

`TenantIdentificationMiddleware` runs before any route code and before the body is read. One
native call (`Verifier.verify`) parses the `Authorization` header, checks the key's checksum,
hashes it, finds it in the in-process table and checks status, expiry and custom-domain
binding. On a cache miss the key is looked up in PostgreSQL once (concurrent misses for the
same key share one lookup) and the answer — a record or a refusal — is cached. Every refusal,
whatever its reason, is the same 403.

The caller's `TenantIdentity` is then on `scope["state"]["tenant"]` and in the `current_tenant`
context variable (asyncio's AsyncLocalStorage), reset when the request ends.
"""

from __future__ import annotations

import asyncio
import logging
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Self
from uuid import UUID

from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware

from tenantgate.db.keys import find_key_by_hash
from tenantgate.db.translate import translate_driver_errors
from tenantgate.errors import ServiceUnavailableError
from tenantgate.keys import Miss, Verifier
from tenantgate.limits import Decision, Limiter, Quota
from tenantgate.naming import TenantNames
from tenantgate.ratelimit import rate_limit_headers, send_too_many_requests, with_rate_limit_headers

if TYPE_CHECKING:
    import asyncpg
    from litestar.types import ASGIApp, Receive, Scope, Send

__all__ = [
    "FORBIDDEN_BODY",
    "Directory",
    "TenantIdentificationMiddleware",
    "TenantIdentity",
    "current_tenant",
    "require_tenant",
    "send_forbidden",
]

FORBIDDEN_BODY = b'{"type":"about:blank","title":"Forbidden","status":403}'
_FORBIDDEN_HEADERS = (
    (b"content-type", b"application/problem+json"),
    (b"content-length", str(len(FORBIDDEN_BODY)).encode()),
)


async def send_forbidden(send: Send) -> None:
    """The one refusal: identical bytes and headers whatever the reason.

    Each call sends new message objects: whatever wraps ``send`` may change a message in place
    (the ``X-Request-ID`` hook appends to its header list), so a message shared between
    requests would carry every earlier request's additions into the next response.
    """
    await send({"type": "http.response.start", "status": 403, "headers": list(_FORBIDDEN_HEADERS)})
    await send({"type": "http.response.body", "body": FORBIDDEN_BODY, "more_body": False})


@dataclass(frozen=True, slots=True)
class TenantIdentity:
    """The authenticated caller: a tenant and the key it used."""

    tenant_id: UUID
    key_id: UUID
    name: str
    plan: str
    tier: str
    names: TenantNames
    quota: Quota
    policy_name: bytes
    """The plan's name as the rate-limit headers quote it, encoded once per lookup."""


current_tenant: ContextVar[TenantIdentity | None] = ContextVar("tenantgate_tenant", default=None)


def require_tenant() -> TenantIdentity:
    """The current request's tenant; fails closed (LookupError) outside a tenant request."""
    tenant = current_tenant.get()
    if tenant is None:
        raise LookupError("no tenant in this context")
    return tenant


_logger = logging.getLogger("tenantgate.identity")


class Directory:
    """What this instance knows of identities: the native key table, plan quotas, domains.

    Plans and custom domains are reloaded from PostgreSQL every second (`refresh`), so a change
    made through another instance applies here within a second; key records live in the
    verifier for `ttl_seconds` (1 s by default) for the same reason.
    """

    def __init__(self, verifier: Verifier, limiter: Limiter) -> None:
        self.verifier = verifier
        self.limiter = limiter
        self._quotas: dict[str, Quota] = {}
        self._domains: dict[str, UUID] = {}
        self._lookups: dict[bytes, asyncio.Future[None]] = {}
        self._pool: asyncpg.Pool | None = None

    def attach(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    def set_plan(self, name: str, rate_per_second: float, burst: int) -> Quota:
        """The plan's one shared Quota, created or updated in place (so every bucket on the
        plan sees a change on its next request)."""
        quota = self._quotas.get(name)
        if quota is None:
            quota = self._quotas[name] = Quota(rate_per_second, burst)
        elif (quota.rate_per_second, quota.burst) != (rate_per_second, burst):
            quota.update(rate_per_second, burst)
        return quota

    def bind_domain(self, domain: str, tenant_id: UUID) -> None:
        self._domains[domain] = tenant_id
        self.verifier.bind_domain(domain, str(tenant_id))

    def unbind_domain(self, domain: str) -> None:
        if self._domains.pop(domain, None) is not None:
            self.verifier.unbind_domain(domain)

    def forget_key(self, key_id: UUID) -> None:
        self.verifier.invalidate_key(str(key_id))

    def forget_tenant(self, tenant_id: UUID) -> None:
        self.verifier.invalidate_tenant(str(tenant_id))

    async def refresh(self) -> None:
        """Reload plans and custom domains from PostgreSQL."""
        pool = self._require_pool()
        with translate_driver_errors():
            plans = await pool.fetch("SELECT name, rate_per_second, burst FROM plans")
            domains = await pool.fetch(
                "SELECT custom_domain, id FROM tenants WHERE custom_domain IS NOT NULL"
            )
        for row in plans:
            self.set_plan(row["name"], row["rate_per_second"], row["burst"])
        wanted = {row["custom_domain"]: row["id"] for row in domains}
        for domain in self._domains.keys() - wanted.keys():
            self.unbind_domain(domain)
        for domain, tenant_id in wanted.items():
            if self._domains.get(domain) != tenant_id:
                self.bind_domain(domain, tenant_id)

    async def refresh_forever(self, interval_seconds: float = 1.0) -> None:
        """`refresh` every `interval_seconds` until cancelled; outages are waited out."""
        while True:
            try:
                await self.refresh()
            except ServiceUnavailableError:
                pass
            except Exception:
                _logger.exception("refreshing plans and domains failed")
            await asyncio.sleep(interval_seconds)

    async def resolve(self, miss: Miss) -> None:
        """Look a key up in PostgreSQL and cache the answer; one lookup per key at a time."""
        pending = self._lookups.get(miss.digest)
        if pending is not None:
            await asyncio.shield(pending)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._lookups[miss.digest] = future
        try:
            await self._lookup(miss.digest)
            future.set_result(None)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here, so an unawaited failure is not logged twice
            raise
        finally:
            del self._lookups[miss.digest]

    async def _lookup(self, digest: bytes) -> None:
        pool = self._require_pool()
        with translate_driver_errors():
            row = await find_key_by_hash(pool, digest)
        if row is None:
            self.verifier.insert_refusal(digest)
            return
        tenant_id: UUID = row["tenant_id"]
        identity = TenantIdentity(
            tenant_id=tenant_id,
            key_id=row["key_id"],
            name=row["name"],
            plan=row["plan"],
            tier=row["tier"],
            names=TenantNames.of(tenant_id),
            quota=self.set_plan(row["plan"], row["rate_per_second"], row["burst"]),
            policy_name=row["plan"].encode(),
        )
        expires_at = row["expires_at"]
        self.verifier.insert(
            digest,
            tenant_id=str(tenant_id),
            key_id=str(row["key_id"]),
            expires_at=expires_at.timestamp() if expires_at is not None else None,
            usable=row["key_status"] == "active" and row["tenant_status"] == "active",
            payload=identity,
            quota=identity.quota,
            bucket=str(tenant_id),
        )

    def _require_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("Directory used before the database pool was attached")
        return self._pool


class TenantIdentificationMiddleware(ASGIMiddleware):
    """Ties each request to exactly one tenant, or answers the one 403."""

    scopes = (ScopeType.HTTP,)

    def __init__(self, directory: Directory) -> None:
        self._directory = directory

    def __deepcopy__(self, memo: dict[int, object]) -> Self:
        # Litestar deep-copies routers on registration; this middleware must stay shared
        # (it holds the instance's caches, or a secret that need not be duplicated).
        return self

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        authorization = host = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"host":
                host = value
        verifier, limiter = self._directory.verifier, self._directory.limiter
        # One native call identifies the key and takes a token from its tenant's bucket.
        decision = verifier.verify_and_acquire(authorization, host, limiter)
        if type(decision) is Miss:
            await self._directory.resolve(decision)
            decision = verifier.verify_and_acquire(authorization, host, limiter)
        if type(decision) is not Decision:
            await send_forbidden(send)
            return
        identity: TenantIdentity = decision.payload  # type: ignore[assignment]
        headers = rate_limit_headers(decision, identity.policy_name, identity.quota.rate_per_second)
        if not decision.allowed:
            await send_too_many_requests(send, decision, headers)
            return
        scope["state"]["tenant"] = identity
        token = current_tenant.set(identity)
        try:
            await next_app(scope, receive, with_rate_limit_headers(send, headers))
        finally:
            current_tenant.reset(token)
