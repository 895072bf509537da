"""The Litestar plugin that makes an application a tenantgate service.

``TenantGatePlugin(settings)`` only wires; the pieces live in their own modules:

- a lifespan that opens the backing services' clients (:mod:`tenantgate.resources`) at
  start-up, keeps them on ``app.state`` and closes them at shutdown;
- the dependency ``resources`` (:class:`~tenantgate.resources.Resources`), and for tenant
  routes ``tenant``, ``db`` (a tenant transaction) and ``storage`` (the tenant's
  :class:`~tenantgate.storage.TenantStorage`, signing as the tenant);
- middleware, outermost first: request id, metrics (tenant identification and rate limiting
  come after these, right in front of the routes);
- the ``X-Request-ID`` header on every response (a ``before_send`` hook);
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
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final

from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.plugins import InitPluginProtocol

from tenantgate.db.identity_source import PostgresIdentitySource
from tenantgate.db.types import Connection
from tenantgate.errors import ServiceUnavailableError
from tenantgate.http.admin_auth import AdminAuthMiddleware
from tenantgate.http.metrics import METRICS_STATE_KEY, MetricsMiddleware, ServiceMetrics
from tenantgate.http.problems import DEFAULT_EXCEPTION_HANDLERS
from tenantgate.http.request_id import RequestIdMiddleware, attach_request_id
from tenantgate.identity import IdentityCache, TenantIdentificationMiddleware, TenantIdentity
from tenantgate.keys import KeyHasher, Verifier
from tenantgate.limits import Limiter
from tenantgate.resources import Resources, open_resources
from tenantgate.settings import Settings
from tenantgate.storage import StorageService, TenantStorage, open_storage
from tenantgate.tenancy.admin import AdminService
from tenantgate.tenancy.keyring import KeyIssuer
from tenantgate.tenancy.provisioning import Provisioner
from tenantgate.tenancy.steps import service_steps

if TYPE_CHECKING:
    from litestar import Litestar, Request
    from litestar.config.app import AppConfig
    from litestar.middleware import ASGIMiddleware

__all__ = [
    "ADMIN_STATE_KEY",
    "RESOURCES_STATE_KEY",
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

_logger = logging.getLogger("tenantgate")

KEY_CACHE_TTL_SECONDS: Final = 1.0
"""How long a key record is trusted without asking PostgreSQL: the bound on how late a
revocation made through another instance is seen."""


def provide_resources(state: State) -> Resources:
    """Dependency provider of the application's :class:`Resources`."""
    resources: Resources = state[RESOURCES_STATE_KEY]
    return resources


def provide_admin(state: State) -> AdminService:
    """Dependency provider of the operator's use cases."""
    admin: AdminService = state[ADMIN_STATE_KEY]
    return admin


def provide_tenant(request: Request[object, object, State]) -> TenantIdentity:
    """Dependency provider of the caller's tenant (set by the identification middleware)."""
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


class TenantGatePlugin(InitPluginProtocol):
    """Wire tenantgate's lifespan, dependencies, middleware and error handling into an app."""

    __slots__ = ("identity", "issuer", "limiter", "metrics", "settings")

    def __init__(
        self, settings: Settings, *, key_cache_ttl_seconds: float = KEY_CACHE_TTL_SECONDS
    ) -> None:
        self.settings = settings
        """The configuration the application serves with."""
        self.metrics = ServiceMetrics()
        """This application's metrics registry and collectors."""
        pepper = settings.security.key_pepper
        self.identity = IdentityCache(Verifier(pepper, ttl_seconds=key_cache_ttl_seconds))
        """What this instance knows of keys, plans and custom domains."""
        self.limiter = Limiter()
        """The tenants' token buckets."""
        self.issuer = KeyIssuer(KeyHasher(pepper))
        """Makes new API keys."""

    @property
    def tenant_middleware(self) -> list[ASGIMiddleware]:
        """Put this on a router (``middleware=``) to make its routes tenant routes: each
        request is identified by its API key, and handlers may ask for ``tenant`` and
        ``db``."""
        return [TenantIdentificationMiddleware(self.identity.keys, self.limiter)]

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
        app_config.dependencies.setdefault("tenant", Provide(provide_tenant, sync_to_thread=False))
        app_config.dependencies.setdefault("db", Provide(provide_tenant_db))
        app_config.dependencies.setdefault("storage", Provide(provide_tenant_storage))
        app_config.signature_namespace.update(
            {
                "Resources": Resources,
                "AdminService": AdminService,
                "TenantIdentity": TenantIdentity,
                "Connection": Connection,
                "TenantStorage": TenantStorage,
            }
        )
        app_config.middleware[:0] = [RequestIdMiddleware(), MetricsMiddleware(self.metrics)]
        app_config.before_send.append(attach_request_id)
        for exception_type, handler in DEFAULT_EXCEPTION_HANDLERS.items():
            app_config.exception_handlers.setdefault(exception_type, handler)
        return app_config

    @asynccontextmanager
    async def _open_resources(self, app: Litestar) -> AsyncIterator[None]:
        # Litestar 2.25 builds the app's layer from its constructor argument, not from the
        # AppConfig plugins see (litestar#4296), so the limit is set on the app itself;
        # handlers resolve it lazily, at their first request, after start-up.
        app.request_max_body_size = self.settings.limits.max_body_bytes
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
            repair = asyncio.create_task(_repair_left_overs(provisioner))
            try:
                async with self.identity.serving(PostgresIdentitySource(resources.database)):
                    yield
            finally:
                repair.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await repair
                del app.state[ADMIN_STATE_KEY]
                del app.state[STORAGE_STATE_KEY]
                del app.state[RESOURCES_STATE_KEY]
