"""The JSON shapes of the admin and tenant APIs (see API.md), as msgspec structs.

Constraints that msgspec can state (lengths, ranges, enums) live in the types, so Litestar
rejects bad input before a handler runs; the few it cannot are checked in `validate_*`.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Annotated, Any, ClassVar, Final, Literal
from uuid import UUID

import msgspec

from tenantgate.errors import InvalidInputError
from tenantgate.scopes import ALL_SCOPES, Scope

__all__ = [
    "DOMAIN_PATTERN",
    "JSON_VALUE_SCHEMAS",
    "MAX_ITEM_DEPTH",
    "MAX_PLAN_WINDOW_NS",
    "NO_NUL_PATTERN",
    "PLAN_NAME_PATTERN",
    "REQUEST_BODIES",
    "CacheEntry",
    "CacheEntryBody",
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
    "PresignBody",
    "PutPlan",
    "RotateKey",
    "Tenant",
    "TenantCreated",
    "TenantPage",
    "normalise_domain",
    "validate_item_data",
]

NO_NUL_PATTERN = r"^[^\x00]*$"
"""PostgreSQL text cannot hold U+0000: a name with one is refused (422) like any invalid input."""

PLAN_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_TOP_LABEL = r"[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
DOMAIN_PATTERN = rf"^(?:{_LABEL}\.)+{_TOP_LABEL}\.?$"
"""A host name of two or more labels, letters, digits and inner hyphens, 1 to 63 characters each,
the last one starting with a letter, at most 253 characters as sent; any case, and an absolute
name's trailing dot (it is stored case-folded, without the dot)."""

DOMAIN_MAX_LENGTH = 253

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=NO_NUL_PATTERN)]
PlanName = Annotated[str, msgspec.Meta(pattern=PLAN_NAME_PATTERN)]
Domain = Annotated[str, msgspec.Meta(max_length=DOMAIN_MAX_LENGTH, pattern=DOMAIN_PATTERN)]
Tier = Literal["standard", "enterprise"]
Status = Literal["active", "suspended"]
TEN_YEARS = 10 * 366 * 24 * 3600
MAX_ALLOWED_CIDRS = 32
MAX_ITEM_DEPTH = 32

_DOMAIN = re.compile(DOMAIN_PATTERN)


def normalise_domain(value: str) -> str:
    """Case-fold a host name and check it is one (`DOMAIN_PATTERN`); InvalidInputError otherwise.

    msgspec already checked the pattern with `re.search`, whose `$` also matches before a final
    newline; the full match here is the JSON Schema meaning of the pattern.
    """
    if len(value) > DOMAIN_MAX_LENGTH or not _DOMAIN.fullmatch(value):
        raise InvalidInputError(f"custom_domain {value!r} is not a valid host name")
    return value.lower().removesuffix(".")


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
    scopes: list[str]
    allowed_cidrs: list[str]
    status: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None


class NewKey(Key, frozen=True):
    """A key as created: with its secret, shown this once."""

    key: str


MAX_KEY_AGE_DAYS: Final = 3650
"""The longest maximum key age a plan may set (ten years, as a key's own expiry)."""


class Plan(msgspec.Struct, frozen=True):
    name: str
    rate_per_second: float
    burst: int
    max_key_age_days: int | None = None
    """The longest its tenants' keys may live, in days; ``None``: no bound."""


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
    custom_domain: Domain | None = None

    json_schema_extra: ClassVar[dict[str, Any]] = {
        "description": "A custom_domain is only for an enterprise tenant (else 422).",
        "anyOf": [
            {"properties": {"custom_domain": {"type": "null"}}},
            {"required": ["tier"], "properties": {"tier": {"const": "enterprise"}}},
        ],
    }
    """The rule across fields that `AdminService.create_tenant` checks, for the OpenAPI document."""


