"""Every error as ``application/problem+json`` (RFC 9457).

The body is ``{"type", "title", "status", "detail"?}`` with ``type`` ``about:blank`` and
``title`` the status phrase, so equal statuses give equal bodies. In particular a ``403``
never carries a ``detail``: every refused authentication must look the same. Litestar's
validation errors (400 there) are answered ``422`` with a ``detail`` saying what is wrong,
:class:`~tenantgate.errors.ServiceUnavailableError` ``503`` with ``Retry-After``, the other
domain errors their status (``NotFoundError`` 404, ``ConflictError`` 409,
``InvalidInputError`` 422, ``TooLargeError`` 413), and any other exception ``500`` without a
word about its cause, which is logged instead.

:data:`DEFAULT_EXCEPTION_HANDLERS` maps exception types to these handlers; the plugin
installs each one unless the application already handles that type.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Final

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from tenantgate.cache.errors import translate as translate_redis_error
from tenantgate.db.errors import translate as translate_postgres_error
from tenantgate.errors import (
    ConflictError,
    InvalidInputError,
    KeyScopeError,
    NotFoundError,
    ServiceUnavailableError,
    TenantgateError,
    TenantGoneError,
    TooLargeError,
)
from tenantgate.http.request_id import request_id_of
from tenantgate.identity.responses import forbidden_response
from tenantgate.storage.errors import translate as translate_s3_error

if TYPE_CHECKING:
    from litestar.types import ExceptionHandlersMap

__all__ = [
    "DEFAULT_EXCEPTION_HANDLERS",
    "PROBLEM_MEDIA_TYPE",
    "problem_response",
]

PROBLEM_MEDIA_TYPE: Final = "application/problem+json"

_logger = logging.getLogger("tenantgate.http")

_UNPROCESSABLE: Final = HTTPStatus.UNPROCESSABLE_ENTITY
_MAX_DETAIL_ITEMS: Final = 10


def problem_response(
    status: int, detail: str | None = None, headers: dict[str, str] | None = None
) -> Response[dict[str, Any]]:
    """A problem+json response for ``status`` with an optional ``detail``."""
    problem: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
    }
    if detail and status != HTTPStatus.FORBIDDEN:
        problem["detail"] = detail
    return Response(problem, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def handle_http_exception(
    request: Request[Any, Any, Any], exc: HTTPException
) -> Response[dict[str, Any]]:
    """Litestar's own HTTP errors (404, 405, 413, ...): their status, their safe detail."""
    status = exc.status_code
    if status >= HTTPStatus.INTERNAL_SERVER_ERROR:
        _log_unexpected(request, exc)
        return problem_response(status, None, exc.headers)
    if status == HTTPStatus.BAD_REQUEST:
        return handle_validation_exception(request, exc)
    detail = exc.detail if exc.detail != HTTPStatus(status).phrase else None
    if status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE and detail is None:
        limit = request.app.request_max_body_size
        detail = f"the request body is larger than {limit} bytes" if limit else None
    return problem_response(status, detail, exc.headers)


def handle_undecodable_body(
    request: Request[Any, Any, Any], exc: UnicodeDecodeError | RecursionError
) -> Response[dict[str, Any]]:
    """A body that is not UTF-8, or JSON nested past the decoder's recursion limit: ``422``."""
    reason = "is not valid UTF-8" if isinstance(exc, UnicodeDecodeError) else "is nested too deeply"
    return problem_response(_UNPROCESSABLE, f"the request body {reason}")


def handle_validation_exception(
    request: Request[Any, Any, Any], exc: HTTPException
) -> Response[dict[str, Any]]:
    """Invalid input: ``422`` with a detail naming each offending field."""
    return problem_response(_UNPROCESSABLE, _validation_detail(exc), exc.headers)


def _validation_detail(exc: HTTPException) -> str:
    problems = []
    if isinstance(exc.extra, list):
        for item in exc.extra[:_MAX_DETAIL_ITEMS]:
            if isinstance(item, dict):
                message = str(item.get("message", "is invalid"))
                source = item.get("source")
                source = getattr(source, "value", source)  # Litestar's ParamType enum
                where = ".".join(str(part) for part in (source, item.get("key")) if part)
                problems.append(f"{where}: {message}" if where else message)
            else:
                problems.append(str(item))
    if problems:
        return "; ".join(problems)
    if exc.detail and exc.detail != HTTPStatus.BAD_REQUEST.phrase:
        return exc.detail
    return "the request is invalid"


