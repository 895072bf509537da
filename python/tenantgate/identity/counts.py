"""What the front door decided, counted per plan (never per tenant: the number of series stays
bounded whatever the number of tenants), cheaply enough for every request: one list per plan,
shared by every key record of the plan, incremented in place by the middleware."""

from __future__ import annotations

from typing import Final

__all__ = ["ALLOWED", "LIMITED", "DecisionCounts"]

LIMITED: Final = 0
"""Index of the refused-by-the-limiter count in a plan's list (``counts[decision.allowed]``)."""

ALLOWED: Final = 1
"""Index of the allowed count in a plan's list."""


class DecisionCounts:
    """``[limited, allowed]`` per plan name."""

    __slots__ = ("_plans",)

    def __init__(self) -> None:
        self._plans: dict[str, list[int]] = {}

    def of(self, plan: str) -> list[int]:
        """The plan's ``[limited, allowed]`` list (made on first use, then shared)."""
        counts = self._plans.get(plan)
        if counts is None:
            counts = self._plans[plan] = [0, 0]
        return counts

    def snapshot(self) -> dict[str, tuple[int, int]]:
        """Every plan's ``(limited, allowed)``."""
        return {plan: (counts[LIMITED], counts[ALLOWED]) for plan, counts in self._plans.items()}
