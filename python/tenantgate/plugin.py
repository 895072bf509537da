"""The Litestar plugin that makes an application a tenantgate service.

``TenantGatePlugin(settings)`` only wires; the pieces live in their own modules:

- a lifespan that opens the backing services' clients (:mod:`tenantgate.resources`) at
  start-up, keeps them on ``app.state`` and closes them at shutdown, and meanwhile seals the
  audit chains every ``TENANTGATE_AUDIT_SEAL_INTERVAL_SECONDS`` (:mod:`tenantgate.audit.seal`;
  the ``audit_signer`` argument signs the seals, by default the HSM's seal key when an HSM is
  configured: :mod:`tenantgate.audit.seal_signer`);
- the dependencies ``resources`` (:class:`~tenantgate.resources.Resources`), ``admin``
  and ``sealer`` (:class:`~tenantgate.audit.seal.AuditSealer`), and for tenant
  routes ``tenant``, ``db`` (a tenant transaction), ``cache`` (the tenant's
  :class:`~tenantgate.cache.TenantCache`) and ``storage`` (the tenant's
  :class:`~tenantgate.storage.TenantStorage`, signing as the tenant);
- middleware, outermost first: request id, metrics, audit (tenant identification and rate
  limiting come after these, right in front of the routes);
- the ``X-Request-ID`` header on every response (a ``before_send`` hook);
- routing errors (404, 405) under the tenant and admin API prefixes answered with the one 403
  to callers without valid credentials (:mod:`tenantgate.http.routing_refusal`, which wraps
  the app's ASGI handler while the app runs);
- problem+json exception handlers for every error, each one installed only where the
  application has none of its own for that exception type;
- the application's request body limit, from :attr:`LimitsSettings.max_body_bytes
  <tenantgate.settings.LimitsSettings.max_body_bytes>` (routes may set their own).

Routes stay the application's choice: add :data:`tenantgate.routes.SERVICE_ROUTES` for
``/healthz``, ``/readyz`` and ``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final

from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.plugins import InitPluginProtocol

from tenantgate.audit import AuditWriter
from tenantgate.audit.middleware import AuditMiddleware
from tenantgate.audit.seal import AuditSealer, SealCounts, Signer
from tenantgate.audit.seal_signer import HsmSealSigner
from tenantgate.cache import TenantCache
from tenantgate.cache.announcements import Announcer, listen
from tenantgate.cache.client import open_redis
from tenantgate.cluster_limits import ClusterBudget
from tenantgate.db.identity_source import PostgresIdentitySource
from tenantgate.db.types import Connection
from tenantgate.errors import ServiceUnavailableError
from tenantgate.host_limits import open_limiter
from tenantgate.hsm import Hsm
from tenantgate.http.admin_auth import AdminAuthMiddleware
from tenantgate.http.metrics import (
    METRICS_STATE_KEY,
    AuditCollector,
    FrontDoorCollector,
    MetricsMiddleware,
    ServiceMetrics,
)
from tenantgate.http.problems import DEFAULT_EXCEPTION_HANDLERS
from tenantgate.http.request_id import RequestIdMiddleware, attach_request_id
from tenantgate.http.routing_refusal import RoutingRefusal
from tenantgate.identity import IdentityCache, TenantIdentificationMiddleware, TenantIdentity
from tenantgate.identity.brake import GuessingBrake
from tenantgate.keys import KeyHasher, Verifier
from tenantgate.resources import Resources, open_resources
from tenantgate.settings import Settings
from tenantgate.storage import StorageService, TenantStorage, open_storage
from tenantgate.tenancy.admin import AdminService
from tenantgate.tenancy.keyring import KeyIssuer
from tenantgate.tenancy.provisioning import Provisioner
from tenantgate.tenancy.steps import service_steps

if TYPE_CHECKING:
    from collections.abc import Sequence

    from litestar import Litestar, Request
    from litestar.config.app import AppConfig
    from litestar.middleware import ASGIMiddleware

__all__ = [
    "ADMIN_STATE_KEY",
    "RESOURCES_STATE_KEY",
    "SEALER_STATE_KEY",
    "SETTINGS_STATE_KEY",
    "STORAGE_STATE_KEY",
    "TenantGatePlugin",
    "provide_resources",
]

RESOURCES_STATE_KEY: Final = "tenantgate_resources"
"""The key of the running application's :class:`Resources` in ``app.state``."""

SETTINGS_STATE_KEY: Final = "tenantgate_settings"
"""The key of the application's :class:`Settings` in ``app.state``."""

