"""The tenantgate service: its own routes plus :class:`~tenantgate.plugin.TenantGatePlugin`.

Serve it with granian through the factory::

    granian --interface asgi --factory tenantgate.app:create_app_from_env

or simply ``tenantgate serve``.
"""

from __future__ import annotations

import gc

from litestar import Litestar, Router
from litestar.openapi.plugins import JsonRenderPlugin, ScalarRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from tenantgate import __version__
from tenantgate.http.openapi import ADMIN_SCHEME, TENANT_SCHEME, DocumentedOpenAPIConfig
from tenantgate.plugin import TenantGatePlugin
from tenantgate.routes import SERVICE_ROUTES
from tenantgate.routes.admin import AdminController
from tenantgate.routes.audit import AdminAuditController, TenantAuditController
from tenantgate.routes.cache import CacheController
from tenantgate.routes.files import FilesController
from tenantgate.routes.tenant import TenantController
from tenantgate.settings import Settings
from tenantgate.tenancy.schemas import JSON_VALUE_SCHEMAS, REQUEST_BODIES

__all__ = ["create_app", "create_app_from_env"]


def create_app(
    settings: Settings | None = None, *, plugin: TenantGatePlugin | None = None
) -> Litestar:
    """The tenantgate service for ``settings`` (default: read from the environment), or with
    a ``plugin`` configured by the caller (its settings then)."""
    if plugin is None:
        plugin = TenantGatePlugin(settings if settings is not None else Settings.from_env())
    return Litestar(
        route_handlers=[
            *SERVICE_ROUTES,
            Router(
                "/",
                route_handlers=[AdminController, AdminAuditController],
                middleware=plugin.admin_middleware,
            ),
            Router(
                "/",
                route_handlers=[
                    TenantController,
                    CacheController,
                    FilesController,
                    TenantAuditController,
                ],
                middleware=plugin.tenant_middleware,
            ),
        ],
        plugins=[plugin],
        openapi_config=DocumentedOpenAPIConfig(
            request_bodies=REQUEST_BODIES,
            named_schemas=JSON_VALUE_SCHEMAS,
            title="tenantgate",
            version=__version__,
            path="/schema",
            render_plugins=[ScalarRenderPlugin(), JsonRenderPlugin()],
            components=Components(
                security_schemes={
                    TENANT_SCHEME: SecurityScheme(
                        type="http", scheme="bearer", description="a tenant API key, tg_live_…"
                    ),
                    ADMIN_SCHEME: SecurityScheme(
                        type="http", scheme="bearer", description="TENANTGATE_ADMIN_TOKEN"
                    ),
                }
            ),
        ),
    )


def create_app_from_env() -> Litestar:
    """Application factory for ASGI servers: the service configured by ``TENANTGATE_*``."""
    app = create_app(Settings.from_env())
    app.on_startup.append(freeze_long_lived_objects)
    return app


def freeze_long_lived_objects() -> None:
    """Move what is alive once the service has started — modules, the app and its routes, the
    backing services' clients — out of the garbage collector's generations for good.

    They live as long as the process, yet every full collection walked them all: on a granian
    worker those walks stalled every request in flight for tens of milliseconds every few
    seconds (p99 of a cached item read at saturation 86 to 93 ms with, 24 to 28 ms without them, and
    ~10 % less CPU per request). Only the service's own factory does this: the plugin, mounted
    in someone else's application, leaves that process's collector alone.
    """
    gc.collect()
    gc.freeze()
