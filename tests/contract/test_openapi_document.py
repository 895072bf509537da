"""What `/schema/openapi.json` says about each operation, and that the handlers agree.

schemathesis (test_schemathesis.py) checks answers against the document; these tests check the
document states what API.md promises: every status each operation can answer, as problem+json,
with its headers, and request constraints exactly as the handlers enforce them.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tenantgate.errors import InvalidInputError
from tenantgate.tenancy.cursor import CURSOR_PATTERN, decode_cursor
from tenantgate.tenancy.schemas import DOMAIN_PATTERN, REQUEST_BODIES, normalise_domain

PROBLEM = "application/problem+json"
METHODS = ("get", "put", "post", "delete", "patch")
RATE_LIMIT_HEADERS = {
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "RateLimit-Policy",
    "RateLimit",
}


@pytest.fixture(scope="module")
def document(service) -> dict[str, Any]:
    answer = service.get("/schema/openapi.json")
    assert answer.status_code == 200
    schema: dict[str, Any] = answer.json()
    return schema


def _operations(document: dict[str, Any], prefix: str) -> list[tuple[str, str, dict[str, Any]]]:
    found = [
        (method.upper(), path, item[method])
        for path, item in document["paths"].items()
        if path.startswith(prefix)
        for method in METHODS
        if method in item
    ]
    assert found, f"no operation under {prefix}"
    return found


def _header(document: dict[str, Any], header: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in header:
        name = header["$ref"].rsplit("/", 1)[-1]
        return {"required": True, **document["components"]["headers"][name]}
    return header


def _required_headers(document: dict[str, Any], response: dict[str, Any]) -> set[str]:
    return {
        name
        for name, header in (response.get("headers") or {}).items()
        if _header(document, header).get("required")
    }


@pytest.mark.servers
@pytest.mark.parametrize("prefix", ["/v1/", "/admin/v1/"])
def test_every_authenticated_operation_documents_403_and_503_as_problems(document, prefix):
    for method, path, operation in _operations(document, prefix):
        responses = operation["responses"]
        assert "400" not in responses, (method, path)  # tenantgate answers 422, never 400
        for status in ("403", "503"):
            assert status in responses, (method, path, status)
        forbidden = responses["403"]["content"][PROBLEM]["schema"]
        assert forbidden == {"$ref": "#/components/schemas/Forbidden"}
        assert "Retry-After" in _required_headers(document, responses["503"])
        for status, response in responses.items():
            if int(status) >= 400:
                assert set(response["content"]) == {PROBLEM}, (method, path, status)
            assert "X-Request-ID" in _required_headers(document, response), (method, path)


@pytest.mark.servers
def test_the_forbidden_schema_is_the_one_body(document, service):
    schema = document["components"]["schemas"]["Forbidden"]
    assert schema["additionalProperties"] is False
    body = service.get("/v1/me").json()
    assert body == {
        name: rule["const"] for name, rule in schema["properties"].items()
    }  # {"type": "about:blank", "title": "Forbidden", "status": 403}


@pytest.mark.servers
def test_tenant_operations_document_rate_limits(document):
    for method, path, operation in _operations(document, "/v1/"):
        responses = operation["responses"]
        too_many = responses["429"]
        assert _required_headers(document, too_many) >= {"Retry-After", *RATE_LIMIT_HEADERS}
        for status, response in responses.items():
            if int(status) < 300:
                assert _required_headers(document, response) >= RATE_LIMIT_HEADERS, (method, path)
        assert not set(responses["403"].get("headers", {})) & RATE_LIMIT_HEADERS


@pytest.mark.servers
def test_admin_operations_are_not_rate_limited(document):
    for method, path, operation in _operations(document, "/admin/v1/"):
        assert "429" not in operation["responses"], (method, path)


@pytest.mark.servers
@pytest.mark.parametrize("prefix", ["/v1/", "/admin/v1/"])
def test_input_errors_are_documented_where_input_is_read(document, prefix):
    for method, path, operation in _operations(document, prefix):
        responses = operation["responses"]
        parameters = operation.get("parameters") or []
        if operation.get("requestBody"):
            assert {"413", "422"} <= set(responses), (method, path)
        if parameters:
            assert "422" in responses, (method, path)
        if any(parameter["in"] == "path" for parameter in parameters):
            assert "404" in responses, (method, path)


@pytest.mark.servers
def test_a_taken_custom_domain_is_a_documented_409(document):
    tenants = document["paths"]["/admin/v1/tenants"]["post"]["responses"]
    tenant = document["paths"]["/admin/v1/tenants/{tenant_id}"]["patch"]["responses"]
    assert "409" in tenants
    assert "409" in tenant


@pytest.mark.servers
def test_readyz_documents_its_503(document):
    responses = document["paths"]["/readyz"]["get"]["responses"]
    assert "Retry-After" in _required_headers(document, responses["503"])
    assert "403" not in responses


@pytest.mark.servers
def test_request_bodies_are_documented_as_msgspec_decodes_them(document):
    schemas = document["components"]["schemas"]
    for body in REQUEST_BODIES:
        assert schemas[body.__name__]["additionalProperties"] is False, body.__name__
    keys = document["paths"]["/admin/v1/tenants/{tenant_id}/keys"]["post"]["requestBody"]
    assert keys["required"] is False  # no body: the defaults
    items = document["paths"]["/v1/items"]["post"]["requestBody"]
    assert items["required"] is True


@pytest.mark.servers
@pytest.mark.parametrize("path", ["/v1/items", "/admin/v1/tenants"])
def test_the_cursor_parameter_is_what_decode_cursor_accepts(document, path):
    (cursor,) = [
        parameter
        for parameter in document["paths"][path]["get"]["parameters"]
        if parameter["name"] == "cursor"
    ]
    assert cursor["schema"]["type"] == "string"  # never null: a query string cannot say null
    assert cursor["schema"]["pattern"] == CURSOR_PATTERN
    assert cursor["schema"]["minLength"] == cursor["schema"]["maxLength"] == 32


@given(st.from_regex(CURSOR_PATTERN, fullmatch=True))
def test_every_cursor_the_schema_allows_decodes(cursor):
    created_at, row_id = decode_cursor(cursor)
    assert isinstance(row_id, uuid.UUID)
    assert created_at.tzinfo is not None


@given(st.from_regex(DOMAIN_PATTERN, fullmatch=True).filter(lambda domain: len(domain) <= 253))
def test_every_custom_domain_the_schema_allows_is_one(domain):
    assert normalise_domain(domain) == domain.lower().removesuffix(".")


@pytest.mark.parametrize(
    "domain",
    ["localhost", "a..b", "-a.com", "a-.com", "a.123", "a.com..", " a.com", "a.com\n", "a_b.com"],
)
def test_what_the_domain_pattern_refuses_is_refused(domain):
    assert not re.fullmatch(DOMAIN_PATTERN, domain)
    with pytest.raises(InvalidInputError, match="not a valid host name"):
        normalise_domain(domain)


# -- the handlers refuse what the document forbids, and accept what it allows ---------------

ADMIN_BODIES_OF_THE_WRONG_TYPE = [
    ("PUT", "/admin/v1/plans/contract-plan", {"rate_per_second": "5", "burst": 7}),
    ("PUT", "/admin/v1/plans/contract-plan", {"rate_per_second": 5, "burst": "7"}),
    ("PUT", "/admin/v1/plans/contract-plan", {"rate_per_second": 5, "burst": 7.5}),
    ("POST", "/admin/v1/tenants/{tenant}/keys", {"expires_in_seconds": "60"}),
    ("POST", "/admin/v1/tenants/{tenant}/keys", {"hsm": "false"}),
    ("POST", "/admin/v1/tenants/{tenant}/keys/{key}/rotate", {"grace_seconds": "60"}),
    ("POST", "/admin/v1/tenants", {"name": "x", "custom_domain": "shop.example"}),
]


@pytest.mark.servers
@pytest.mark.parametrize(("method", "path", "body"), ADMIN_BODIES_OF_THE_WRONG_TYPE)
def test_a_string_is_not_a_number_nor_a_boolean(
    service, admin_headers, make_tenant, method, path, body
):
    tenant = make_tenant()
    path = path.format(tenant=tenant.id, key=tenant.key_id)
    answer = service.request(method, path, json=body, headers=admin_headers)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith(PROBLEM)


@pytest.mark.servers
def test_a_number_without_a_fraction_is_an_integer(service, admin_headers):
    answer = service.put(
        "/admin/v1/plans/contract-plan",
        json={"rate_per_second": 5, "burst": 7.0},
        headers=admin_headers,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "name": "contract-plan",
        "rate_per_second": 5,
        "burst": 7,
        "max_key_age_days": None,
    }


@pytest.mark.servers
@pytest.mark.parametrize("body", [None, b"null", b""])
def test_a_key_body_may_be_left_out(service, admin_headers, make_tenant, body):
    tenant = make_tenant()
    answer = service.post(
        f"/admin/v1/tenants/{tenant.id}/keys",
        content=body,
        headers={**admin_headers, "Content-Type": "application/json"},
    )
    assert answer.status_code == 201, answer.text
    assert answer.json()["expires_at"] is None
