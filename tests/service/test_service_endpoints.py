"""The service endpoints and the behaviour every response shares.

Most tests point the app at ports nothing listens on: the service must start anyway, and
only ``/readyz`` may notice. The one test needing live servers uses the embedded stack.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from litestar import Litestar, get, post
from litestar.openapi import OpenAPIConfig
from litestar.params import FromQuery, JSONBody
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tenantgate import __version__
from tenantgate.app import create_app
from tenantgate.errors import ServiceUnavailableError
from tenantgate.plugin import TenantGatePlugin
from tenantgate.routes import SERVICE_ROUTES
from tenantgate.settings import Settings

if TYPE_CHECKING:
    from tenantgate.dev import StackInfo

PROBLEM = "application/problem+json"


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _settings(**environ: str) -> Settings:
    return Settings.from_env(_unreachable_services() | environ)


def _unreachable_services() -> dict[str, str]:
    dead = _unused_port()  # nothing listens here: every backing service is "down"
    return {
        "TENANTGATE_DATABASE_URL": f"postgresql://tenantgate:pw@127.0.0.1:{dead}/tenantgate",
        "TENANTGATE_REDIS_URL": f"redis://127.0.0.1:{dead}/0",
        "TENANTGATE_S3_ENDPOINT_URL": f"http://127.0.0.1:{dead}",
        "TENANTGATE_S3_ACCESS_KEY_ID": "test-access-key",
        "TENANTGATE_S3_SECRET_ACCESS_KEY": "test-secret-key",
        "TENANTGATE_ADMIN_TOKEN": "test-admin-token-0123456789",
        "TENANTGATE_KEY_PEPPER": "11" * 32,
        "TENANTGATE_MAX_BODY_BYTES": "1024",
    }


@get("/test/boom", sync_to_thread=False)
def boom() -> None:
    raise RuntimeError("internal detail that must not leak")


@get("/test/backend-down", sync_to_thread=False)
def backend_down() -> None:
    raise ServiceUnavailableError("postgres", retry_after=3)


@post("/test/echo", sync_to_thread=False)
def echo(data: JSONBody[dict[str, int]], count: FromQuery[int] = 1) -> dict[str, Any]:
    return {"data": data, "count": count}


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient[Litestar]]:
    """A user's app built on the plugin, backing services unreachable."""
    app = Litestar(
        route_handlers=[*SERVICE_ROUTES, boom, backend_down, echo],
        plugins=[TenantGatePlugin(_settings())],
        openapi_config=OpenAPIConfig(title="test", version="0"),
    )
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["content-type"] == PROBLEM
    problem: dict[str, Any] = response.json()
    assert problem["type"] == "about:blank"
    assert problem["status"] == status
    assert set(problem) <= {"type", "title", "status", "detail"}
    return problem


class TestHealth:
    def test_healthz_answers_while_backing_services_are_down(
        self, client: TestClient[Litestar]
    ) -> None:
        response = client.get("/healthz")
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}

    def test_readyz_is_503_naming_every_unreachable_service(
        self, client: TestClient[Litestar]
    ) -> None:
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert response.headers["content-type"] == PROBLEM
        body = response.json()
        assert body["checks"] == {
            "postgres": "unavailable",
            "redis": "unavailable",
            "s3": "unavailable",
        }
        assert "postgres" in body["detail"]


@pytest.mark.servers
def test_readyz_is_200_when_every_service_answers(stack_info: StackInfo) -> None:
    settings = _settings(**stack_info.service_environment(stack_info.postgres_admin_url))
    with TestClient(create_app(settings)) as client:
        response = client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "ready",
        "checks": {"postgres": "ok", "redis": "ok", "s3": "ok"},
    }


@pytest.mark.servers
def test_readiness_recovers_when_a_service_comes_back(stack_info: StackInfo) -> None:
    import subprocess

    from tenantgate.dev import redis_server_binary

    binary = redis_server_binary()
    assert binary is not None
    port = _unused_port()
    settings = _settings(
        **stack_info.service_environment(stack_info.postgres_admin_url)
        | {"TENANTGATE_REDIS_URL": f"redis://127.0.0.1:{port}/0"}
    )
    with TestClient(create_app(settings)) as client:
        down = client.get("/readyz")
        assert down.status_code == 503
        assert down.json()["checks"] == {"postgres": "ok", "redis": "unavailable", "s3": "ok"}

        redis_server = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        try:
            statuses = []
            for _ in range(50):
                statuses.append(client.get("/readyz").status_code)
                if statuses[-1] == 200:
                    break
                time.sleep(0.1)
            assert statuses[-1] == 200, statuses
        finally:
            redis_server.terminate()
            redis_server.wait(timeout=10)


