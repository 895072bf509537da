"""The tenant's cache, `/v1/cache/{key}`: JSON values under keys of the client's choosing.

The key is the rest of the path, percent-decoded: any 1 to 512 bytes of UTF-8, `/`, `*`,
braces, colons and `..` included (a client sends `%2E%2E` for `..`, which URL libraries would
otherwise resolve). Every handler gets the caller's :class:`~tenantgate.cache.TenantCache`
(`cache`), which runs as the tenant's own Redis user; Redis down or slow is a 503 with
`Retry-After` here, and nowhere else.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import unquote_to_bytes

from litestar import Request, delete, get, put
from litestar.di import NamedDependency
from litestar.params import JSONBody, PathParameter

from tenantgate.cache import TenantCache
from tenantgate.cache.tenant_cache import MAX_KEY_BYTES, check_key
from tenantgate.errors import InvalidInputError, NotFoundError
from tenantgate.http.openapi import TENANT_SCHEME
from tenantgate.routes.controller import ApiController
from tenantgate.routes.params import strict_body
from tenantgate.scopes import SCOPE_OPT
from tenantgate.tenancy.schemas import CacheEntry, CacheEntryBody

__all__ = ["CacheController"]

Cache = NamedDependency[TenantCache]
AnyRequest = Request[Any, Any, Any]
KeyPath = Annotated[
    str,
    PathParameter(
        description=(
            f"the entry's key: 1 to {MAX_KEY_BYTES} bytes of UTF-8 once percent-decoded (else"
            " 422); it may hold `/`"
        ),
    ),
]


def _key(path: str, request: AnyRequest) -> str:
    """The cache key the client sent: the raw path after ``/v1/cache/``, percent-decoded.

    Litestar's ``path`` parameter (``path``, with a leading ``/``) has had its slashes merged
    and its invalid UTF-8 replaced; the raw path has neither, so a key is taken from it, exactly
    as sent, and one that is not UTF-8 is refused rather than stored under a character the
    client never sent.
    """
    raw: bytes | None = request.scope.get("raw_path")
    marker = _ROUTE_PREFIX.encode()
    if raw is not None and (start := raw.find(marker)) >= 0:
        try:
            key = unquote_to_bytes(raw[start + len(marker) :]).decode()
        except UnicodeDecodeError:
            raise InvalidInputError("cache key must be valid UTF-8") from None
    else:
        key = path.removeprefix("/")
    check_key(key)
    return key


_ROUTE_PREFIX = "/v1/cache/"


class CacheController(ApiController):
    path = _ROUTE_PREFIX.rstrip("/")
    tags = ["cache"]  # noqa: RUF012 — Litestar reads it as a plain class attribute
    security = [{TENANT_SCHEME: []}]  # noqa: RUF012

    @put("/{key:path}", status_code=204, opt={SCOPE_OPT: "cache:write"})
    async def put_entry(
        self, key: KeyPath, data: JSONBody[CacheEntryBody], request: AnyRequest, cache: Cache
    ) -> None:
        """Store a JSON value under the key, for `ttl_seconds` if given."""
        name = _key(key, request)
        ttl_seconds = (await strict_body(request, CacheEntryBody)).ttl_seconds
        await cache.set(name, data.value, ttl_seconds)

    @get("/{key:path}", opt={SCOPE_OPT: "cache:read"})
    async def get_entry(self, key: KeyPath, request: AnyRequest, cache: Cache) -> CacheEntry:
        """The value stored under the key (404 when there is none, or it expired)."""
        name = _key(key, request)
        missing = object()
        value = await cache.get(name, missing)
        if value is missing:
            raise NotFoundError("cache entry")
        return CacheEntry(key=name, value=value)

    @delete("/{key:path}", status_code=204, opt={SCOPE_OPT: "cache:write"})
    async def delete_entry(self, key: KeyPath, request: AnyRequest, cache: Cache) -> None:
        """Remove the key's value (204 whether or not there was one)."""
        await cache.delete(_key(key, request))
