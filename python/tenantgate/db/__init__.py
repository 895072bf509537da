"""PostgreSQL: pools, tenant-scoped transactions, provisioning and migrations."""
