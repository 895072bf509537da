"""Prometheus metrics of the HTTP service: a registry per application.

:class:`ServiceMetrics` owns the registry and the collectors, :class:`MetricsMiddleware`
counts and times every routed request by method, route template (never the raw path, which
would let clients create series at will) and status, and :func:`metrics_endpoint` serves
``GET /metrics`` in the Prometheus text format. Each process keeps its own numbers: with
several granian workers, scrape each one or run one worker per instance.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Final, cast

from litestar import Response, get
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from collections.abc import Iterator

    from litestar.datastructures import State
    from litestar.types import ASGIApp, HTTPScope, Message, Receive, Scope, Send

    from tenantgate.audit.seal import SealCounts
    from tenantgate.audit.writer import AuditWriter
    from tenantgate.cluster_limits import ClusterBudget
    from tenantgate.identity.brake import GuessingBrake
    from tenantgate.identity.key_cache import KeyCache
    from tenantgate.identity.liveness import SubscriptionLiveness

__all__ = [
    "METRICS_STATE_KEY",
    "RESPONSE_STATUS_STATE_KEY",
    "AuditCollector",
    "FrontDoorCollector",
    "MetricsMiddleware",
    "ServiceMetrics",
    "metrics_endpoint",
]

RESPONSE_STATUS_STATE_KEY: Final = "tenantgate.response_status"
"""The status of the response sent, in ``scope["state"]`` once :class:`MetricsMiddleware` saw
it go out (the audit middleware, inside it, reads it there)."""

METRICS_STATE_KEY: Final = "tenantgate_metrics"
"""The key of the application's :class:`ServiceMetrics` in ``app.state``."""

# Litestar appends the charset to every text/* media type itself.
_CONTENT_TYPE: Final = CONTENT_TYPE_LATEST.removesuffix("; charset=utf-8")

_KNOWN_METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)
_LATENCY_BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0
)  # fmt: skip


class ServiceMetrics:
    """The collectors of one application, in a registry of their own."""

    __slots__ = ("_durations", "_observers", "_requests", "registry")

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter(
            "tenantgate_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self._durations = Histogram(
            "tenantgate_http_request_duration_seconds",
            "Time from receiving a request to finishing its response, by method and route.",
            ("method", "route"),
            registry=self.registry,
            buckets=_LATENCY_BUCKETS,
        )
        # Labelled children are looked up once per label set, not on every request.
        self._observers: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request and record how long it took."""
        key = (method, route, status)
        observers = self._observers.get(key)
        if observers is None:
            if method not in _KNOWN_METHODS:
                method = "OTHER"
            observers = (
                self._requests.labels(method, route, str(status)),
                self._durations.labels(method, route),
            )
            self._observers[key] = observers
        counter, histogram = observers
        counter.inc()
        histogram.observe(seconds)

    def exposition(self) -> bytes:
        """The current values in the Prometheus text format."""
        return generate_latest(self.registry)


class MetricsMiddleware(ASGIMiddleware):
    """Count and time each routed HTTP request in a :class:`ServiceMetrics`."""

    scopes = (ScopeType.HTTP,)

    def __init__(self, metrics: ServiceMetrics) -> None:
        self._metrics = metrics

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        started = time.perf_counter()
        # An exception escaping the route means the outer handler answers with a 5xx.
        status = 500

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # For the middleware inside (the audit's), which reads it once the route has
                # answered instead of wrapping `send` a second time.
                scope["state"][RESPONSE_STATUS_STATE_KEY] = status
            await send(message)

        try:
            await next_app(scope, receive, send_noting_status)
        finally:
            self._metrics.observe(
                cast("HTTPScope", scope)["method"],
                scope.get("path_template", ""),
                status,
                time.perf_counter() - started,
            )


@get("/metrics", media_type=_CONTENT_TYPE, sync_to_thread=False, tags=["service"])
def metrics_endpoint(state: State) -> Response[bytes]:
    """The service's metrics in the Prometheus text format."""
    metrics: ServiceMetrics = state[METRICS_STATE_KEY]
    return Response(metrics.exposition(), media_type=_CONTENT_TYPE)


