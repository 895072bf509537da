"""What a key may do: its scopes, and which routes need which.

A key carries a set of scopes (all of :data:`ALL_SCOPES` unless it was created with fewer); a
tenant route names the scope it needs in its handler's ``opt`` (:data:`SCOPE_OPT`), and the
identification middleware refuses, with the one 403, a key without it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final, Literal, get_args

from tenantgate.errors import KeyScopeError

__all__ = [
    "ALL_SCOPES",
    "KEY_SCOPES_STATE_KEY",
    "SCOPE_BITS",
    "SCOPE_OPT",
    "Scope",
    "require_scope",
    "scope_bit",
    "scope_mask",
]

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

SCOPE_BITS: Final[dict[str, int]] = {name: 1 << i for i, name in enumerate(ALL_SCOPES)}
"""Each scope's bit in a key record's scope mask (the native verifier checks the mask)."""

_NO_KEY_HAS: Final = 1 << 15
"""The bit of a scope that is not one of :data:`ALL_SCOPES`: in no restricted key's mask."""

SCOPE_OPT: Final = "tenantgate_scope"
"""The key in a route handler's ``opt`` naming the scope the route needs."""

KEY_SCOPES_STATE_KEY: Final = "tenantgate_key_scopes"
"""Where the identification middleware leaves a restricted key's scopes in ``scope["state"]``."""


def scope_mask(scopes: Iterable[str] | None) -> int | None:
    """The mask of ``scopes`` for :meth:`Verifier.insert <tenantgate.keys.Verifier.insert>`;
    ``None`` when they are every scope (a key that is not restricted by scope)."""
    if scopes is None:
        return None
    mask = 0
    for scope in scopes:
        mask |= SCOPE_BITS[scope]
    return None if mask == (1 << len(ALL_SCOPES)) - 1 else mask


def scope_bit(needed: str | None) -> int:
    """The bit a request needing ``needed`` asks the key record for: 0 for none; a name that
    is not a scope asks for a bit no restricted key has (refused, as an unknown scope was)."""
    if needed is None:
        return 0
    return SCOPE_BITS.get(needed, _NO_KEY_HAS)


def require_scope(state: Mapping[str, Any], needed: str) -> None:
    """Refuse (the one 403) unless the caller's key has ``needed``: for a handler whose
    required scope depends on the request's body (a presigned PUT writes, a GET reads)."""
    scopes = state.get(KEY_SCOPES_STATE_KEY)
    if scopes is not None and needed not in scopes:
        raise KeyScopeError(needed)
