"""How a connection goes back to the pool.

asyncpg's default reset (`RESET ALL`, `CLOSE ALL`, `UNLISTEN *`, advisory unlocks) costs a
round trip on every release — a quarter of a tenant-scoped read. tenantgate keeps no session
state: every tenant setting is `SET LOCAL` and dies with its transaction, there are no
LISTENs, cursors or session advisory locks. So the only thing that can be left behind is an
open transaction, and that is checked locally, with no round trip when there is none.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncpg

__all__ = ["reset_on_release"]


async def reset_on_release(connection: asyncpg.Connection) -> None:
    if connection.is_in_transaction():
        await connection.execute("ROLLBACK")
