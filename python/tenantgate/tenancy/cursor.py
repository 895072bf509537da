"""Keyset pagination: opaque, stable cursors holding the (created_at, id) of a page's last row.

A listing query selects `KEYSET_PAGE_SQL`'s condition, order and limit with the parameters
from `page_parameters`, and `split_page` turns the rows into the page and the next cursor.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol, TypeVar
from uuid import UUID

from tenantgate.errors import InvalidInputError

__all__ = ["KEYSET_PAGE_SQL", "decode_cursor", "encode_cursor", "page_parameters", "split_page"]

KEYSET_PAGE_SQL = """
 WHERE $1::timestamptz IS NULL OR (created_at, id) > ($1, $2)
 ORDER BY created_at, id
 LIMIT $3"""
"""The tail of a listing query; its parameters are `page_parameters(...)`."""


class _Keyed(Protocol):
    @property
    def created_at(self) -> datetime: ...
    @property
    def id(self) -> UUID: ...


Row = TypeVar("Row")
Entry = TypeVar("Entry", bound=_Keyed)


def page_parameters(cursor: str | None, limit: int) -> tuple[datetime | None, UUID | None, int]:
    """$1, $2, $3 of `KEYSET_PAGE_SQL`: one row more than the page, to know if another follows."""
    if not cursor:
        return None, None, limit + 1
    created_at, row_id = decode_cursor(cursor)
    return created_at, row_id, limit + 1


def split_page(
    rows: Sequence[Row], limit: int, convert: Callable[[Row], Entry]
) -> tuple[list[Entry], str | None]:
    """The page's entries and the cursor of the next page (None on the last page)."""
    page = [convert(row) for row in rows[:limit]]
    if len(rows) <= limit:
        return page, None
    return page, encode_cursor(page[-1].created_at, page[-1].id)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def encode_cursor(created_at: datetime, row_id: UUID) -> str:
    micros = (created_at - _EPOCH) // timedelta(microseconds=1)
    raw = micros.to_bytes(8, "big", signed=True) + row_id.bytes
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidInputError("cursor is not valid") from exc
    if len(raw) != 24:
        raise InvalidInputError("cursor is not valid")
    micros = int.from_bytes(raw[:8], "big", signed=True)
    try:
        created_at = _EPOCH + timedelta(microseconds=micros)
    except OverflowError as exc:
        raise InvalidInputError("cursor is not valid") from exc
    return created_at, UUID(bytes=raw[8:])
