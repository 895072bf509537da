"""Whether a request path lies under one of the prefixes an API is mounted at."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["under"]


def under(path: str, prefixes: Sequence[str]) -> bool:
    """``path`` is a prefix itself (without its trailing ``/``) or starts with one."""
    return any(path == prefix.rstrip("/") or path.startswith(prefix) for prefix in prefixes)
