"""File paths as clients name them, checked before S3 is contacted.

A path is 1 to 1024 bytes of UTF-8 (S3's own key limit is 1024 bytes, and a standard tenant's
key is its path behind ``<tenant id>/``, so the tenant's 1024 bytes are checked here, the
37 bytes of the prefix being the store's business), relative (no leading ``/``), with no empty,
``.`` or ``..`` segment (S3 keys have no directories, but gateways and clients normalise
them differently: SeaweedFS refuses ``..`` and stores ``a//b`` as ``a/b``), and no control
character. A listing prefix follows the same rules, except that it may be empty and may end
with ``/`` (``docs/`` lists a "folder").
"""

from __future__ import annotations

import re
from typing import Final

from tenantgate.errors import InvalidInputError

__all__ = ["MAX_PATH_BYTES", "PATH_PATTERN", "PREFIX_PATTERN", "check_path", "check_prefix"]

MAX_PATH_BYTES: Final = 1024

_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")

_CHAR = r"[^/\x00-\x1f\x7f-\x9f]"
_SEGMENT = rf"(?:[^/.\x00-\x1f\x7f-\x9f]{_CHAR}*|\.[^/.\x00-\x1f\x7f-\x9f]{_CHAR}*|\.\.{_CHAR}+)"
PATH_PATTERN: Final = rf"^{_SEGMENT}(?:/{_SEGMENT})*$"
"""The rules above but the byte length, as a regular expression (ECMA-262 and Python alike)
for the OpenAPI document: segments that are neither empty, ``.`` nor ``..``, joined by ``/``,
no control character."""

PREFIX_PATTERN: Final = rf"^(?:{_SEGMENT}(?:/{_SEGMENT})*/?)?$"
"""A listing prefix's rules as a regular expression: empty, or a path with an optional ``/``."""


def check_path(path: str) -> str:
    """``path`` if it is a valid file path, else :class:`InvalidInputError` saying why."""
    _check_text(path, "path")
    if not path:
        raise InvalidInputError("path: must not be empty")
    _check_segments(path.split("/"), "path")
    return path


def check_prefix(prefix: str) -> str:
    """``prefix`` if it may start valid paths (``""`` and ``docs/`` may), else 422."""
    _check_text(prefix, "prefix")
    if prefix:
        segments = prefix.split("/")
        if segments[-1] == "":  # a trailing slash: a "folder"
            segments.pop()
        _check_segments(segments, "prefix")
    return prefix


def _check_text(text: str, what: str) -> None:
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:  # lone surrogates from a malformed percent-encoding
        raise InvalidInputError(f"{what}: must be valid UTF-8") from None
    if size > MAX_PATH_BYTES:
        raise InvalidInputError(f"{what}: must be at most {MAX_PATH_BYTES} bytes of UTF-8")
    if _CONTROL.search(text):
        raise InvalidInputError(f"{what}: must not contain control characters")


def _check_segments(segments: list[str], what: str) -> None:
    if segments and segments[0] == "":
        raise InvalidInputError(f"{what}: must be relative (no leading '/')")
    for segment in segments:
        if segment in {"", ".", ".."}:
            raise InvalidInputError(f"{what}: must not contain an empty, '.' or '..' segment")
