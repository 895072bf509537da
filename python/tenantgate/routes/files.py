"""The tenant's files, `/v1/files`: stored in S3 under the tenant's own bucket or prefix.

Handlers receive `storage`, the caller's :class:`~tenantgate.storage.TenantStorage`, which
signs every request as the tenant (S3 itself refuses anything outside the tenant's place).

A file path is the rest of the URL after `/v1/files/`, taken from the *raw* request path and
percent-decoded here: Litestar normalises the decoded path it routes on (`a//b` becomes
`a/b`, a trailing `/` and a leading encoded `%2F` vanish), which would let an invalid path
through as another, valid one. `POST /v1/files/{path}/presign` is matched as a POST to
`{path}` ending in `/presign` (a `path` parameter must come last in a Litestar route).

Uploads stream (Litestar's body limit is off for that route: `TENANTGATE_MAX_FILE_BYTES` is
enforced by `TenantStorage.put`), downloads stream too.
"""

from __future__ import annotations

from typing import Annotated, Any, Final
from urllib.parse import unquote

from litestar import Request, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import JSONBody, Parameter, QueryParameter
from litestar.response import Stream

from tenantgate.errors import InvalidInputError, NotFoundError
from tenantgate.http.openapi import TENANT_SCHEME, problems
from tenantgate.routes.controller import ApiController
from tenantgate.routes.params import strict_body
from tenantgate.scopes import SCOPE_OPT, require_scope
from tenantgate.storage import FileList, Presigned, StoredFile, TenantStorage
from tenantgate.storage.paths import MAX_PATH_BYTES, PATH_PATTERN, PREFIX_PATTERN
from tenantgate.tenancy.schemas import PresignBody

__all__ = ["FilesController"]

Storage = NamedDependency[TenantStorage]
AnyRequest = Request[Any, Any, Any]
# Declared `str`: Litestar's `Path` would be documented as `format: uri`, which no file path
# need be; the value itself is not used (see `_raw_file_path`).
FilePath = Annotated[
    str,
    Parameter(
        description=(
            "The file's path: 1 to 1024 bytes of UTF-8, relative, no empty, `.` or `..`"
            " segment, no control character (else 422)."
        ),
        # Documentation only: Litestar would check these on its normalised value.
        schema_extra={"pattern": PATH_PATTERN, "minLength": 1, "maxLength": MAX_PATH_BYTES},
    ),
]
_LENGTH_422: Final = (
    "Also for a path the object store cannot hold, which the pattern cannot say: over 1024"
    " bytes of UTF-8 in an enterprise tenant's bucket, over 987 (1024 less the tenant's prefix)"
    " in the shared one; on SeaweedFS, a segment over 255 bytes."
)
Prefix = Annotated[
    str,
    QueryParameter(
        max_length=MAX_PATH_BYTES,
        description=(
            "list only paths starting with this (e.g. `docs/`): a path's rules, and it may be"
            " empty or end with `/` (else 422)"
        ),
        schema_extra={"pattern": PREFIX_PATTERN},
    ),
]

_FILES: Final = "/v1/files/"
_PRESIGN: Final = "/presign"


def _raw_file_path(request: AnyRequest) -> str:
    """The percent-decoded path after `/v1/files/` in the raw request path (see above)."""
    raw: bytes = request.scope.get("raw_path") or request.scope["path"].encode()
    text = raw.decode("latin-1")
    start = text.find(_FILES)
    if start < 0:
        raise InvalidInputError("path: must be percent-encoded UTF-8")
    try:
        return unquote(text[start + len(_FILES) :], encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise InvalidInputError("path: must be valid UTF-8") from None


class FilesController(ApiController):
    path = "/v1/files"
    tags = ["files"]  # noqa: RUF012 — Litestar reads it as a plain class attribute
    security = [{TENANT_SCHEME: []}]  # noqa: RUF012

    @get("/", responses=problems(notes={422: _LENGTH_422}), opt={SCOPE_OPT: "files:read"})
    async def list_files(self, storage: Storage, prefix: Prefix = "") -> FileList:
        """The tenant's files whose path starts with `prefix`, in path order."""
        return await storage.list(prefix)

    @put(
        "/{path:path}",
        status_code=201,
        request_max_body_size=None,
        opt={SCOPE_OPT: "files:write"},
        responses=problems(
            413,
            notes={
                413: "The file is larger than TENANTGATE_MAX_FILE_BYTES; nothing was stored.",
                422: _LENGTH_422,
            },
        ),
    )
    async def put_file(self, path: FilePath, request: AnyRequest, storage: Storage) -> StoredFile:
        """Store the request body's bytes as this file (replacing it), with its
        `Content-Type`. The body streams to S3: any size up to TENANTGATE_MAX_FILE_BYTES."""
        declared = request.headers.get("content-length")
        return await storage.put(
            _raw_file_path(request),
            request.stream(),
            content_type=request.headers.get("content-type"),
            declared_size=int(declared) if declared and declared.isdigit() else None,
        )

    @get(
        "/{path:path}",
        opt={SCOPE_OPT: "files:read"},
        # Documentation of the 200: any media type, the one the file was stored with.
        media_type="*/*",
        responses=problems(notes={404: "No such file.", 422: _LENGTH_422}),
    )
    async def get_file(self, path: FilePath, request: AnyRequest, storage: Storage) -> Stream:
        """The file's bytes, streamed, with the `Content-Type` it was stored with."""
        download = await storage.get(_raw_file_path(request))
        return Stream(
            download.chunks,
            media_type=download.content_type,
            # As stored, byte for byte: Litestar would add `; charset=utf-8` to a `text/` type.
            headers={
                "content-type": download.content_type,
                "content-length": str(download.size),
                "etag": f'"{download.etag}"',
            },
        )

    @delete(
        "/{path:path}",
        status_code=204,
        opt={SCOPE_OPT: "files:write"},
        responses=problems(notes={404: "No such file.", 422: _LENGTH_422}),
    )
    async def delete_file(self, path: FilePath, request: AnyRequest, storage: Storage) -> None:
        """Delete the file (404 if there is none)."""
        await storage.delete(_raw_file_path(request))

    @post(
        "/{path:path}",
        status_code=200,
        opt={SCOPE_OPT: "files:read"},
        responses=problems(
            notes={
                404: "The path does not end in `/presign`.",
                422: _LENGTH_422 + " Also for content_length over TENANTGATE_MAX_FILE_BYTES.",
            }
        ),
    )
    async def presign(
        self,
        path: FilePath,
        data: JSONBody[PresignBody],
        request: AnyRequest,
        storage: Storage,
    ) -> Presigned:
        """`POST /v1/files/{file path}/presign`: a URL S3 honours for this one file and method
        until `expires_at`, signed with the tenant's own S3 credentials; for a PUT with
        `content_length`, that size is signed in and `headers` lists what to send."""
        full = _raw_file_path(request)
        if not full.endswith(_PRESIGN):
            raise NotFoundError("route")
        body = await strict_body(request, PresignBody)
        if body.method == "PUT":
            require_scope(request.scope["state"], "files:write")  # a presigned PUT writes
        return await storage.presign(
            full[: -len(_PRESIGN)],
            body.method,
            body.expires_in_seconds,
            body.content_length,
        )
