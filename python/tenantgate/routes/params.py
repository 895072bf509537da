"""What the admin and tenant routes share: paging parameters and strictly decoded bodies."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

import msgspec
from litestar import Request
from litestar.params import QueryParameter

from tenantgate.errors import InvalidInputError
from tenantgate.tenancy.cursor import CURSOR_LENGTH, CURSOR_PATTERN

__all__ = ["Cursor", "PageLimit", "strict_body"]

PageLimit = Annotated[int, QueryParameter(ge=1, le=100, description="page size, 1..100")]

Cursor = Annotated[
    str | None,
    QueryParameter(
        pattern=CURSOR_PATTERN,
        min_length=CURSOR_LENGTH,
        max_length=CURSOR_LENGTH,
        description=(
            "the `next_cursor` of the previous page; any such string is a position (one that"
            " names no row just positions the page), leave it out for the first page"
        ),
    ),
]

Body = TypeVar("Body", bound=msgspec.Struct)


async def strict_body(
    request: Request[Any, Any, Any], body_type: type[Body], default: Body | None = None
) -> Body:
    """The request body as ``body_type``, converted by JSON Schema's rules (else 422).

    Litestar converts a body's values leniently (``"5"`` for an integer, ``"true"`` for a
    boolean), which the documented schema forbids; a handler whose body has such fields converts
    it again, strictly (Litestar keeps the bytes, so nothing is read twice). A number with no
    fraction (``5.0``) is an integer to JSON Schema, so it is one here too. With ``default``, no
    body or ``null`` means ``default``.
    """
    raw = await request.body()
    if default is not None and raw.strip() in {b"", b"null"}:
        return default
    try:
        return msgspec.convert(_integers(msgspec.json.decode(raw)), body_type, strict=True)
    except msgspec.ValidationError as exc:
        raise InvalidInputError(f"body: {exc}") from exc
    except msgspec.DecodeError as exc:  # Litestar parsed it already: not expected
        raise InvalidInputError(f"the request body is not valid JSON: {exc}") from exc


def _integers(value: Any) -> Any:
    """``value`` with every float that has no fraction as an int, as JSON Schema counts them."""
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, dict):
        return {key: _integers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_integers(item) for item in value]
    return value
