"""The HTTP layer shared by every tenantgate application: request ids, metrics, problems.

Internal: the public API is :mod:`tenantgate` (its ``__all__``); names here may change.
"""

from __future__ import annotations

from tenantgate.http.metrics import MetricsMiddleware, ServiceMetrics, metrics_endpoint
from tenantgate.http.problems import (
    DEFAULT_EXCEPTION_HANDLERS,
    PROBLEM_MEDIA_TYPE,
    problem_response,
)
from tenantgate.http.request_id import (
    REQUEST_ID_HEADER,
    RequestIdMiddleware,
    attach_request_id,
    request_id_of,
)

__all__ = [
    "DEFAULT_EXCEPTION_HANDLERS",
    "PROBLEM_MEDIA_TYPE",
    "REQUEST_ID_HEADER",
    "MetricsMiddleware",
    "RequestIdMiddleware",
    "ServiceMetrics",
    "attach_request_id",
    "metrics_endpoint",
    "problem_response",
    "request_id_of",
]
