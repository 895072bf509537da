"""tenantgate: a multi-tenant API service and Litestar plugin with a Rust core."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
