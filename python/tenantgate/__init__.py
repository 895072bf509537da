"""tenantgate: a multi-tenant API service and Litestar plugin with a Rust core.

Everything a user needs is importable from here::

    from tenantgate import TenantGatePlugin, Settings, TenantIdentity, Connection

    plugin = TenantGatePlugin(Settings.from_env())
    app = Litestar(
        route_handlers=[Router("/api", route_handlers=[...], middleware=plugin.tenant_middleware)],
        plugins=[plugin],
    )

- :class:`TenantGatePlugin` — wires identification, rate limits, the backing services'
  clients, tenant-bound dependencies (``tenant``, ``db``, ``cache``) and problem+json errors
  into an app;
  :func:`create_app` is the plugin applied to tenantgate's own routes.
- :class:`Settings` — the whole configuration, read from ``TENANTGATE_*`` by
  :meth:`Settings.from_env`.
- :class:`TenantIdentity`, :data:`current_tenant`, :func:`require_tenant` — the caller of the
  current request, as a dependency, a context variable, or a fail-closed accessor.
- :data:`Connection` — the type of the ``db`` dependency: a connection inside a transaction
  that acts as the caller's tenant.
- :class:`TenantCache` — the type of the ``cache`` dependency: the caller's key-value cache
  (JSON values, optional TTL), run as the tenant's own Redis ACL user.
- The errors, rooted at :class:`TenantgateError` (the tree is in :mod:`tenantgate.errors`).

The names in ``__all__`` are the public API. The modules behind them (``identity``, ``db``,
``cache``, ``storage``, ``tenancy``, ``http``, ``routes``, ``cli``, ``dev``, ``_native``) are
implementation: importable, documented, but free to change between releases. The heavier
names (the plugin, the app, the identity types) are imported on first use, so ``import
tenantgate`` — and the ``tenantgate`` command — stay quick.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Final

from tenantgate.errors import (
    ConflictError,
    EmbeddedServerError,
    InvalidInputError,
    KeyFormatError,
    NotFoundError,
    ServiceUnavailableError,
    SettingsError,
    TenantgateError,
    TenantGoneError,
)

if TYPE_CHECKING:
    from tenantgate.app import create_app
    from tenantgate.cache import TenantCache
    from tenantgate.db.types import Connection
    from tenantgate.identity import TenantIdentity, current_tenant, require_tenant
    from tenantgate.plugin import TenantGatePlugin
    from tenantgate.settings import Settings

__version__ = "0.1.0"

__all__ = [
    "ConflictError",
    "Connection",
    "EmbeddedServerError",
    "InvalidInputError",
    "KeyFormatError",
    "NotFoundError",
    "ServiceUnavailableError",
    "Settings",
    "SettingsError",
    "TenantCache",
    "TenantGatePlugin",
    "TenantGoneError",
    "TenantIdentity",
    "TenantgateError",
    "__version__",
    "create_app",
    "current_tenant",
    "require_tenant",
]

_LAZY: Final = {
    "Connection": "tenantgate.db.types",
    "TenantCache": "tenantgate.cache",
    "Settings": "tenantgate.settings",
    "TenantGatePlugin": "tenantgate.plugin",
    "TenantIdentity": "tenantgate.identity",
    "create_app": "tenantgate.app",
    "current_tenant": "tenantgate.identity",
    "require_tenant": "tenantgate.identity",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tenantgate' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
