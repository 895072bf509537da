"""Uploads stream to S3 and downloads stream back: a large file round-trips intact while the
service's memory grows by far less than its size; a file over TENANTGATE_MAX_FILE_BYTES is
answered 413 before anything of it is stored, whether its size was announced or not."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import TestClient
from storage_helpers import buckets, shared_key

from tenantgate.app import create_app
from tenantgate.settings import LimitsSettings

pytestmark = pytest.mark.servers

MIB = 1024 * 1024


def _chunks(total: int, size: int = 256 * 1024, fill: bytes = b"z") -> Iterator[bytes]:
    """``total`` bytes in chunks: sent chunked, without a Content-Length."""
    sent = 0
    while sent < total:
        piece = min(size, total - sent)
        sent += piece
        yield fill * piece


@pytest.fixture
def small_limit(service_settings: Any) -> Iterator[tuple[Any, int]]:
    """A second service on the same stack whose file limit is 9 MiB: above one 8 MiB
    multipart part, so an oversized upload is refused after a part has been sent."""
    limit = 9 * MIB
    settings = dataclasses.replace(service_settings, limits=LimitsSettings(max_file_bytes=limit))
    with TestClient(create_app(settings)) as client:
        yield client, limit


def test_the_content_type_is_kept(make_tenant: Any, service: Any) -> None:
    tenant = make_tenant()
    for kind in ("text/plain", "image/png", "application/json; charset=utf-8"):
        headers = {**tenant.headers, "Content-Type": kind}
        assert service.put("/v1/files/f", content=b"{}", headers=headers).status_code == 201
        assert service.get("/v1/files/f", headers=tenant.headers).headers["content-type"] == kind
    service.put("/v1/files/g", content=b"x", headers=tenant.headers)
    got = service.get("/v1/files/g", headers=tenant.headers)
    assert got.headers["content-type"] == "application/octet-stream"


def test_an_empty_file_is_a_file(make_tenant: Any, service: Any) -> None:
    tenant = make_tenant()
    assert service.put("/v1/files/empty", content=b"", headers=tenant.headers).json()["size"] == 0
    assert service.get("/v1/files/empty", headers=tenant.headers).content == b""


def test_an_announced_oversized_upload_is_413_before_anything_is_stored(
    make_tenant: Any, small_limit: tuple[Any, int], s3_settings: Any, service_settings: Any
) -> None:
    client, limit = small_limit
    tenant = make_tenant()
    headers = {**tenant.headers, "Content-Length": str(limit + 1)}
    answer = client.put("/v1/files/big", content=b"z" * (limit + 1), headers=headers)
    assert answer.status_code == 413, answer.text
    assert str(limit) in answer.json()["detail"]
    assert client.get("/v1/files", headers=tenant.headers).json() == {"files": []}


@pytest.mark.parametrize("tier", ["standard", "enterprise"])
def test_a_streamed_oversized_upload_is_413_and_stores_nothing(
    tier: str,
    make_tenant: Any,
    small_limit: tuple[Any, int],
    s3_settings: Any,
    service_settings: Any,
) -> None:
    client, limit = small_limit
    tenant = make_tenant(tier=tier)
    assert client.put("/v1/files/big", content=b"old", headers=tenant.headers).status_code == 201

    answer = client.put("/v1/files/big", content=_chunks(limit + MIB), headers=tenant.headers)
    assert answer.status_code == 413, answer.text

    got = client.get("/v1/files/big", headers=tenant.headers)
    assert got.content == b"old"  # the earlier file is untouched
    names = buckets(service_settings)
    bucket = names.tenant(uuid.UUID(tenant.id)) if tier == "enterprise" else names.shared
    prefix = "" if tier == "enterprise" else shared_key(tenant.id, "")
    uploads = s3_settings.client().list_multipart_uploads(Bucket=bucket, Prefix=prefix)
    assert uploads.get("Uploads", []) == []  # the multipart upload was aborted


def test_an_upload_just_at_the_limit_is_stored(
    make_tenant: Any, small_limit: tuple[Any, int]
) -> None:
    client, limit = small_limit
    tenant = make_tenant()
    answer = client.put("/v1/files/exact", content=_chunks(limit), headers=tenant.headers)
    assert answer.status_code == 201, answer.text
    assert answer.json()["size"] == limit
    assert len(client.get("/v1/files/exact", headers=tenant.headers).content) == limit


# -- memory ----------------------------------------------------------------------------------


def _server_pids(url: str) -> list[int]:
    """The `tenantgate serve` at ``url`` and its worker processes (its process group)."""
    port = url.rsplit(":", 1)[1]
    leader = None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"serve" in argv and b"--port" in argv and port.encode() in argv:
            leader = os.getpgid(int(entry.name))  # `serve` runs in a process group of its own
    assert leader is not None, "the server process was not found"
    group = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == leader:
                    group.append(int(entry.name))
            except OSError:
                continue
    return group


def _memory_kib(pids: list[int], field: str) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def test_a_50_mib_file_round_trips_intact_without_being_held_in_memory(
    served: str, admin_headers: dict[str, str]
) -> None:
    created = httpx.post(
        f"{served}/admin/v1/tenants", json={"name": "big-files"}, headers=admin_headers
    )
    assert created.status_code == 201, created.text
    headers = {"Authorization": f"Bearer {created.json()['api_key']['key']}"}
    size = 50 * MIB
    # Warm the paths up (first-use imports and clients), then measure.
    httpx.put(f"{served}/v1/files/warm", content=b"w" * MIB, headers=headers, timeout=30)
    httpx.get(f"{served}/v1/files/warm", headers=headers, timeout=30)
    pids = _server_pids(served)
    assert len(pids) >= 2  # the server and its worker
    for pid in pids:  # reset each process' peak resident size (VmHWM) to its current one
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    before = _memory_kib(pids, "VmRSS")

    expected = hashlib.sha256()
    sent = 0

    def body() -> Iterator[bytes]:
        nonlocal sent
        block = os.urandom(MIB)
        while sent < size:
            chunk = hashlib.sha256(block + sent.to_bytes(8, "big")).digest() * (64 * 1024 // 32)
            expected.update(chunk)
            sent += len(chunk)
            yield chunk

    stored = httpx.put(f"{served}/v1/files/big.bin", content=body(), headers=headers, timeout=120)
    assert stored.status_code == 201, stored.text
    assert stored.json()["size"] == size

    received = hashlib.sha256()
    with httpx.stream("GET", f"{served}/v1/files/big.bin", headers=headers, timeout=120) as got:
        assert got.status_code == 200
        assert got.headers["content-length"] == str(size)
        for chunk in got.iter_bytes():
            received.update(chunk)
    assert received.hexdigest() == expected.hexdigest()

    peak = _memory_kib(pids, "VmHWM")
    grown_mib = (peak - before) / 1024
    print(f"resident memory grew by {grown_mib:.1f} MiB at most")
    assert grown_mib < 50 / 2, f"the service grew by {grown_mib:.1f} MiB for a 50 MiB file"
