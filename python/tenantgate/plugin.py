"""The Litestar plugin that makes an application a tenantgate service.

``TenantGatePlugin(settings)`` only wires; the pieces live in their own modules:

- a lifespan that opens the backing services' clients (:mod:`tenantgate.resources`) at
  start-up, keeps them on ``app.state`` and closes them at shutdown;
- the dependency ``resources`` (:class:`~tenantgate.resources.Resources`);
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

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final

from litestar.datastructures import State
from litestar.di import Provide
from litestar.plugins import InitPluginProtocol

from tenantgate.http.metrics import METRICS_STATE_KEY, MetricsMiddleware, ServiceMetrics
from tenantgate.http.problems import DEFAULT_EXCEPTION_HANDLERS
from tenantgate.http.request_id import RequestIdMiddleware, attach_request_id
from tenantgate.resources import Resources, open_resources
from tenantgate.settings import Settings

if TYPE_CHECKING:
    from litestar import Litestar
    from litestar.config.app import AppConfig

__all__ = ["RESOURCES_STATE_KEY", "SETTINGS_STATE_KEY", "TenantGatePlugin", "provide_resources"]

RESOURCES_STATE_KEY: Final = "tenantgate_resources"
"""The key of the running application's :class:`Resources` in ``app.state``."""

SETTINGS_STATE_KEY: Final = "tenantgate_settings"
"""The key of the application's :class:`Settings` in ``app.state``."""


def provide_resources(state: State) -> Resources:
    """Dependency provider of the application's :class:`Resources`."""
    resources: Resources = state[RESOURCES_STATE_KEY]
    return resources


class TenantGatePlugin(InitPluginProtocol):
    """Wire tenantgate's lifespan, dependencies, middleware and error handling into an app."""

    __slots__ = ("metrics", "settings")

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        """The configuration the application serves with."""
        self.metrics = ServiceMetrics()
        """This application's metrics registry and collectors."""

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        """Add tenantgate's wiring to ``app_config``; see the module's docstring."""
        app_config.lifespan.append(self._open_resources)
        app_config.state[SETTINGS_STATE_KEY] = self.settings
        app_config.state[METRICS_STATE_KEY] = self.metrics
        app_config.dependencies.setdefault(
            "resources", Provide(provide_resources, sync_to_thread=False)
        )
        app_config.signature_namespace.setdefault("Resources", Resources)
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
        async with open_resources(self.settings) as resources:
            app.state[RESOURCES_STATE_KEY] = resources
            try:
                yield
            finally:
                del app.state[RESOURCES_STATE_KEY]