STORAGE_STATE_KEY: Final = "tenantgate_storage"
"""The key of the running application's :class:`StorageService` in ``app.state``."""

ADMIN_STATE_KEY: Final = "tenantgate_admin"
"""The key of the running application's :class:`AdminService` in ``app.state``."""

SEALER_STATE_KEY: Final = "tenantgate_sealer"
"""The key of the running application's :class:`AuditSealer` in ``app.state``."""

_logger = logging.getLogger("tenantgate")

KEY_CACHE_TTL_SECONDS: Final = 1.0
"""How long a key record is trusted without asking PostgreSQL when this instance cannot prove
it hears every announced change: the bound on how late a revocation made through another
instance is seen without Redis (``TENANTGATE_KEY_CACHE_TRUSTED_SECONDS`` applies while it can)."""


def provide_resources(state: State) -> Resources:
    """Dependency provider of the application's :class:`Resources`."""
    resources: Resources = state[RESOURCES_STATE_KEY]
    return resources


def provide_admin(state: State) -> AdminService:
    """Dependency provider of the operator's use cases."""
    admin: AdminService = state[ADMIN_STATE_KEY]
    return admin


def provide_sealer(state: State) -> AuditSealer:
    """Dependency provider of the audit sealer (seals, and reads them back for verifying)."""
    sealer: AuditSealer = state[SEALER_STATE_KEY]
    return sealer


def provide_tenant(
    request: Request[object, object, State], resources: NamedDependency[Resources]
) -> TenantIdentity:
    """Dependency provider of the caller's tenant (set by the identification middleware).

    ``resources`` is not used: asking for it makes Litestar resolve ``resources`` first and
    then ``tenant``, one at a time. Dependencies that do not depend on each other are resolved
    concurrently, in an anyio task group — which cost 8 % of the CPU of a cached item read
    (profiled with py-spy) to save nothing, since both are a dictionary lookup.
    """
    del resources
    tenant = request.scope["state"].get("tenant")
    if not isinstance(tenant, TenantIdentity):
        raise RuntimeError("this route is not behind TenantGatePlugin.tenant_middleware")
    return tenant


async def provide_tenant_db(
    tenant: NamedDependency[TenantIdentity], resources: NamedDependency[Resources]
) -> AsyncIterator[Connection]:
    """Dependency provider of a connection inside a transaction acting as the tenant."""
    # The handler's own errors must come back out of this generator unchanged (Litestar's
    # dependency clean-up); the exception handlers translate them.
    async with resources.database.transaction(tenant.names, translate_errors=False) as connection:
        yield connection


def provide_tenant_cache(
    tenant: NamedDependency[TenantIdentity], resources: NamedDependency[Resources]
) -> TenantCache:
    """Dependency provider of the caller's cache (commands run as the tenant's Redis user)."""
    return TenantCache.of(resources.tenant_redis, tenant)


async def provide_tenant_storage(
    tenant: NamedDependency[TenantIdentity], state: State
) -> TenantStorage:
    """Dependency provider of the caller's :class:`TenantStorage` (its files only)."""
    storage: StorageService = state[STORAGE_STATE_KEY]
    return await storage.for_tenant(tenant.names, tenant.tier)


async def _repair_left_overs(provisioner: Provisioner) -> None:
    """At start-up, remove tenants a crashed process left part-way (in the background: the
    service serves meanwhile, and an unreachable PostgreSQL only postpones it)."""
    try:
        report = await provisioner.repair()
    except ServiceUnavailableError:
        _logger.warning("PostgreSQL unavailable: unfinished tenants are repaired next start")
    except Exception:
        _logger.exception("repairing unfinished tenants failed")
    else:
        if report.removed:
            _logger.info("removed %d tenants left part-way by a crash", len(report.removed))


async def _open_hsm(hsm: Hsm | None) -> None:
    """At start-up, open the HSM's session (in the background: a failing HSM is logged and
    tried again by the first HSM key; nothing else needs it)."""
    if hsm is None:
        return
    try:
        await asyncio.get_running_loop().run_in_executor(None, hsm.ensure_key)
    except ServiceUnavailableError:
        pass  # logged by the HSM room, with the reason
    else:
        _logger.info("HSM token %r ready", hsm.settings.token_label)


