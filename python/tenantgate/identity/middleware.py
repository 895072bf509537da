"""The ASGI middleware that ties each tenant request to exactly one tenant.

It runs before any route code and before the body is read. One native call
(`Verifier.verify_and_acquire`) parses the `Authorization` header, checks the key's checksum,
hashes it, finds it in the key cache, checks status, expiry and custom-domain binding, and takes
a token from the tenant's bucket. A key restricted by scope or network answers `Restricted`
instead, having charged nothing: the call is made again with the route's scope bit and the
request's source address, which the native record checks before it charges (so those two are
worked out only for such keys, and the unrestricted key's path is as it was). On a `Miss` the
key cache looks the key up and the call is made again — unless the request's source address
is braked for failed identifications (:mod:`tenantgate.identity.brake`). In the ``cluster``
rate-limit scope, a request the host tier allowed then spends a token leased from the
tenant's budget across instances (:mod:`tenantgate.cluster_limits`). Every refusal, whatever
its reason, is the one 403 — also for a request with two ``Authorization`` or two ``Host``
headers, or none of the latter where custom domains are bound; an empty bucket is the 429;
every other response carries the rate-limit headers.

The caller's `TenantIdentity` is then on `scope["state"]["tenant"]` and in the `current_tenant`
context variable (asyncio's AsyncLocalStorage), reset when the request ends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Self

from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware

from tenantgate.identity.brake import GuessingBrake, source_address
from tenantgate.identity.context import current_tenant
from tenantgate.identity.responses import (
    ClusterRefusal,
    rate_limit_headers,
    send_forbidden,
    send_too_many_requests,
    with_rate_limit_headers,
)
from tenantgate.keys import Miss, Restricted
from tenantgate.limits import Decision
from tenantgate.scopes import KEY_SCOPES_STATE_KEY, SCOPE_OPT, scope_bit

if TYPE_CHECKING:
    from collections.abc import Sequence
    from ipaddress import IPv4Network, IPv6Network

    from litestar.types import ASGIApp, Receive, Scope, Send

    from tenantgate.cluster_limits import ClusterBudget
    from tenantgate.identity.domains import Domains
    from tenantgate.identity.key_cache import KeyCache, KeyEntry
    from tenantgate.identity.responses import RateDecision
    from tenantgate.limits import Limiter

__all__ = ["REFUSAL_STATE_KEY", "TenantIdentificationMiddleware"]

REFUSAL_STATE_KEY = "tenantgate_refusal"
"""Why an identified key was refused (its scopes or networks): ``scope["state"]``, for the
operator's audit record; the client gets the one 403 and no reason."""

# Bound once: CPython 3.11 compiles `current_tenant.set(...)` on an imported name as a module
# attribute access, which is never specialised (two generic lookups per request).
_set_current_tenant = current_tenant.set
_reset_current_tenant = current_tenant.reset