class PatchTenant(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: Name | msgspec.UnsetType = msgspec.UNSET
    plan: PlanName | msgspec.UnsetType = msgspec.UNSET
    status: Status | msgspec.UnsetType = msgspec.UNSET
    custom_domain: Domain | msgspec.UnsetType | None = msgspec.UNSET


class CreateKey(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: Name | None = None
    expires_in_seconds: Annotated[int, msgspec.Meta(ge=1, le=TEN_YEARS)] | None = None
    hsm: bool = False
    scopes: (
        Annotated[
            list[Scope],
            msgspec.Meta(
                min_length=1,
                max_length=len(ALL_SCOPES),
                description="what the key may do (default: every scope); no repeats",
                extra_json_schema={"uniqueItems": True},
            ),
        ]
        | None
    ) = None
    allowed_cidrs: Annotated[
        list[Annotated[str, msgspec.Meta(min_length=1, max_length=64)]],
        msgspec.Meta(
            max_length=MAX_ALLOWED_CIDRS,
            description=(
                "the networks (CIDRs, IPv4 or IPv6) the key may be used from; empty: anywhere"
            ),
        ),
    ] = msgspec.field(default_factory=list)


class RotateKey(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    grace_seconds: Annotated[int, msgspec.Meta(ge=0, le=TEN_YEARS)] = 86400


MAX_PLAN_WINDOW_NS: Final = 2**56
"""The longest a plan's bucket may take to refill (``ceil(1e9 / rate) * burst`` ns, about
833 days): the native limiter's bound, within which its arithmetic is exact (past it, it
would clamp the plan to a faster one)."""


class PutPlan(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    rate_per_second: Annotated[float, msgspec.Meta(gt=0, lt=1e9)]
    burst: Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]
    max_key_age_days: (
        Annotated[
            int,
            msgspec.Meta(
                ge=1,
                le=MAX_KEY_AGE_DAYS,
                description=(
                    "the longest its tenants' keys may live, in days: a key made without an "
                    "expiry gets it, a longer one is refused, a rotation's successor gets it; "
                    "absent or null: no bound"
                ),
            ),
        ]
        | None
    ) = None

    def __post_init__(self) -> None:
        # A ValueError here is a validation error (422), from Litestar and strict_body alike.
        interval = 1e9 / self.rate_per_second  # may be inf for the tiniest rates
        if interval > MAX_PLAN_WINDOW_NS or math.ceil(interval) * self.burst > MAX_PLAN_WINDOW_NS:
            raise ValueError(
                "burst / rate_per_second must be at most 2**56 ns (about 833 days): the"
                " bucket must refill within that"
            )


class Me(msgspec.Struct, frozen=True):
    tenant_id: UUID
    name: str
    plan: str
    tier: str
    key_id: UUID


_NO_NUL_TEXT: dict[str, Any] = {"type": "string", "pattern": NO_NUL_PATTERN}
JSON_VALUE_SCHEMAS: dict[str, dict[str, Any]] = {
    "JsonValue": {
        "description": "Any JSON value whose strings and keys hold no U+0000 (jsonb cannot).",
        "anyOf": [
            {"type": ["null", "boolean", "number"]},
            _NO_NUL_TEXT,
            {"type": "array", "items": {"$ref": "#/components/schemas/JsonValue"}},
            {"$ref": "#/components/schemas/JsonObject"},
        ],
    },
    "JsonObject": {
        "type": "object",
        "propertyNames": _NO_NUL_TEXT,
        "additionalProperties": {"$ref": "#/components/schemas/JsonValue"},
    },
}
"""Named schemas the request bodies refer to (``$ref`` into an OpenAPI document's components):
what an item's `data` may hold, as far as JSON Schema can say it."""

ItemData = Annotated[
    dict[str, Any],
    msgspec.Meta(
        description=(
            f"any JSON object nested at most {MAX_ITEM_DEPTH} levels deep (objects and arrays"
            " count, `data` itself is level 1), with no U+0000 in a string or key, and numbers"
            " a double can hold; else 422"
        ),
        extra_json_schema={
            "propertyNames": _NO_NUL_TEXT,
            "additionalProperties": {"$ref": "#/components/schemas/JsonValue"},
        },
    ),
]


class ItemBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    data: ItemData


class Item(msgspec.Struct, frozen=True):
    id: UUID
    data: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class AuditRecord(msgspec.Struct, frozen=True):
    id: UUID
    at: datetime
    tenant_id: UUID | None
    key_id: UUID | None
    actor: str
    source_ip: str | None
    method: str
    path: str
    status: int
    request_id: str | None
    operation: dict[str, Any]
    hash: str
    """Hex of the record's SHA-256 over the previous record's hash and its own fields."""
    prev_hash: str


class AuditPage(msgspec.Struct, frozen=True):
    records: list[AuditRecord]
    next_cursor: str | None


class AuditVerification(msgspec.Struct, frozen=True):
    ok: bool
    checked: int
    first_bad: UUID | None
    problem: str | None = None
    """What is wrong with ``first_bad`` (absent when every chain holds)."""
    seals_checked: int = 0
    """How many sealed digests (from the locked audit bucket) the chains were checked against."""


class AuditSeal(msgspec.Struct, frozen=True):
    seq: int
    """The digest's number: 1 for the first, then one more each time."""
    key: str
    """Its object key in the audit bucket."""
    version_id: str
    """The S3 version written (the one a verifier reads, whatever is laid on top of it)."""
    sealed_at: datetime
    retain_until: datetime
    """Until when S3 Object Lock (compliance mode) keeps it from anyone's deletion."""
    chains: int
    """How many chains' heads it holds."""
    digest_sha256: str


class CacheEntryBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    value: Annotated[
        Any, msgspec.Meta(description="any JSON value, `null` included; stored as sent")
    ]
    ttl_seconds: (
        Annotated[
            int,
            msgspec.Meta(
                ge=1, le=TEN_YEARS, description="seconds the entry lives; absent: until deleted"
            ),
        ]
        | None
    ) = None


class CacheEntry(msgspec.Struct, frozen=True):
    key: str
    value: Any


class ItemPage(msgspec.Struct, frozen=True):
    items: list[Item]
    next_cursor: str | None


class PresignBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    method: Literal["GET", "PUT"]
    expires_in_seconds: Annotated[int, msgspec.Meta(ge=1, le=3600)] = 300
    content_length: Annotated[int, msgspec.Meta(ge=0)] | None = None

    json_schema_extra: ClassVar[dict[str, Any]] = {
        "description": (
            "content_length only with method PUT, and at most TENANTGATE_MAX_FILE_BYTES (else 422)."
        ),
        "anyOf": [
            {"properties": {"content_length": {"type": "null"}}},
            {"not": {"required": ["content_length"]}},
            {"properties": {"method": {"const": "PUT"}}},
        ],
    }
    """The rule across fields that `TenantStorage.presign` checks, for the OpenAPI document."""


REQUEST_BODIES: tuple[type[msgspec.Struct], ...] = (
    CreateTenant,
    PatchTenant,
    CreateKey,
    RotateKey,
    PutPlan,
    ItemBody,
    CacheEntryBody,
    PresignBody,
)
"""The shapes clients send: decoded with unknown fields refused, documented as msgspec sees them."""