class TestRequestId:
    def test_sane_client_id_is_echoed(self, client: TestClient[Litestar]) -> None:
        sane = "req-1.2:3_ABC"
        response = client.get("/healthz", headers={"X-Request-ID": sane})
        assert response.headers["x-request-id"] == sane

    @pytest.mark.parametrize(
        "insane",
        ["", "has space", "x" * 129, "semi;colon", "ünïcode", "a/b"],
    )
    def test_insane_client_id_is_replaced(self, client: TestClient[Litestar], insane: str) -> None:
        response = client.get("/healthz", headers={"X-Request-ID": insane.encode()})
        generated = response.headers["x-request-id"]
        assert generated != insane
        assert len(generated) == 32
        int(generated, 16)

    def test_generated_when_absent_and_unique(self, client: TestClient[Litestar]) -> None:
        first = client.get("/healthz").headers["x-request-id"]
        second = client.get("/healthz").headers["x-request-id"]
        assert first != second

    def test_generated_ids_differ_in_a_forked_worker(self) -> None:
        """granian forks its workers: each must draw ids of its own, not repeat its parent's."""
        import multiprocessing

        ours = _next_request_id()
        with multiprocessing.get_context("fork").Pool(1) as pool:
            theirs = pool.apply(_next_request_id)
        assert ours[:20] != theirs[:20]
        assert ours != theirs

    def test_longest_sane_id_is_kept(self, client: TestClient[Litestar]) -> None:
        longest = "a" * 128
        assert (
            client.get("/healthz", headers={"X-Request-ID": longest}).headers["x-request-id"]
            == longest
        )

    @pytest.mark.parametrize(
        ("method", "path", "status"),
        [
            ("GET", "/no/such/route", 404),
            ("DELETE", "/healthz", 405),
            ("GET", "/test/boom", 500),
            ("GET", "/test/backend-down", 503),
            ("POST", "/test/echo", 422),
            ("GET", "/readyz", 503),
        ],
    )
    def test_present_on_errors(
        self, client: TestClient[Litestar], method: str, path: str, status: int
    ) -> None:
        response = client.request(method, path, headers={"X-Request-ID": "trace-42"})
        assert response.status_code == status
        assert response.headers.get_list("x-request-id") == ["trace-42"]


class TestProblems:
    def test_unknown_route_is_404_problem(self, client: TestClient[Litestar]) -> None:
        response = client.get("/no/such/route")
        assert assert_problem(response, 404) == {
            "type": "about:blank",
            "title": "Not Found",
            "status": 404,
        }

    def test_wrong_method_is_405_problem_with_allow(self, client: TestClient[Litestar]) -> None:
        response = client.delete("/healthz")
        assert assert_problem(response, 405)["title"] == "Method Not Allowed"
        assert "GET" in response.headers["allow"]

    def test_unexpected_exception_is_500_without_internals(
        self, client: TestClient[Litestar], caplog: pytest.LogCaptureFixture
    ) -> None:
        response = client.get("/test/boom")
        problem = assert_problem(response, 500)
        assert problem == {"type": "about:blank", "title": "Internal Server Error", "status": 500}
        assert "internal detail" not in response.text
        assert any("RuntimeError" in record.getMessage() for record in caplog.records)

    def test_service_unavailable_is_503_with_retry_after(
        self, client: TestClient[Litestar]
    ) -> None:
        response = client.get("/test/backend-down")
        problem = assert_problem(response, 503)
        assert problem["detail"] == "postgres is unavailable"
        assert response.headers["retry-after"] == "3"

    @pytest.mark.parametrize(
        ("url", "body", "mentions"),
        [
            ("/test/echo", b'{"a": "not a number"}', "body"),
            ("/test/echo", b"{not json", "malformed"),
            ("/test/echo?count=many", b'{"a": 1}', "count"),
        ],
    )
    def test_invalid_input_is_422_with_detail(
        self, client: TestClient[Litestar], url: str, body: bytes, mentions: str
    ) -> None:
        response = client.post(url, content=body, headers={"content-type": "application/json"})
        problem = assert_problem(response, 422)
        assert mentions in problem["detail"]

    def test_body_over_the_limit_is_413(self, client: TestClient[Litestar]) -> None:
        body = b'{"a": 1, "padding": ' + b"1" * 2048 + b"}"
        response = client.post(
            "/test/echo", content=body, headers={"content-type": "application/json"}
        )
        assert_problem(response, 413)

    def test_body_within_the_limit_is_accepted(self, client: TestClient[Litestar]) -> None:
        response = client.post("/test/echo", json={"a": 1})
        assert response.status_code == 201
        assert response.json() == {"data": {"a": 1}, "count": 1}