class TenantIdentificationMiddleware(ASGIMiddleware):
    """Ties each request to exactly one tenant and charges its bucket, or refuses it."""

    scopes = (ScopeType.HTTP,)

    def __init__(
        self,
        keys: KeyCache,
        limiter: Limiter,
        domains: Domains,
        brake: GuessingBrake | None = None,
        trusted_proxies: Sequence[IPv4Network | IPv6Network] = (),
        cluster: ClusterBudget | None = None,
    ) -> None:
        self._keys = keys
        self._verifier = keys.verifier
        self._limiter = limiter
        self._domains = domains
        self._brake = brake if brake is not None else GuessingBrake()
        self._trusted_proxies = tuple(trusted_proxies)
        self._cluster = cluster

    def __deepcopy__(self, memo: dict[int, object]) -> Self:
        # Litestar deep-copies routers on registration; this middleware must stay shared
        # (it holds the instance's caches).
        return self

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        authorization = host = None
        ambiguous = False
        for name, value in scope["headers"]:
            if name == b"authorization":
                ambiguous |= authorization is not None
                authorization = value
            elif name == b"host":
                ambiguous |= host is not None
                host = value
        # Two credentials or two hosts: a proxy may act on one and we on the other, so the
        # request means nothing certain. No host (granian gives HTTP/1.0 without one an empty
        # `host`) where custom domains exist: the domain's binding could not be checked.
        if ambiguous or (not host and self._domains.any_bound):
            await send_forbidden(send)
            return
        verifier, limiter = self._verifier, self._limiter
        # One native call identifies the key and takes a token from its tenant's bucket.
        decision = verifier.verify_and_acquire(authorization, host, limiter)
        if type(decision) is Miss:
            # Only a key this instance does not know costs a lookup, and only keys not known
            # to be good meet the brake: a customer's key from a braked address (a NAT shared
            # with a guesser) keeps working after its record expires.
            address = source_address(scope, self._trusted_proxies)
            if not self._keys.known_good(decision.digest) and self._brake.holds(address):
                await send_forbidden(send)
                return
            await self._keys.resolve(decision, authorization)
            decision = verifier.verify_and_acquire(authorization, host, limiter)
            if type(decision) is Miss:
                # The record it just cached is gone already: the loop was starved past the
                # record's lifetime (seen on a loaded machine as a 403 for a valid key).
                await self._keys.resolve(decision, authorization)
                decision = verifier.verify_and_acquire(authorization, host, limiter)
            if decision is None:
                self._brake.failed(address)
        if type(decision) is Restricted:
            # A key restricted by scope or network: the first call lacked the route's scope
            # and the source address (worked out only for such keys); the second checks them
            # and charges the bucket only if they pass.
            handler = scope.get("route_handler")
            required = handler.opt.get(SCOPE_OPT) if handler is not None else None
            address = source_address(scope, self._trusted_proxies)
            needed = scope_bit(required)
            decision = verifier.verify_and_acquire(authorization, host, limiter, 1, needed, address)
            if type(decision) is Miss:  # the record expired between the two calls
                await self._keys.resolve(decision, authorization)
                decision = verifier.verify_and_acquire(
                    authorization, host, limiter, 1, needed, address
                )
            if type(decision) is Restricted and decision.check is not None:
                refused: KeyEntry = decision.payload  # type: ignore[assignment]
                check = decision.check
                scope["state"][REFUSAL_STATE_KEY] = {  # for the operator's audit record only
                    "refused": f"scope {required}" if check == "scope" else check,
                    "tenant_id": str(refused.identity.tenant_id),
                    "key_id": str(refused.identity.key_id),
                }
        if type(decision) is not Decision:
            await send_forbidden(send)
            return
        entry: KeyEntry = decision.payload  # type: ignore[assignment]
        allowed = decision.allowed
        rendered: RateDecision = decision
        cluster = self._cluster
        if allowed and cluster is not None and not cluster.spend_held(entry.bucket, entry.quota):
            # The host tier allowed it; the tenant's budget across instances may not.
            retry_after = await cluster.admit(entry.bucket, entry.quota, entry.identity.plan)
            if retry_after is not None:
                allowed = False
                rendered = ClusterRefusal(
                    decision.limit, 0, max(decision.reset_after, retry_after), retry_after
                )
        entry.counts[allowed] += 1
        headers = rate_limit_headers(rendered, entry.policy_name, entry.quota.rate_per_second)
        if entry.sunset_headers:
            headers += entry.sunset_headers
        if not allowed:
            await send_too_many_requests(send, rendered, headers)
            return
        identity = entry.identity
        scope["state"]["tenant"] = identity
        if entry.scopes is not None:
            scope["state"][KEY_SCOPES_STATE_KEY] = entry.scopes
        token = _set_current_tenant(identity)
        try:
            await next_app(scope, receive, with_rate_limit_headers(send, headers))
        finally:
            _reset_current_tenant(token)
