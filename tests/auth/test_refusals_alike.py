"""Every refusal is the one 403, byte for byte: routing errors on the tenant and admin APIs
for callers without valid credentials, and requests with two `Authorization` or two `Host`
headers (a proxy could act on one and the service on the other)."""

from __future__ import annotations

import socket
import time
from typing import Any
from urllib.parse import urlsplit

import pytest

from tenantgate.identity.responses import FORBIDDEN_BODY

pytestmark = pytest.mark.servers


def _shape(answer: Any) -> tuple[Any, ...]:
    headers = sorted(
        (name.lower(), value)
        for name, value in answer.headers.items()
        if name.lower() not in {"x-request-id", "date"}
    )
    return answer.status_code, answer.content, headers


@pytest.fixture
def reference(service: Any) -> tuple[Any, ...]:
    """The 403 of a request with no key at all, to a route that exists."""
    answer = service.get("/v1/me")
    assert answer.status_code == 403
    return _shape(answer)


ROUTING_ERRORS = [
    ("GET", "/v1/items/not-a-uuid"),
    ("GET", "/v1/nothing"),
    ("GET", "/v1"),
    ("PATCH", "/v1/me"),
    ("POST", "/v1/cache"),
    ("GET", "/admin/v1/tenants/not-a-uuid"),
    ("DELETE", "/admin/v1/plans"),
    ("GET", "/admin/v1/nothing"),
]


@pytest.mark.parametrize(("method", "path"), ROUTING_ERRORS)
def test_a_routing_error_is_the_403_without_credentials(
    method: str, path: str, service: Any, reference: tuple[Any, ...]
) -> None:
    for headers in ({}, {"Authorization": "Bearer tg_live_nonsense"}):
        answer = service.request(method, path, headers=headers)
        assert _shape(answer) == reference, (method, path, headers)


@pytest.mark.parametrize(("method", "path"), ROUTING_ERRORS)
def test_a_routing_error_is_told_to_a_caller_with_credentials(
    method: str, path: str, service: Any, make_tenant: Any, admin_headers: dict[str, str]
) -> None:
    headers = admin_headers if path.startswith("/admin/") else make_tenant().headers
    answer = service.request(method, path, headers=headers)
    assert answer.status_code in {404, 405}, answer.text


def test_two_authorization_headers_are_the_403(
    service: Any, make_tenant: Any, reference: tuple[Any, ...], admin_headers: dict[str, str]
) -> None:
    tenant = make_tenant()
    for first, second in (
        ("Bearer tg_live_bad", f"Bearer {tenant.key}"),
        (f"Bearer {tenant.key}", "Bearer tg_live_bad"),
        (f"Bearer {tenant.key}", f"Bearer {tenant.key}"),
    ):
        answer = service.get(
            "/v1/me", headers=[("Authorization", first), ("Authorization", second)]
        )
        assert _shape(answer) == reference
    token = admin_headers["Authorization"]
    for pair in ((token, "Bearer wrong"), ("Bearer wrong", token)):
        answer = service.get(
            "/admin/v1/plans", headers=[("Authorization", pair[0]), ("Authorization", pair[1])]
        )
        assert _shape(answer) == reference


def _raw(url: str, request: bytes) -> tuple[int, bytes]:
    """Send ``request`` as is (an HTTP client would tidy it) and read the answer's status
    and body (the connection is closed by the request)."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as connection:
        connection.sendall(request)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def test_two_host_headers_are_the_403(served: str, make_tenant: Any) -> None:
    tenant = make_tenant()
    key = tenant.key.encode()
    status, body = _raw(
        served,
        b"GET /v1/me HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n"
        b"Authorization: Bearer " + key + b"\r\nConnection: close\r\n\r\n",
    )
    assert (status, body) == (403, FORBIDDEN_BODY)
    status, _ = _raw(
        served,
        b"GET /v1/me HTTP/1.1\r\nHost: a.example\r\n"
        b"Authorization: Bearer " + key + b"\r\nConnection: close\r\n\r\n",
    )
    assert status == 200


def test_no_host_is_the_403_where_custom_domains_are_bound(served: str, make_tenant: Any) -> None:
    tenant = make_tenant()
    make_tenant(tier="enterprise", custom_domain=f"api.{tenant.id[:8]}.example")
    time.sleep(1.5)  # the served process reloads custom domains every second
    status, body = _raw(
        served,
        b"GET /v1/me HTTP/1.0\r\nAuthorization: Bearer " + tenant.key.encode() + b"\r\n\r\n",
    )
    assert (status, body) == (403, FORBIDDEN_BODY)
