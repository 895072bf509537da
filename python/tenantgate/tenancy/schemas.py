"""The JSON shapes of the admin and tenant APIs (see API.md), as msgspec structs.

Constraints that msgspec can state (lengths, ranges, enums) live in the types, so Litestar
rejects bad input before a handler runs; the few it cannot are checked in `validate_*`.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec

from tenantgate.errors import InvalidInputError

__all__ = [
    "CreateKey",
    "CreateTenant",
    "Item",
    "ItemBody",
    "ItemPage",
    "Key",
    "KeyList",
    "Me",
    "NewKey",
    "PatchTenant",
    "Plan",
    "PlanList",
    "PutPlan",
    "RotateKey",
    "Tenant",
    "TenantCreated",
    "TenantPage",
    "normalise_domain",
    "validate_item_data",
]

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
PlanName = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
Tier = Literal["standard", "enterprise"]
Status = Literal["active", "suspended"]
TEN_YEARS = 10 * 366 * 24 * 3600
MAX_ITEM_DEPTH = 32

_DOMAIN_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def normalise_domain(value: str) -> str:
    """Case-fold a host name and check it is one; InvalidInputError otherwise."""
    domain = value.strip().lower().rstrip(".")
    labels = domain.split(".")
    if (
        len(domain) > 253
        or len(labels) < 2
        or not all(_DOMAIN_LABEL.match(label) for label in labels)
        or labels[-1].isdigit()
    ):
        raise InvalidInputError(f"custom_domain {value!r} is not a valid host name")
    return domain


def validate_item_data(data: dict[str, Any]) -> None:
    """Refuse JSON nested deeper than MAX_ITEM_DEPTH (checked without recursion)."""
    # Depth counts containers (objects and arrays) only: `data` itself is level 1.
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_ITEM_DEPTH:
            raise InvalidInputError(f"data is nested deeper than {MAX_ITEM_DEPTH} levels")
        children = value.values() if isinstance(value, dict) else value
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


class Tenant(msgspec.Struct, frozen=True):
    id: UUID
    name: str
    plan: str
    tier: str
    status: str
    custom_domain: str | None
    created_at: datetime


class Key(msgspec.Struct, frozen=True):
    id: UUID
    tenant_id: UUID
    name: str | None
    prefix: str
    hsm: bool
    status: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None


class NewKey(Key, frozen=True):
    """A key as created: with its secret, shown this once."""

    key: str


class Plan(msgspec.Struct, frozen=True):
    name: str
    rate_per_second: float
    burst: int


class TenantCreated(msgspec.Struct, frozen=True):
    tenant: Tenant
    api_key: NewKey


class TenantPage(msgspec.Struct, frozen=True):
    tenants: list[Tenant]
    next_cursor: str | None


class KeyList(msgspec.Struct, frozen=True):
    keys: list[Key]


class PlanList(msgspec.Struct, frozen=True):
    plans: list[Plan]


class CreateTenant(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: Name
    plan: PlanName = "free"
    tier: Tier = "standard"
    custom_domain: str | None = None


class PatchTenant(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: Name | msgspec.UnsetType = msgspec.UNSET
    plan: PlanName | msgspec.UnsetType = msgspec.UNSET
    status: Status | msgspec.UnsetType = msgspec.UNSET
    custom_domain: str | msgspec.UnsetType | None = msgspec.UNSET


class CreateKey(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None
    expires_in_seconds: Annotated[int, msgspec.Meta(ge=1, le=TEN_YEARS)] | None = None
    hsm: bool = False


class RotateKey(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    grace_seconds: Annotated[int, msgspec.Meta(ge=0, le=TEN_YEARS)] = 86400


class PutPlan(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    rate_per_second: Annotated[float, msgspec.Meta(gt=0, lt=1e9)]
    burst: Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]


class Me(msgspec.Struct, frozen=True):
    tenant_id: UUID
    name: str
    plan: str
    tier: str
    key_id: UUID


class ItemBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    data: dict[str, Any]


class Item(msgspec.Struct, frozen=True):
    id: UUID
    data: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class ItemPage(msgspec.Struct, frozen=True):
    items: list[Item]
    next_cursor: str | None
