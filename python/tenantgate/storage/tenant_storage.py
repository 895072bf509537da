"""``TenantStorage``: one tenant's files, through a client signing as the tenant itself.

Every request and presigned URL is signed with the tenant's own S3 credentials, which the S3
server confines to the tenant's bucket or prefix (:mod:`tenantgate.storage.placement`): a path
that escaped our checks, or a URL edited to name another tenant's object, is refused by S3.
Paths are checked first (:mod:`tenantgate.storage.paths`, 422) and S3 contacted after.

Uploads stream: the body is read in parts of :data:`PART_BYTES`; a body that fits in one part
is one ``PutObject``, a larger one a multipart upload, part by part, so memory holds at most
one part whatever the file's size. Over the size limit (announced by ``Content-Length`` or
found while reading) the upload stops with :class:`~tenantgate.errors.TooLargeError` before
anything is stored: no ``PutObject`` was sent, or the multipart upload is aborted (S3 keeps
no part of an aborted upload, and an existing object of that path is untouched).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterable, AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Literal, cast

import anyio

from tenantgate.errors import InvalidInputError, TooLargeError
from tenantgate.storage.paths import check_path, check_prefix
from tenantgate.storage.types import Download, FileEntry, FileList, Presigned, StoredFile

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from tenantgate.storage.blocking import Blocking
    from tenantgate.storage.placement import Placement

__all__ = ["DEFAULT_CONTENT_TYPE", "MAX_PRESIGN_SECONDS", "PART_BYTES", "TenantStorage"]

PART_BYTES: Final = 8 * 1024 * 1024
"""One multipart part (S3's minimum is 5 MiB): the most of an upload held in memory."""

READ_CHUNK_BYTES: Final = 256 * 1024
"""How much of a download is read from S3 per worker-thread call."""

MAX_PRESIGN_SECONDS: Final = 3600
DEFAULT_CONTENT_TYPE: Final = "application/octet-stream"


def _body(buffer: bytearray) -> bytes:
    """``buffer`` sent as it is: botocore takes any bytes-like body (its stubs say ``bytes``),
    and a ``bytes()`` copy would double the memory an upload holds."""
    return cast("bytes", buffer)


def _etag(value: object) -> str:
    return str(value or "").strip('"')


class TenantStorage:
    """One tenant's files; built by :class:`~tenantgate.storage.service.StorageService`."""

    __slots__ = ("_blocking", "_client", "_max_file_bytes", "placement")

    def __init__(
        self, client: S3Client, placement: Placement, blocking: Blocking, max_file_bytes: int
    ) -> None:
        self._client = client
        self.placement: Final = placement
        """The tenant's bucket and key prefix."""
        self._blocking = blocking
        self._max_file_bytes = max_file_bytes

    @property
    def max_file_bytes(self) -> int:
        """The largest file this storage accepts (``TENANTGATE_MAX_FILE_BYTES``)."""
        return self._max_file_bytes

    # -- writing ----------------------------------------------------------------------------
    async def put(
        self,
        path: str,
        chunks: AsyncIterable[bytes],
        *,
        content_type: str | None = None,
        declared_size: int | None = None,
    ) -> StoredFile:
        """Store the bytes of ``chunks`` as ``path`` (replacing it), streaming (see above)."""
        key = self.placement.key(check_path(path))
        if declared_size is not None and declared_size > self._max_file_bytes:
            raise self._too_large()
        kind = content_type or DEFAULT_CONTENT_TYPE
        buffer = bytearray()
        size = 0
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > self._max_file_bytes:
                    raise self._too_large()
                buffer += chunk
                if len(buffer) >= PART_BYTES:
                    if upload_id is None:
                        upload_id = await self._start_multipart(key, kind)
                    await self._upload_part(key, upload_id, parts, buffer)
                    buffer = bytearray()
            if upload_id is None:
                answer = await self._blocking.run(
                    lambda: self._client.put_object(
                        Bucket=self.placement.bucket,
                        Key=key,
                        Body=_body(buffer),
                        ContentType=kind,
                    )
                )
                return StoredFile(path=path, size=size, etag=_etag(answer.get("ETag")))
            if buffer:
                await self._upload_part(key, upload_id, parts, buffer)
            done = await self._blocking.run(
                lambda: self._client.complete_multipart_upload(
                    Bucket=self.placement.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
                )
            )
            return StoredFile(path=path, size=size, etag=_etag(done.get("ETag")))
        except BaseException:
            if upload_id is not None:
                await self._abort(key, upload_id)
            raise

    def _too_large(self) -> TooLargeError:
        return TooLargeError(f"the file is larger than {self._max_file_bytes} bytes")

    async def _start_multipart(self, key: str, content_type: str) -> str:
        answer = await self._blocking.run(
            lambda: self._client.create_multipart_upload(
                Bucket=self.placement.bucket, Key=key, ContentType=content_type
            )
        )
        return str(answer["UploadId"])

    async def _upload_part(
        self, key: str, upload_id: str, parts: list[dict[str, Any]], buffer: bytearray
    ) -> None:
        number = len(parts) + 1
        body = _body(buffer)
        answer = await self._blocking.run(
            lambda: self._client.upload_part(
                Bucket=self.placement.bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=body,
            )
        )
        parts.append({"ETag": answer["ETag"], "PartNumber": number})

    async def _abort(self, key: str, upload_id: str) -> None:
        """Abort the upload, even when the request is being cancelled (a client gone): S3
        would otherwise keep its parts. Its own failure is not reported: the upload's is."""
        with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
            await self._blocking.run(
                lambda: self._client.abort_multipart_upload(
                    Bucket=self.placement.bucket, Key=key, UploadId=upload_id
                )
            )

    # -- reading ----------------------------------------------------------------------------
    async def get(self, path: str) -> Download:
        """``path``'s metadata and a stream of its bytes; :class:`NotFoundError` if missing."""
        key = self.placement.key(check_path(path))
        answer = await self._blocking.run(
            lambda: self._client.get_object(Bucket=self.placement.bucket, Key=key)
        )
        body = answer["Body"]

        async def chunks() -> AsyncIterator[bytes]:
            try:
                while chunk := await self._blocking.run(body.read, READ_CHUNK_BYTES):
                    yield chunk
            finally:
                body.close()

        return Download(
            content_type=str(answer.get("ContentType") or DEFAULT_CONTENT_TYPE),
            size=int(answer.get("ContentLength") or 0),
            etag=_etag(answer.get("ETag")),
            chunks=chunks(),
        )

    async def list(self, prefix: str = "") -> FileList:
        """Every file whose path starts with ``prefix``, in key order."""
        start = self.placement.key(check_prefix(prefix))

        def list_all() -> list[FileEntry]:
            found: list[FileEntry] = []
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.placement.bucket, Prefix=start
            )
            for page in pages:
                for item in page.get("Contents", []):
                    found.append(
                        FileEntry(
                            path=self.placement.path(item["Key"]),
                            size=int(item["Size"]),
                            last_modified=item["LastModified"].astimezone(UTC),
                        )
                    )
            return found

        return FileList(files=await self._blocking.run(list_all))

    async def delete(self, path: str) -> None:
        """Delete ``path``; :class:`NotFoundError` if there is no such file (S3's own delete
        of a missing key succeeds, so the key is looked up first)."""
        key = self.placement.key(check_path(path))
        bucket = self.placement.bucket
        await self._blocking.run(lambda: self._client.head_object(Bucket=bucket, Key=key))
        await self._blocking.run(lambda: self._client.delete_object(Bucket=bucket, Key=key))

    # -- presigning -------------------------------------------------------------------------
    async def presign(
        self,
        path: str,
        method: Literal["GET", "PUT"],
        expires_in_seconds: int = 300,
        content_length: int | None = None,
    ) -> Presigned:
        """A URL for ``method`` on ``path`` alone, valid ``expires_in_seconds`` (1..3600),
        signed with the tenant's credentials. A PUT with ``content_length`` signs that size
        in: S3 refuses a body of another size (``headers`` says what to send)."""
        key = self.placement.key(check_path(path))
        if not 1 <= expires_in_seconds <= MAX_PRESIGN_SECONDS:
            raise InvalidInputError(f"expires_in_seconds: must be 1 to {MAX_PRESIGN_SECONDS}")
        params: dict[str, Any] = {"Bucket": self.placement.bucket, "Key": key}
        headers: dict[str, str] = {}
        if content_length is not None:
            if method != "PUT":
                raise InvalidInputError("content_length: only for a PUT")
            if not 0 <= content_length <= self._max_file_bytes:
                raise InvalidInputError(
                    f"content_length: must be 0 to {self._max_file_bytes} bytes"
                )
            params["ContentLength"] = content_length
            headers["Content-Length"] = str(content_length)
        operation = "get_object" if method == "GET" else "put_object"
        expires_at = datetime.now(UTC).replace(microsecond=0) + timedelta(
            seconds=expires_in_seconds
        )
        url = await self._blocking.run(
            lambda: self._client.generate_presigned_url(
                operation, Params=params, ExpiresIn=expires_in_seconds
            )
        )
        return Presigned(url=url, method=method, expires_at=expires_at, headers=headers)