class TestMetrics:
    def test_prometheus_text_format(self, client: TestClient[Litestar]) -> None:
        response = client.get("/metrics")
        assert response.status_code == 200
        content_type = response.headers["content-type"]
        assert content_type.startswith("text/plain; version=")
        assert content_type.count("charset") == 1

    def test_requests_are_counted_by_route_template_and_status(
        self, client: TestClient[Litestar]
    ) -> None:
        before = _requests_total(client, route="/healthz", status="200")
        for _ in range(3):
            client.get("/healthz")
        client.get("/test/boom")
        assert _requests_total(client, route="/healthz", status="200") == before + 3
        assert _requests_total(client, route="/test/boom", status="500") >= 1

    def test_latency_is_recorded(self, client: TestClient[Litestar]) -> None:
        client.get("/healthz")
        text = client.get("/metrics").text
        families = {family.name: family for family in text_string_to_metric_families(text)}
        histogram = families["tenantgate_http_request_duration_seconds"]
        counts = [
            sample.value
            for sample in histogram.samples
            if sample.name.endswith("_count") and sample.labels.get("route") == "/healthz"
        ]
        assert counts
        assert counts[0] >= 1

    def test_registry_is_per_app(self) -> None:
        with TestClient(create_app(_settings())) as fresh:
            assert _requests_total(fresh, route="/healthz", status="200") == 0


def _requests_total(client: TestClient[Litestar], *, route: str, status: str) -> float:
    text = client.get("/metrics").text
    for family in text_string_to_metric_families(text):
        if family.name == "tenantgate_http_requests":
            for sample in family.samples:
                if (
                    sample.name == "tenantgate_http_requests_total"
                    and sample.labels["route"] == route
                    and sample.labels["status"] == status
                    and sample.labels["method"] == "GET"
                ):
                    return sample.value
    return 0.0


class TestOpenApi:
    def test_schema_is_openapi_31_at_the_documented_path(self) -> None:
        with TestClient(create_app(_settings())) as client:
            response = client.get("/schema/openapi.json")
        assert response.status_code == 200
        schema = response.json()
        assert schema["openapi"].startswith("3.1")
        assert schema["info"] == {"title": "tenantgate", "version": __version__}
        assert {"/healthz", "/readyz", "/metrics"} <= set(schema["paths"])


class TestPluginWiring:
    def test_users_own_exception_handler_wins(self) -> None:
        def teapot(request: Any, exc: Exception) -> Any:
            from litestar import Response

            return Response({"mine": True}, status_code=418)

        app = Litestar(
            route_handlers=[*SERVICE_ROUTES, boom],
            plugins=[TenantGatePlugin(_settings())],
            exception_handlers={RuntimeError: teapot},
        )
        with TestClient(app, raise_server_exceptions=False) as client:
            response = client.get("/test/boom")
            assert response.status_code == 418
            assert response.headers["x-request-id"]
            assert_problem(client.get("/no/such/route"), 404)

    def test_resources_are_injected_and_closed(self) -> None:
        from litestar.di import NamedDependency

        from tenantgate.resources import Resources

        seen: list[Resources] = []

        @get("/test/resources", sync_to_thread=False)
        def uses_resources(resources: NamedDependency[Resources]) -> dict[str, bool]:
            seen.append(resources)
            return {"ok": True}

        app = Litestar(
            route_handlers=[uses_resources],
            plugins=[TenantGatePlugin(_settings())],
            signature_namespace={"NamedDependency": NamedDependency, "Resources": Resources},
        )
        with TestClient(app) as client:
            assert client.get("/test/resources").json() == {"ok": True}
        assert len(seen) == 1
        assert seen[0].database.pool.is_closing()


def _next_request_id() -> str:
    from tenantgate.http.request_id import _new_ids

    return _new_ids.next()


def test_the_services_factory_freezes_what_lives_as_long_as_the_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Objects alive once the served app has started are kept out of the collector's
    generations (full collections walking them stalled requests); a plain app built with the
    plugin leaves the collector alone."""
    import gc

    from tenantgate.app import create_app_from_env

    for name, value in _unreachable_services().items():
        monkeypatch.setenv(name, value)
    gc.unfreeze()
    try:
        with TestClient(create_app(Settings.from_env())) as client:
            assert client.get("/healthz").status_code == 200
            assert gc.get_freeze_count() == 0
        with TestClient(create_app_from_env()) as client:
            assert client.get("/healthz").status_code == 200
            assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()