def handle_not_found(
    request: Request[Any, Any, Any], exc: NotFoundError
) -> Response[dict[str, Any]]:
    """No such resource, or another tenant's: the same ``404`` either way."""
    return problem_response(HTTPStatus.NOT_FOUND, str(exc))


def handle_conflict(
    request: Request[Any, Any, Any], exc: ConflictError
) -> Response[dict[str, Any]]:
    """The change clashes with existing state: ``409``."""
    return problem_response(HTTPStatus.CONFLICT, str(exc))


def handle_key_scope(request: Request[Any, Any, Any], exc: KeyScopeError) -> Response[bytes]:
    """The key lacks the scope this request needs (found by the handler, the body deciding):
    the one ``403``."""
    return forbidden_response()


def handle_tenant_gone(request: Request[Any, Any, Any], exc: TenantGoneError) -> Response[bytes]:
    """The caller's tenant was deleted (through another instance) after its key was cached:
    the one ``403`` of every refused key, byte for byte and header for header."""
    return forbidden_response()


def handle_invalid_input(
    request: Request[Any, Any, Any], exc: InvalidInputError
) -> Response[dict[str, Any]]:
    """Well-formed input with unacceptable values: ``422``."""
    return problem_response(_UNPROCESSABLE, str(exc) or "the request is invalid")


def handle_too_large(
    request: Request[Any, Any, Any], exc: TooLargeError
) -> Response[dict[str, Any]]:
    """An upload over its limit (nothing was stored): ``413``."""
    return problem_response(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, str(exc))


def handle_service_unavailable(
    request: Request[Any, Any, Any], exc: ServiceUnavailableError
) -> Response[dict[str, Any]]:
    """A backing service is down: ``503`` and when to try again."""
    _logger.warning("%s: %r (request %s)", exc, exc.__cause__, request_id_of(request.scope))
    return problem_response(
        HTTPStatus.SERVICE_UNAVAILABLE,
        f"{exc.service} is unavailable",
        {"Retry-After": str(max(1, exc.retry_after))},
    )


def handle_unexpected_exception(
    request: Request[Any, Any, Any], exc: Exception
) -> Response[dict[str, Any]]:
    """A backing service's error that escaped a handler, translated by its room and answered
    like the domain error it means; otherwise a bug or an unforeseen failure: logged in full,
    answered ``500`` without details."""
    for translate in _BACKEND_TRANSLATORS:
        translated = translate(exc)
        if translated is not None:
            translated.__cause__ = exc
            # The application's handler for what it means, ours unless it installed its own.
            kind = type(translated)
            handler: Callable[..., Response[dict[str, Any]]] = request.app.exception_handlers.get(
                kind, DEFAULT_EXCEPTION_HANDLERS[kind]
            )
            return handler(request, translated)
    _log_unexpected(request, exc)
    return problem_response(HTTPStatus.INTERNAL_SERVER_ERROR)


def _log_unexpected(request: Request[Any, Any, Any], exc: Exception) -> None:
    _logger.error(
        "unhandled %s in %s %s (request %s)",
        type(exc).__name__,
        request.method,
        request.scope["path"],
        request_id_of(request.scope),
        exc_info=exc,
    )


_BACKEND_TRANSLATORS: Final[tuple[Callable[[BaseException], TenantgateError | None], ...]] = (
    translate_postgres_error,
    translate_redis_error,
    translate_s3_error,
)
"""Each backing-service room's one error map, for driver errors a handler's own code raised
(a route's queries on its tenant connection, say)."""

DEFAULT_EXCEPTION_HANDLERS: Final[ExceptionHandlersMap] = {
    ValidationException: handle_validation_exception,
    HTTPException: handle_http_exception,
    NotFoundError: handle_not_found,
    ConflictError: handle_conflict,
    InvalidInputError: handle_invalid_input,
    TooLargeError: handle_too_large,
    TenantGoneError: handle_tenant_gone,
    KeyScopeError: handle_key_scope,
    ServiceUnavailableError: handle_service_unavailable,
    UnicodeDecodeError: handle_undecodable_body,
    RecursionError: handle_undecodable_body,
    Exception: handle_unexpected_exception,
}
"""Exception type → handler, as installed by :class:`~tenantgate.plugin.TenantGatePlugin`."""
