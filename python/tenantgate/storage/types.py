"""What :class:`~tenantgate.storage.TenantStorage` answers: msgspec structs the routes return
as they are (API.md's shapes)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import msgspec

__all__ = ["Download", "FileEntry", "FileList", "Presigned", "StoredFile"]


class StoredFile(msgspec.Struct, frozen=True):
    """A file just stored: its path, size in bytes and S3 ETag (without quotes)."""

    path: str
    size: int
    etag: str


class FileEntry(msgspec.Struct, frozen=True):
    path: str
    size: int
    last_modified: datetime


class FileList(msgspec.Struct, frozen=True):
    files: list[FileEntry]


class Presigned(msgspec.Struct, frozen=True):
    """A URL S3 honours for one object and method until ``expires_at``; ``headers`` are what
    the client must send with it (the signed ``Content-Length`` of a sized PUT)."""

    url: str
    method: Literal["GET", "PUT"]
    expires_at: datetime
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class Download:
    """An object being read: its metadata, and its bytes as they arrive from S3."""

    content_type: str
    size: int
    etag: str
    chunks: AsyncIterator[bytes]
