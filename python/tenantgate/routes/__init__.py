"""The routes of the tenantgate service.

Internal: the public API is :mod:`tenantgate` (its ``__all__``); names here may change.
"""

from __future__ import annotations

from typing import Final

from litestar.types import ControllerRouterHandler

from tenantgate.http.metrics import metrics_endpoint
from tenantgate.routes.health import healthz, readyz

__all__ = ["SERVICE_ROUTES"]

SERVICE_ROUTES: Final[tuple[ControllerRouterHandler, ...]] = (healthz, readyz, metrics_endpoint)
"""``GET /healthz``, ``GET /readyz`` and ``GET /metrics``: add them to any app using the plugin."""
