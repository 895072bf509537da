"""Opaque, stable pagination cursors: the (created_at, id) of the last row of a page."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime, timedelta
from uuid import UUID

from tenantgate.errors import InvalidInputError

__all__ = ["decode_cursor", "encode_cursor"]

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
