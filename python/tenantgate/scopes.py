"""What a key may do: its scopes, and which routes need which.

A key carries a set of scopes (all of :data:`ALL_SCOPES` unless it was created with fewer); a
tenant route names the scope it needs in its handler's ``opt`` (:data:`SCOPE_OPT`), and the
identification middleware refuses, with the one 403, a key without it.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

__all__ = ["ALL_SCOPES", "SCOPE_OPT", "Scope"]

Scope = Literal[
    "items:read",
    "items:write",
    "files:read",
    "files:write",
    "cache:read",
    "cache:write",
    "audit:read",
]

ALL_SCOPES: Final[tuple[str, ...]] = get_args(Scope)
"""Every scope, in the documented order: what a key gets unless it asks for fewer."""

SCOPE_OPT: Final = "tenantgate_scope"
"""The key in a route handler's ``opt`` naming the scope the route needs."""
