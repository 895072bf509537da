"""The base of tenantgate's controllers: an ``OPTIONS`` answer that lists every method.

Litestar 2 makes a path's ``OPTIONS`` handler when the path's first handler is registered and
never updates its ``Allow`` header, so a path served by several handlers of one controller
(``GET`` and ``POST /v1/items``) answers ``Allow: OPTIONS, POST`` (litestar#4169, fixed in
Litestar 3 only). :class:`ApiController` puts one explicit ``OPTIONS`` handler per path in
front of its handlers, with the path's methods counted once all its handlers are known: the
path then has an ``OPTIONS`` handler from its first registration on, and Litestar makes none.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

from litestar import Controller, HttpMethod, Response
from litestar.handlers import HTTPRouteHandler

if TYPE_CHECKING:
    from litestar.handlers import BaseRouteHandler

__all__ = ["ApiController"]


def _options_handler(path: str, allow: str) -> HTTPRouteHandler:
    def options() -> Response[None]:
        return Response(None, status_code=204, headers={"Allow": allow})

    return HTTPRouteHandler(
        path=path,
        http_method=[HttpMethod.OPTIONS],
        include_in_schema=False,
        sync_to_thread=False,
        name=None,
    )(options)


class ApiController(Controller):
    """A controller whose paths answer ``OPTIONS`` with all their methods in ``Allow``."""

    def get_route_handlers(self) -> list[BaseRouteHandler]:
        handlers = super().get_route_handlers()
        methods: defaultdict[str, set[str]] = defaultdict(set)
        for handler in handlers:
            if isinstance(handler, HTTPRouteHandler):
                for path in handler.paths:
                    methods[path].update(handler.http_methods)
        options_handlers: list[BaseRouteHandler] = []
        for path, allowed in methods.items():
            if HttpMethod.OPTIONS not in allowed:
                options = _options_handler(path, ", ".join(sorted({*allowed, HttpMethod.OPTIONS})))
                options.owner = self
                options_handlers.append(options)
        return [*options_handlers, *handlers]
