"""Keyset pagination: opaque, stable cursors holding the (created_at, id) of a page's last row.

A listing query selects `KEYSET_PAGE_SQL`'s condition, order and limit with the parameters
from `page_parameters`, and `split_page` turns the rows into the page and the next cursor.

A cursor is the 24 bytes (8: microseconds since the epoch, signed, big-endian; 16: the id) in
unpadded base64url: exactly 32 characters of `CURSOR_PATTERN`. Every such string is a cursor: one
that points nowhere (another tenant's row, a deleted row, a time no row has) only positions the
page, and a time outside what a datetime can hold is clamped, so it is the first page (before
year 1) or an empty one (after 9999). Anything else is invalid input (422).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Final, Protocol, TypeVar
from uuid import UUID

from tenantgate.errors import InvalidInputError

__all__ = [
    "CURSOR_LENGTH",
    "CURSOR_PATTERN",
    "KEYSET_PAGE_SQL",
    "decode_cursor",
    "encode_cursor",
    "page_parameters",
    "split_page",
]

CURSOR_LENGTH: Final = 32
"""Characters in a cursor: 24 bytes in base64url without padding."""

CURSOR_PATTERN: Final = r"^[A-Za-z0-9_-]{32}$"
"""What a cursor looks like, for validation and for the OpenAPI document alike."""

_CURSOR = re.compile(CURSOR_PATTERN)

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
    if cursor is None:
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
_MIN_MICROS: Final = (datetime.min.replace(tzinfo=UTC) - _EPOCH) // timedelta(microseconds=1)
_MAX_MICROS: Final = (datetime.max.replace(tzinfo=UTC) - _EPOCH) // timedelta(microseconds=1)


def encode_cursor(created_at: datetime, row_id: UUID) -> str:
    micros = (created_at - _EPOCH) // timedelta(microseconds=1)
    raw = micros.to_bytes(8, "big", signed=True) + row_id.bytes
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    """The position a cursor names; InvalidInputError unless it matches `CURSOR_PATTERN`."""
    if not _CURSOR.fullmatch(cursor):  # also refuses "\n" after it, which `$` would allow
        raise InvalidInputError(
            f"cursor must be {CURSOR_LENGTH} characters of base64url, as next_cursor gives"
        )
    raw = base64.urlsafe_b64decode(cursor)  # 32 characters are 24 whole bytes, no padding
    micros = int.from_bytes(raw[:8], "big", signed=True)
    micros = min(max(micros, _MIN_MICROS), _MAX_MICROS)
    return _EPOCH + timedelta(microseconds=micros), UUID(bytes=raw[8:])