class FrontDoorCollector(Collector):
    """Identification and rate limiting, read at scrape time from the objects that count
    them (nothing is done per request beyond an integer increment)."""

    def __init__(
        self,
        keys: KeyCache,
        brake: GuessingBrake,
        cluster: ClusterBudget | None = None,
        liveness: SubscriptionLiveness | None = None,
    ) -> None:
        self._keys = keys
        self._brake = brake
        self._cluster = cluster
        self._liveness = liveness

    def collect(self) -> Iterator[Metric]:
        decisions = CounterMetricFamily(
            "tenantgate_rate_limit_decisions",
            "Requests of identified tenants, by plan and by the limiter's decision.",
            labels=("plan", "decision"),
        )
        for plan, (limited, allowed) in sorted(self._keys.counts.snapshot().items()):
            decisions.add_metric((plan, "allowed"), allowed)
            decisions.add_metric((plan, "limited"), limited)
        yield decisions
        yield CounterMetricFamily(
            "tenantgate_guessing_braked",
            "Requests refused without a lookup: their address failed too many identifications.",
            value=self._brake.braked,
        )
        yield CounterMetricFamily(
            "tenantgate_key_lookups",
            "Key lookups in PostgreSQL (cache misses).",
            value=self._keys.lookups,
        )
        yield GaugeMetricFamily(
            "tenantgate_key_lookups_in_flight",
            "Key lookups running now.",
            value=self._keys.lookups_in_flight,
        )
        yield CounterMetricFamily(
            "tenantgate_key_records_trusted",
            "Key records cached for TENANTGATE_KEY_CACHE_TRUSTED_SECONDS (the announcements "
            "subscription was provably live).",
            value=self._keys.trusted_inserts,
        )
        if self._liveness is not None:
            yield GaugeMetricFamily(
                "tenantgate_announcements_live",
                "1 while the announcements subscription answered a ping within the last second.",
                value=int(self._liveness.proven()),
            )
            yield CounterMetricFamily(
                "tenantgate_announcements_lapses",
                "Times the announcements subscription stopped being provably live after key "
                "records were trusted on it (each cut them back to the short TTL).",
                value=self._liveness.losses,
            )
        if self._cluster is not None:
            fallback = CounterMetricFamily(
                "tenantgate_ratelimit_fallback_decisions",
                "Requests decided by the host tier alone, by plan: the cluster tier's Redis "
                "was unavailable.",
                labels=("plan",),
            )
            for plan, count in sorted(self._cluster.fallback_decisions.items()):
                fallback.add_metric((plan,), count)
            yield fallback
            yield CounterMetricFamily(
                "tenantgate_ratelimit_lease_round_trips",
                "Round trips to Redis to lease cluster rate-limit tokens.",
                value=self._cluster.round_trips,
            )
        if self._keys.hsm is not None:
            yield CounterMetricFamily(
                "tenantgate_hsm_unavailable",
                "Requests with an HSM key not in cache refused because the HSM failed.",
                value=self._keys.hsm_unavailable,
            )
            yield CounterMetricFamily(
                "tenantgate_hsm_unavailable_accepted",
                "Requests with an HSM key accepted while the HSM failed: the HSM had confirmed "
                "the key within the last 10 minutes.",
                value=self._keys.hsm.remembered_accepted,
            )


class AuditCollector(Collector):
    """The audit writer's and the sealer's counts, read at scrape time."""

    def __init__(self, writer: AuditWriter, seals: SealCounts | None = None) -> None:
        self._writer = writer
        self._seals = seals

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "tenantgate_audit_written",
            "Audit records written from the queue (records written in a request's own "
            "transaction are not counted here).",
            value=self._writer.written,
        )
        yield CounterMetricFamily(
            "tenantgate_audit_dropped",
            "Audit records dropped: the queue was full, or writing them failed.",
            value=self._writer.dropped,
        )
        yield GaugeMetricFamily(
            "tenantgate_audit_pending",
            "Audit records waiting to be written.",
            value=self._writer.pending,
        )
        if self._seals is not None:
            yield CounterMetricFamily(
                "tenantgate_audit_seal_failures",
                "Periodic seals of the audit chains that failed (S3, PostgreSQL or the HSM "
                "down, or a bucket problem); each is logged and tried again.",
                value=self._seals.failures,
            )