class TenantGatePlugin(InitPluginProtocol):
    """Wire tenantgate's lifespan, dependencies, middleware and error handling into an app."""

    __slots__ = (
        "admin_path_prefixes",
        "announcer",
        "audit",
        "audit_signer",
        "brake",
        "cluster",
        "hsm",
        "identity",
        "issuer",
        "limiter",
        "metrics",
        "seal_counts",
        "settings",
        "tenant_path_prefixes",
    )

    def __init__(
        self,
        settings: Settings,
        *,
        key_cache_ttl_seconds: float = KEY_CACHE_TTL_SECONDS,
        tenant_path_prefixes: Sequence[str] = ("/v1/",),
        admin_path_prefixes: Sequence[str] = ("/admin/",),
        audit_signer: Signer | None = None,
    ) -> None:
        self.settings = settings
        if audit_signer is None and settings.hsm is not None:
            audit_signer = HsmSealSigner(settings.hsm)
        self.audit_signer = audit_signer
        """Signs each audit seal's digest: the one given, else with an HSM configured the
        token's seal key (which ``audit verify`` then checks); ``None``: seals are unsigned."""
        self.tenant_path_prefixes = tuple(tenant_path_prefixes)
        """Where the tenant API is mounted: a routing error (404, 405) under these answers
        the 403 to a caller without a valid key."""
        self.admin_path_prefixes = tuple(admin_path_prefixes)
        """Where the admin API is mounted: the same, for a caller without the admin token."""
        """The configuration the application serves with."""
        self.metrics = ServiceMetrics()
        """This application's metrics registry and collectors."""
        pepper = settings.security.key_pepper
        self.hsm = Hsm(settings.hsm) if settings.hsm is not None else None
        """The PKCS#11 token of HSM keys (None when none is configured); opened on first use."""
        self.identity = IdentityCache(
            Verifier(pepper, ttl_seconds=key_cache_ttl_seconds),
            hsm=self.hsm,
            ttl_seconds=key_cache_ttl_seconds,
            trusted_seconds=settings.key_cache.trusted_seconds,
        )
        """What this instance knows of keys, plans and custom domains."""
        self.limiter = open_limiter(settings.limits)
        """The tenants' token buckets: the host's shared table under ``tenantgate serve``,
        else this process's own."""
        self.brake = GuessingBrake()
        """Failed identifications per source address (the brake on key guessing)."""
        limits = settings.limits
        self.cluster = (
            ClusterBudget(timeout_seconds=limits.ratelimit_redis_timeout_seconds)
            if limits.ratelimit_scope == "cluster"
            else None
        )
        """The tenants' budgets across instances (``TENANTGATE_RATELIMIT_SCOPE=cluster``)."""
        self.metrics.registry.register(
            FrontDoorCollector(self.identity.keys, self.brake, self.cluster, self.identity.liveness)
        )
        self.audit = AuditWriter()
        """Audit records of requests that change nothing in PostgreSQL themselves."""
        self.seal_counts = SealCounts()
        """Periodic seals that failed, across lifespans (for ``/metrics``)."""
        self.metrics.registry.register(AuditCollector(self.audit, self.seal_counts))
        self.issuer = KeyIssuer(KeyHasher(pepper), hsm=self.hsm)
        """Makes new API keys."""
        self.announcer: Announcer | None = None
        """Announces changes to the other instances (while the app runs)."""

    @property
    def tenant_middleware(self) -> list[ASGIMiddleware]:
        """Put this on a router (``middleware=``) to make its routes tenant routes: each
        request is identified by its API key, and handlers may ask for ``tenant``,
        ``db`` and ``cache``."""
        return [
            TenantIdentificationMiddleware(
                self.identity.keys,
                self.limiter,
                self.identity.domains,
                self.brake,
                self.settings.security.trusted_proxies,
                self.cluster,
            )
        ]

    @property
    def admin_middleware(self) -> list[ASGIMiddleware]:
        """Put this on the router of operator routes: the admin token, or the generic 403."""
        return [AdminAuthMiddleware(self.settings.security.admin_token)]

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        """Add tenantgate's wiring to ``app_config``; see the module's docstring."""
        app_config.lifespan.append(self._open_resources)
        app_config.state[SETTINGS_STATE_KEY] = self.settings
        app_config.state[METRICS_STATE_KEY] = self.metrics
        app_config.dependencies.setdefault(
            "resources", Provide(provide_resources, sync_to_thread=False)
        )
        app_config.dependencies.setdefault("admin", Provide(provide_admin, sync_to_thread=False))
        app_config.dependencies.setdefault("sealer", Provide(provide_sealer, sync_to_thread=False))
        app_config.dependencies.setdefault("tenant", Provide(provide_tenant, sync_to_thread=False))
        app_config.dependencies.setdefault("db", Provide(provide_tenant_db))
        app_config.dependencies.setdefault(
            "cache", Provide(provide_tenant_cache, sync_to_thread=False)
        )
        app_config.dependencies.setdefault("storage", Provide(provide_tenant_storage))
        app_config.signature_namespace.update(
            {
                "Resources": Resources,
                "AdminService": AdminService,
                "AuditSealer": AuditSealer,
                "TenantIdentity": TenantIdentity,
                "Connection": Connection,
                "TenantCache": TenantCache,
                "TenantStorage": TenantStorage,
            }
        )
        app_config.middleware[:0] = [
            RequestIdMiddleware(),
            MetricsMiddleware(self.metrics),
            AuditMiddleware(
                self.audit,
                tenant_prefixes=self.tenant_path_prefixes,
                admin_prefixes=self.admin_path_prefixes,
            ),
        ]
        app_config.before_send.append(attach_request_id)
        for exception_type, handler in DEFAULT_EXCEPTION_HANDLERS.items():
            app_config.exception_handlers.setdefault(exception_type, handler)
        return app_config

    @asynccontextmanager
    async def _leasing(self) -> AsyncIterator[None]:
        """In the cluster scope, the cluster tier's own Redis client: a short timeout (a slow
        Redis must not hold requests; the host tier decides meanwhile) and a few connections
        (a lease round trip is rare)."""
        cluster = self.cluster
        if cluster is None:
            yield
            return
        redis_settings = dataclasses.replace(
            self.settings.redis,
            timeout_seconds=self.settings.limits.ratelimit_redis_timeout_seconds,
            pool_max_size=4,
        )
        async with open_redis(redis_settings) as redis:
            cluster.attach(redis)
            try:
                yield
            finally:
                await cluster.close()

    @asynccontextmanager
    async def _open_resources(self, app: Litestar) -> AsyncIterator[None]:
        # Litestar 2.25 builds the app's layer from its constructor argument, not from the
        # AppConfig plugins see (litestar#4296), so the limit is set on the app itself;
        # handlers resolve it lazily, at their first request, after start-up.
        app.request_max_body_size = self.settings.limits.max_body_bytes
        routed = app.asgi_handler
        app.asgi_handler = RoutingRefusal(
            routed,
            keys=self.identity.keys,
            domains=self.identity.domains,
            brake=self.brake,
            trusted_proxies=self.settings.security.trusted_proxies,
            admin=AdminAuthMiddleware(self.settings.security.admin_token),
            tenant_prefixes=self.tenant_path_prefixes,
            admin_prefixes=self.admin_path_prefixes,
        )
        async with (
            open_resources(self.settings) as resources,
            open_storage(self.settings, resources.database) as storage,
        ):
            app.state[RESOURCES_STATE_KEY] = resources
            app.state[STORAGE_STATE_KEY] = storage
            provisioner = Provisioner(
                resources.database, service_steps(resources.redis, self.settings, storage)
            )
            app.state[ADMIN_STATE_KEY] = AdminService(
                resources.database, self.issuer, self.identity, provisioner
            )
            sealer = AuditSealer(
                resources.database,
                storage,
                self.settings.audit,
                signer=self.audit_signer,
                counts=self.seal_counts,
            )
            app.state[SEALER_STATE_KEY] = sealer
            repair = asyncio.create_task(_repair_left_overs(provisioner))
            hsm_opening = asyncio.create_task(_open_hsm(self.hsm))
            redis = resources.redis
            announcer = Announcer(redis)
            self.announcer = announcer
            self.identity.announce = announcer.announce
            listener = asyncio.create_task(
                listen(
                    redis,
                    self.identity.apply_announcement,
                    self.identity.forget_everything,
                    self.identity.liveness,
                )
            )
            resender = asyncio.create_task(announcer.resend_forever())
            try:
                async with (
                    self.audit.running(resources.database),
                    sealer.running(),
                    self.identity.serving(PostgresIdentitySource(resources.database)),
                    self._leasing(),
                ):
                    yield
            finally:
                self.identity.announce = None
                self.announcer = None
                if announcer.unsent:
                    _logger.warning(
                        "stopping with %d announcements Redis never took: other instances "
                        "apply them when their records expire",
                        announcer.unsent,
                    )
                for task in (repair, listener, resender, hsm_opening):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
                del app.state[ADMIN_STATE_KEY]
                del app.state[SEALER_STATE_KEY]
                del app.state[STORAGE_STATE_KEY]
                del app.state[RESOURCES_STATE_KEY]
                app.asgi_handler = routed
                if self.hsm is not None:
                    self.hsm.close()
                if isinstance(self.audit_signer, HsmSealSigner):
                    self.audit_signer.close()
