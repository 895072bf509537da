"""Helpers of the authentication tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

FORBIDDEN = b'{"type":"about:blank","title":"Forbidden","status":403}'


def eventually(request: Callable[[], Any], status: int, within: float = 1.5) -> Any:
    """Repeat ``request()`` until it answers ``status`` or ``within`` seconds pass; the last
    answer either way (so the caller's assertion shows what came instead)."""
    deadline = time.monotonic() + within
    while True:
        answer = request()
        if answer.status_code == status or time.monotonic() >= deadline:
            return answer
        time.sleep(0.1)
