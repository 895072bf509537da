"""Whether a request path lies under one of the prefixes an API is mounted at."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["Prefixes"]


class Prefixes:
    """The prefixes an API is mounted at; asked on every request, so one ``startswith`` over
    a tuple and one set lookup instead of a loop (the loop showed in profiles)."""

    __slots__ = ("_bare", "_starts")

    def __init__(self, prefixes: Iterable[str]) -> None:
        self._starts = tuple(prefixes)
        self._bare = frozenset(prefix.rstrip("/") for prefix in self._starts)

    def match(self, path: str) -> bool:
        """``path`` is a prefix itself (without its trailing ``/``) or starts with one."""
        return path.startswith(self._starts) or path in self._bare
