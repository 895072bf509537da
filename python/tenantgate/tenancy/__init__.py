"""Tenants, their keys and plans (the operator's side), and tenant-owned items.

Internal: the public API is :mod:`tenantgate` (its ``__all__``); names here may change.
"""
