"""Tenants, their keys and plans (the operator's side), and tenant-owned items."""
