"""Deprecated name of :func:`tenantgate.db.errors.translating` (removed once callers move)."""

from tenantgate.db.errors import translating as translate_driver_errors

__all__ = ["translate_driver_errors"]
