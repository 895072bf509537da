"""What a key may do: its scopes, and which routes need which.

A key carries a set of scopes (all of :data:`ALL_SCOPES` unless it was created with fewer); a
tenant route names the scope it needs in its handler's ``opt`` (:data:`SCOPE_OPT`), and the
identification middleware refuses, with the one 403, a key without it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Literal, get_args

from tenantgate.errors import KeyScopeError

__all__ = ["ALL_SCOPES", "KEY_SCOPES_STATE_KEY", "SCOPE_OPT", "Scope", "require_scope"]

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

KEY_SCOPES_STATE_KEY: Final = "tenantgate_key_scopes"
"""Where the identification middleware leaves a restricted key's scopes in ``scope["state"]``."""


def require_scope(state: Mapping[str, Any], needed: str) -> None:
    """Refuse (the one 403) unless the caller's key has ``needed``: for a handler whose
    required scope depends on the request's body (a presigned PUT writes, a GET reads)."""
    scopes = state.get(KEY_SCOPES_STATE_KEY)
    if scopes is not None and needed not in scopes:
        raise KeyScopeError(needed)
