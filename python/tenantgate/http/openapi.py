"""An OpenAPI document that tells the truth: every status an operation can answer, and how.

Litestar documents each handler's success answer and, for handlers with input, a generic
``400``. tenantgate answers differently (:mod:`tenantgate.http.problems`): every error is
``application/problem+json``, invalid input is ``422`` (never ``400``), and middleware answers
statuses no handler signature shows. :func:`complete_document` adds them to the generated
document in one pass, by rules that follow from how the service works:

- every operation behind a credential (``/v1``: a tenant key, ``/admin/v1``: the admin token)
  can answer the one ``403`` (its body is byte-identical whatever the reason), and, since it
  reaches PostgreSQL, ``503`` with ``Retry-After``;
- tenant operations are rate limited: ``429`` with ``Retry-After``, and every answer after
  identification carries the ``RateLimit-*`` headers (routing errors and an outage during
  identification come before the limiter, so those may lack them);
- an operation with parameters or a body answers ``422`` for invalid input, one with a body
  ``413`` for a body over the limit, and one with a path parameter ``404`` (no such resource,
  another tenant's, or a path that names no route);
- a route declares the statuses only it knows with ``responses=problems(409)``;
- every answer carries ``X-Request-ID``;
- an optional parameter may be left out but is never ``null`` (a query string has no null).

It also states request bodies exactly as msgspec decodes them: the component schemas of the
given request structs are msgspec's own (with ``additionalProperties: false`` for
``forbid_unknown_fields`` and every ``Meta`` constraint), plus a struct's class attribute
``json_schema_extra`` (rules across fields that its use case checks), and a body whose schema
admits ``null`` may be left out (Litestar then passes ``None``).

:class:`DocumentedOpenAPIConfig` is an :class:`~litestar.openapi.OpenAPIConfig` whose document
goes through :func:`complete_document` before it is served.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from http import HTTPStatus
from typing import Any, Final

import msgspec
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.spec import OpenAPI

from tenantgate.http.problems import PROBLEM_MEDIA_TYPE

__all__ = [
    "ADMIN_SCHEME",
    "PROBLEM_SCHEMA",
    "TENANT_SCHEME",
    "DocumentedOpenAPIConfig",
    "complete_document",
    "problems",
]

TENANT_SCHEME: Final = "tenantKey"
"""The security scheme of the tenant API (``/v1``)."""

ADMIN_SCHEME: Final = "adminToken"
"""The security scheme of the operator API (``/admin/v1``)."""

PROBLEM_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "description": "An RFC 9457 problem; `detail` says what went wrong, when it may be said.",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string", "const": "about:blank"},
        "title": {"type": "string", "description": "the status' reason phrase"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
    },
}

FORBIDDEN_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "description": "The one refusal, byte for byte the same whatever the reason.",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"const": "about:blank"},
        "title": {"const": "Forbidden"},
        "status": {"const": 403},
    },
    "additionalProperties": False,
}

_SECONDS = {"type": "integer", "minimum": 0}
HEADERS: Final[dict[str, dict[str, Any]]] = {
    "X-Request-ID": {
        "description": "The request's id: the client's own if it sent a sane one, else a new one.",
        "schema": {"type": "string", "minLength": 1},
    },
    "Retry-After": {
        "description": "Whole seconds to wait before trying again.",
        "schema": {"type": "integer", "minimum": 1},
    },
    "RateLimit-Limit": {
        "description": "Requests the tenant's bucket holds when full (the plan's burst).",
        "schema": _SECONDS,
    },
    "RateLimit-Remaining": {
        "description": "Requests left in the bucket after this one.",
        "schema": _SECONDS,
    },
    "RateLimit-Reset": {
        "description": "Seconds until the bucket is full again.",
        "schema": _SECONDS,
    },
    "RateLimit-Policy": {
        "description": 'The plan quota, IETF draft field: `"plan";q=burst;w=seconds`.',
        "schema": {"type": "string", "minLength": 1},
    },
    "RateLimit": {
        "description": 'The bucket now, IETF draft field: `"plan";r=remaining;t=reset`.',
        "schema": {"type": "string", "minLength": 1},
    },
    "Deprecation": {
        "description": (
            "The key expires within 7 days: deprecated since this time (RFC 9745, `@` and"
            " Unix seconds)."
        ),
        "schema": {"type": "string", "pattern": "^@-?[0-9]+$"},
    },
    "Sunset": {
        "description": "When the key expires (RFC 8594, an HTTP date); only within 7 days of it.",
        "schema": {"type": "string", "minLength": 1},
    },
}
RATE_LIMIT_HEADERS: Final = (
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "RateLimit-Policy",
    "RateLimit",
)

DESCRIPTIONS: Final[Mapping[int, str]] = {
    403: (
        "Refused: a missing, malformed, unknown, expired or revoked credential, a suspended or"
        " deleted tenant, another tenant's key on a custom domain, or an ambiguous request."
        " The body and headers are the same whatever the reason."
    ),
    404: "No such resource (or one of another tenant), or a path that names no route.",
    409: "The change clashes with existing state (a custom_domain another tenant has).",
    413: "The request body is larger than the service's limit (TENANTGATE_MAX_BODY_BYTES).",
    422: "Invalid input: `detail` names each offending parameter or field.",
    429: "Rate limited: the tenant's bucket is empty; retry after `Retry-After` seconds.",
    503: "A backing service (PostgreSQL, Redis or S3) is unavailable; retry after `Retry-After`.",
}

_KEY_EXPIRY_HEADERS: Final = ("Deprecation", "Sunset")
_RETRY_AFTER: Final = frozenset({429, 503})
# Tenant answers made behind the limiter always carry its headers; these may come before it.
_RATE_LIMIT_HEADERS_OPTIONAL: Final = frozenset({404, 503})
_METHODS: Final = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def _standard(status: int) -> str:
    return DESCRIPTIONS.get(status, HTTPStatus(status).phrase)


def problems(*statuses: int, notes: Mapping[int, str] | None = None) -> dict[int, ResponseSpec]:
    """For a route's ``responses=``: statuses it answers besides those the rules give it, and
    ``notes`` on when it answers a status (any status, given by a rule or not), such as a
    ``422`` that depends on state JSON Schema cannot see.

    :func:`complete_document` gives each the problem body and headers, and the notes follow
    the status' standard description.
    """
    notes = notes or {}
    return {
        status: ResponseSpec(data_container=None, description=notes.get(status, _standard(status)))
        for status in {*statuses, *notes}
    }


def _header_ref(name: str, *, required: bool) -> dict[str, Any]:
    return {"$ref": f"#/components/headers/{name}"} if required else _optional(name)


def _optional(name: str) -> dict[str, Any]:
    # A header object with `required: false` cannot be a bare $ref, so it is written out.
    definition = HEADERS[name]
    return {
        "description": definition["description"] + " (not on every answer of this status)",
        "schema": definition["schema"],
        "required": False,
    }


def _headers(status: int, *, tenant: bool) -> dict[str, Any]:
    headers = {"X-Request-ID": _header_ref("X-Request-ID", required=True)}
    if status in _RETRY_AFTER:
        headers["Retry-After"] = _header_ref("Retry-After", required=True)
    if tenant and status != HTTPStatus.FORBIDDEN:
        required = status not in _RATE_LIMIT_HEADERS_OPTIONAL
        headers.update({name: _header_ref(name, required=required) for name in RATE_LIMIT_HEADERS})
        headers.update({name: _optional(name) for name in _KEY_EXPIRY_HEADERS})
    return headers


def _problem_response(status: int, note: str | None, *, tenant: bool) -> dict[str, Any]:
    schema = (
        {"$ref": "#/components/schemas/Forbidden"}
        if status == HTTPStatus.FORBIDDEN
        else {
            "allOf": [{"$ref": "#/components/schemas/Problem"}],
            "properties": {"status": {"const": status}},
        }
    )
    description = _standard(status)
    return {
        "description": f"{description} {note}" if note and note != description else description,
        "headers": _headers(status, tenant=tenant),
        "content": {PROBLEM_MEDIA_TYPE: {"schema": schema}},
    }


def _admits_null(schema: Mapping[str, Any]) -> bool:
    if schema.get("type") == "null" or "null" in (schema.get("type") or ()):
        return True
    return any(_admits_null(arm) for arm in (*schema.get("oneOf", ()), *schema.get("anyOf", ())))


def _drop_null(parameter: dict[str, Any]) -> None:
    """An optional parameter is left out, never null: Litestar documents ``str | None`` as
    ``oneOf: [string, null]``, which a query string cannot carry."""
    schema = parameter.get("schema") or {}
    arms = schema.get("oneOf")
    if not arms:
        return
    kept = [arm for arm in arms if arm.get("type") != "null"]
    if len(kept) == 1:
        del schema["oneOf"]
        schema.update(kept[0])
    else:
        schema["oneOf"] = kept


def _complete_operation(operation: dict[str, Any]) -> None:
    schemes = {name for requirement in operation.get("security") or () for name in requirement}
    tenant = TENANT_SCHEME in schemes
    parameters = operation.get("parameters") or ()
    body = operation.get("requestBody")
    responses: dict[str, Any] = operation.setdefault("responses", {})
    responses.pop("400", None)  # Litestar's ValidationException answer: tenantgate's is 422

    statuses = {int(status) for status in responses if int(status) >= HTTPStatus.BAD_REQUEST}
    if schemes:
        statuses |= {HTTPStatus.FORBIDDEN, HTTPStatus.SERVICE_UNAVAILABLE}
    if tenant:
        statuses.add(HTTPStatus.TOO_MANY_REQUESTS)
    if parameters or body:
        statuses.add(HTTPStatus.UNPROCESSABLE_ENTITY)
    if body:
        statuses.add(HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
    if any(parameter.get("in") == "path" for parameter in parameters):
        statuses.add(HTTPStatus.NOT_FOUND)
    for parameter in parameters:
        _drop_null(parameter)

    for key, response in responses.items():
        if int(key) < HTTPStatus.BAD_REQUEST:
            response["headers"] = {**(response.get("headers") or {}), **_headers(0, tenant=tenant)}
    for status in sorted(statuses):
        note = (responses.get(str(status)) or {}).get("description")
        responses[str(status)] = _problem_response(status, note, tenant=tenant)

    if body:
        schemas = [media.get("schema") or {} for media in body.get("content", {}).values()]
        body["required"] = not any(_admits_null(schema) for schema in schemas)


def complete_document(
    document: Mapping[str, Any],
    request_bodies: Iterable[type[msgspec.Struct]] = (),
    schemas: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """A copy of ``document`` (an OpenAPI 3.1 document as a dict) with every status each
    operation can answer, the problem schema, the response headers, ``request_bodies``'
    component schemas as msgspec validates them, and the named ``schemas`` they refer to (see
    the module's docstring)."""
    completed = copy.deepcopy(dict(document))
    components = completed.setdefault("components", {})
    named = components.setdefault("schemas", {})
    named.update(copy.deepcopy(dict(schemas or {})))
    named["Problem"] = PROBLEM_SCHEMA
    named["Forbidden"] = FORBIDDEN_SCHEMA
    components["headers"] = {**components.get("headers", {}), **HEADERS}
    bodies = tuple(request_bodies)
    if bodies:
        _, strict = msgspec.json.schema_components(
            bodies, ref_template="#/components/schemas/{name}"
        )
        for body in bodies:  # rules across fields, which msgspec cannot attach to a struct
            strict[body.__name__].update(copy.deepcopy(getattr(body, "json_schema_extra", {})))
        named.update(strict)

    for path_item in completed.get("paths", {}).values():
        for method in _METHODS:
            if (operation := path_item.get(method)) is not None:
                _complete_operation(operation)
    return completed


@dataclass
class _CompletedOpenAPI(OpenAPI):
    """The generated document; its dict form (what ``/schema`` serves) is completed."""

    request_bodies: tuple[type[msgspec.Struct], ...] = field(default=(), repr=False)
    named_schemas: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, repr=False)

    @property
    def _exclude_fields(self) -> set[str]:
        # Not OpenAPI members: what completing the document needs.
        return {*super()._exclude_fields, "request_bodies", "named_schemas"}

    def to_schema(self) -> dict[str, Any]:
        return complete_document(super().to_schema(), self.request_bodies, self.named_schemas)


@dataclass
class DocumentedOpenAPIConfig(OpenAPIConfig):
    """An ``OpenAPIConfig`` whose served document goes through :func:`complete_document`."""

    request_bodies: tuple[type[msgspec.Struct], ...] = ()
    """The structs decoded from request bodies: their schemas are stated as msgspec's."""
    named_schemas: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Component schemas the request bodies' schemas refer to."""

    def to_openapi_schema(self) -> OpenAPI:
        generated = super().to_openapi_schema()
        values = {spec.name: getattr(generated, spec.name) for spec in fields(generated)}
        return _CompletedOpenAPI(
            **values, request_bodies=self.request_bodies, named_schemas=self.named_schemas
        )
