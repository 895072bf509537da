"""PostgreSQL: the pool and its transactions, queries, provisioning steps and migrations.

The only room that imports ``asyncpg``; its errors are translated once, in
:mod:`tenantgate.db.errors`.

Internal: the public API is :mod:`tenantgate` (its ``__all__``); names here may change.
"""

from tenantgate.db.database import Database
from tenantgate.db.errors import translate, translating
from tenantgate.db.pool import open_database, ping

__all__ = ["Database", "open_database", "ping", "translate", "translating"]
