"""The connection type request code receives: a plain connection or a pool's proxy of one."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

__all__ = ["Connection"]

if TYPE_CHECKING:
    Connection: TypeAlias = asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]
else:
    # Litestar resolves and checks handler annotations at runtime, where the classes are not
    # generic and a union of two classes is refused; request code always gets a pool's proxy.
    Connection = PoolConnectionProxy
